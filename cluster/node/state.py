"""Live state to Redis (DESIGN rule 2): the engine's `StatePublisher`, drained by a thread.

`RedisStatePublisher.publish` and `changed` run in the protocol loop: they only
`put_nowait` into a bounded queue, and count what does not fit rather than wait.
A drainer thread owns the Redis client: it sends a ``vhost`` message (and a
``transition`` one) as soon as an item arrives, and at every heartbeat tick
rewrites the heartbeat, every vhost hash and the node's vhost set. When Redis is
down the loop never notices; the drainer logs the outage once and, at the first
tick after it, republishes a ``vhost`` message for every virtual host (catch-up):
what happened meanwhile is in the hashes, and the history is in the database.

Every key and message is written through the dataclasses of `cluster.statekeys`,
which `cluster/live.py` reads with the same code.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cluster import statekeys
from cluster.carp.runner import HostSnapshot, RunnerSnapshot
from cluster.carp.types import Reason, State
from cluster.node.outage import RateLimitedOutage

log = logging.getLogger("cluster.node")

STATE_QUEUE_SIZE = 10_000  # state items the loop may queue ahead of the drainer


@dataclass(frozen=True)
class NodeStatus:
    """What the engine adds to the heartbeat beside the runner's own snapshot."""

    config_version: str
    config_source: str
    problems: tuple[statekeys.ConfigProblem, ...] = ()


def vhost_state(node: str, host: HostSnapshot, now: float) -> statekeys.VhostState:
    """The ``carp:vh:...`` hash of one virtual host."""
    return statekeys.VhostState(
        node=node,
        interface=host.interface,
        vhid=host.vhid,
        state=host.state,
        advbase=host.advbase,
        advskew=host.advertised_advskew,
        demote=host.demote,
        master=str(host.master) if host.master is not None else "",
        addresses=tuple(str(a) for a in host.addresses),
        last_from=host.last_from,
        last_to=host.state if host.last_from is not None else None,
        last_reason=str(host.last_reason) if host.last_reason is not None else "",
        last_source=host.last_source,
        last_at=host.last_at,
        adverts_sent=host.adverts_sent,
        adverts_received=host.adverts_received,
        updated_at=now,
    )


_STOP = object()


class RedisStatePublisher:
    """The runner's `StatePublisher`, drained into Redis by a thread of its own."""

    def __init__(
        self,
        node: str,
        redis_url: str,
        snapshot: Callable[[], RunnerSnapshot],
        status: Callable[[], NodeStatus],
        *,
        queue_size: int = STATE_QUEUE_SIZE,
        interval: float = statekeys.HEARTBEAT_INTERVAL,
        client_timeout: float = 1.0,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        self.node = node
        self.on_reconnect = on_reconnect
        self.redis_url = redis_url
        self.snapshot = snapshot
        self.status = status
        self.interval = interval
        self.client_timeout = client_timeout
        # State items the loop could not queue (the drainer was behind); the next
        # tick's full rewrite repairs them.
        self.overflows = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._client: Any = None
        self._outage = RateLimitedOutage("Redis", log)
        self._thread: threading.Thread | None = None

    @property
    def redis_down(self) -> bool:
        return self._outage.down

    # -- the loop's side: never blocks ---------------------------------------------------
    def _put(self, item: Any) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.overflows += 1  # the next tick's full rewrite repairs what was lost

    def publish(
        self,
        interface: str,
        vhid: int,
        state: State,
        reason: Reason,
        *,
        old: State,
        at: float,
        source: str = "",
        silence: float | None = None,
    ) -> None:
        message = statekeys.TransitionMessage(
            self.node, interface, vhid, old, state, str(reason), at, source, silence
        )
        self._put(("transition", message))

    def changed(self, interface: str, vhid: int) -> None:
        self._put(("vhost", (interface, vhid, time.time())))

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        self._put(("node", "started"))
        self._thread = threading.Thread(target=self._run, name="carp-state-redis", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is queued, then node ``stopped`` and delete the heartbeat."""
        if self._thread is None:
            return
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.warning("the Redis state queue is full at stop; dropping what is queued")
        self._thread.join(timeout=timeout)
        self._thread = None

    # -- the drainer -------------------------------------------------------------------
    def _run(self) -> None:
        next_tick = time.monotonic()
        while True:
            timeout = max(0.0, next_tick - time.monotonic())
            batch: list[Any] = []
            with contextlib.suppress(queue.Empty):
                batch.append(self._queue.get(timeout=timeout))
                while True:
                    batch.append(self._queue.get_nowait())
            stopping = any(item is _STOP for item in batch)
            self._handle([item for item in batch if item is not _STOP])
            if stopping:
                self._final()
                return
            if time.monotonic() >= next_tick:
                self.tick()
                next_tick = time.monotonic() + self.interval

    def _redis(self) -> Any:
        if self._client is None:
            self._client = statekeys.sync_client(self.redis_url, timeout=self.client_timeout)
        return self._client

    def _attempt(self, work: Callable[[Any], None]) -> bool:
        """Run ``work(client)``; on failure note the outage (logged once) and say False."""
        try:
            work(self._redis())
        except Exception as exc:
            self._outage.failed(exc)
            return False
        # succeeded() first: it records the end of the outage whether or not anyone listens.
        if self._outage.succeeded() and self.on_reconnect is not None:
            # Apply tasks sent during the outage were lost with the broker: the
            # engine reads the database now rather than at its next resync.
            self.on_reconnect()
        return True

    def _handle(self, items: Sequence[Any]) -> None:
        """Publish each item at once (unless Redis is down: the next tick retries)."""
        if not items or self.redis_down:
            return
        hosts = {(h.interface, h.vhid): h for h in self.snapshot().hosts}
        now = time.time()

        def work(client: Any) -> None:
            pipe = client.pipeline(transaction=False)
            refreshed: dict[tuple[str, int], float] = {}
            ended: dict[tuple[str, int], statekeys.TransitionMessage] = {}
            transitions: list[statekeys.TransitionMessage] = []
            for kind, value in items:
                if kind == "node":
                    started = statekeys.NodeMessage(self.node, value, now)
                    pipe.publish(statekeys.EVENTS_CHANNEL, statekeys.encode_message(started))
                elif kind == "transition":
                    key = (value.interface, value.vhid)
                    transitions.append(value)
                    refreshed[key] = value.at
                    ended[key] = value
                elif kind == "vhost":
                    interface, vhid, at = value
                    refreshed.setdefault((interface, vhid), at)
            for key, at in refreshed.items():
                host = hosts.get(key)
                if host is not None:
                    self._write_vhost(pipe, host, now, at)
            for key, last in ended.items():
                if key not in hosts:
                    # A host the runner has removed (a stop, a deleted alias): its last
                    # transition (to INIT) still reaches the hash, so that a stopped node
                    # does not show MASTER; the next tick deletes a removed one.
                    pipe.hset(
                        statekeys.vhost_key(self.node, *key),
                        mapping={
                            "state": str(last.to_state),
                            "last_from": str(last.from_state),
                            "last_to": str(last.to_state),
                            "last_reason": last.reason,
                            "last_source": last.source,
                            "last_at": repr(last.at),
                            "updated_at": repr(now),
                        },
                    )
            # Announced only after the hashes above are written: a reader woken by the
            # message must find the new state, not the one before it.
            for message in transitions:
                pipe.publish(statekeys.EVENTS_CHANNEL, statekeys.encode_message(message))
            pipe.execute()

        self._attempt(work)

    def _write_vhost(self, pipe: Any, host: HostSnapshot, now: float, at: float | None) -> None:
        state = vhost_state(self.node, host, now)
        pipe.hset(
            statekeys.vhost_key(self.node, host.interface, host.vhid), mapping=state.to_hash()
        )
        pipe.sadd(
            statekeys.node_vhosts_key(self.node), statekeys.vhost_member(host.interface, host.vhid)
        )
        if at is not None:
            message = statekeys.VhostMessage(state, at)
            pipe.publish(statekeys.EVENTS_CHANNEL, statekeys.encode_message(message))

    def heartbeat(self, snap: RunnerSnapshot, now: float) -> statekeys.Heartbeat:
        status = self.status()
        return statekeys.Heartbeat(
            node=self.node,
            at=now,
            pid=os.getpid(),
            config_version=status.config_version,
            config_source=status.config_source,
            demotion=snap.demotion,
            problems=status.problems,
            drops=snap.drops,
            port_errors=snap.port_errors,
        )

    def tick(self) -> None:
        """Rewrite everything this node publishes (and catch up after an outage)."""
        snap = self.snapshot()
        now = time.time()
        # The last attempt failed (Redis down, or a message lost with a failed
        # pipeline): this tick republishes every virtual host, not just its hash.
        catch_up = self.redis_down

        def work(client: Any) -> None:
            members_key = statekeys.node_vhosts_key(self.node)
            running = {statekeys.vhost_member(h.interface, h.vhid) for h in snap.hosts}
            gone = set(client.smembers(members_key)) - running
            pipe = client.pipeline(transaction=False)
            for member in gone:
                pipe.srem(members_key, member)
                with contextlib.suppress(ValueError):
                    interface, vhid = statekeys.parse_vhost_member(member)
                    pipe.delete(statekeys.vhost_key(self.node, interface, vhid))
            for host in snap.hosts:
                self._write_vhost(pipe, host, now, now if catch_up else None)
            pipe.set(
                statekeys.heartbeat_key(self.node),
                self.heartbeat(snap, now).encode(),
                ex=statekeys.HEARTBEAT_TTL,
            )
            message = statekeys.HeartbeatMessage(self.node, now)
            pipe.publish(statekeys.EVENTS_CHANNEL, statekeys.encode_message(message))
            pipe.execute()

        self._attempt(work)

    def _final(self) -> None:
        """A graceful stop: the hosts (now INIT) as they are, ``stopped``, no heartbeat."""
        now = time.time()

        def work(client: Any) -> None:
            pipe = client.pipeline(transaction=False)
            stopped = statekeys.NodeMessage(self.node, "stopped", now)
            pipe.publish(statekeys.EVENTS_CHANNEL, statekeys.encode_message(stopped))
            pipe.delete(statekeys.heartbeat_key(self.node))
            pipe.execute()

        self._attempt(work)
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
