"""The engine inside a node's Celery worker: configuration from Django, state to Redis.

With `bootstep.py`, the only engine module that knows Django (DESIGN.md, the layer
table). It joins three things to one `Runner`:

* **Configuration** (DESIGN rule 1, level-triggered). `Engine.converge` reads the
  node's whole desired state (`services.desired_virtual_hosts`, the Node's own
  address and maintenance flag), digests it into a version, and hands the runner a
  new configuration only when the version differs from the applied one; the runner
  itself touches only the virtual hosts whose config changed. Each applied
  configuration is kept on local disk, encrypted (it holds the CARP passwords), so
  that a worker started while the database is down serves from it and converges
  when the database returns.
* **Live state** (DESIGN rule 2). `RedisStatePublisher` is the runner's
  `StatePublisher`: the loop only does a `put_nowait` into a bounded queue; a
  drainer thread owns the Redis client and writes the keys of `cluster.statekeys`.
  When Redis is down the loop never notices; the drainer logs the outage once and
  republishes the whole state when Redis is back.
* **History**. `TransitionRecorder` writes a `Transition` row per state change from
  a thread of its own, buffers them while the database is down and prunes old rows
  about once an hour.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import datetime
import hashlib
import ipaddress
import json
import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cluster import statekeys
from cluster.carp.runner import HostSnapshot, Runner, RunnerSnapshot
from cluster.carp.types import ConfigError, Reason, State, VirtualHostConfig

log = logging.getLogger("cluster.carp.bridge")

# Maintenance: FreeBSD's largest demotion, as for an interface that is down
# (net.inet.carp.ifdown_demotion_factor, 240). The advertised advskew becomes
# min(advskew + 240, 240) = 240, above every derived advskew (cluster.advskew keeps
# them all below 240), so every peer not in maintenance preempts at once (CARP.md
# "Demotion"), while a node in maintenance still takes over if it is the last one
# left: maintenance must never leave a VIP unserved.
MAINTENANCE_DEMOTION = 240
DB_STARTUP_TIMEOUT = 3.0  # seconds the start waits for the database before using the file
DB_RETRY_INTERVAL = 3.0  # seconds between two reads while the database is unreachable
# The apply task converges a node at once; this periodic re-read only repairs a lost
# task (a broker outage), which makes every message optional (level-triggered).
RESYNC_INTERVAL = 60.0
STATE_QUEUE_SIZE = 10_000  # state items the loop may queue ahead of the drainer
TRANSITION_BUFFER_SIZE = 10_000  # transitions kept while the database is down
OUTAGE_LOG_INTERVAL = 60.0  # seconds between two "still unreachable" lines
PRUNE_INTERVAL = 3600.0
LOCAL_FORMAT = 1


# ---- configuration -------------------------------------------------------------------
@dataclass(frozen=True)
class NodeConfig:
    """Everything one node runs, with the version that names it."""

    node: str
    vhosts: tuple[VirtualHostConfig, ...]
    maintenance: bool
    version: str

    @property
    def interfaces(self) -> frozenset[str]:
        return frozenset(v.interface for v in self.vhosts)


def config_version(rows: Iterable[dict[str, Any]], address: str, maintenance: bool) -> str:
    """A digest of what the node runs, without the passwords.

    An alias's ``version`` goes up on every change of the alias, its password
    included, and starts over at 1 when the alias is deleted and created again
    (another password, same everything else), so the alias's id goes in with it;
    advskew depends on the node's ordinal and the source on the node's
    address, which the alias version does not see, so they are digested too. A hash
    of a password would let anyone who reads Redis (the heartbeat carries the
    version) try passwords offline, so it stays out.
    """
    facts = sorted(
        (
            row["interface"],
            row["vhid"],
            row["alias_id"],
            row["version"],
            row["advbase"],
            row["advskew"],
            row["preempt"],
            sorted(row["addresses"]),
        )
        for row in rows
    )
    text = json.dumps([facts, address, maintenance], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def vhost_config(row: dict[str, Any], src_ip: str) -> VirtualHostConfig:
    """One row of `services.desired_virtual_hosts` as the engine's config."""
    return VirtualHostConfig(
        vhid=row["vhid"],
        interface=row["interface"],
        password=row["password"].encode("utf-8"),
        addresses=tuple(ipaddress.ip_interface(a) for a in row["addresses"]),
        advbase=row["advbase"],
        advskew=row["advskew"],
        preempt=row["preempt"],
        src_ip=ipaddress.ip_address(src_ip),
    )


def read_database(node: str) -> NodeConfig:
    """The node's desired configuration from the database (raises when it cannot be read).

    A node that is not in the database runs nothing: it was deleted, and a deleted
    node must release its VIPs. A virtual host that cannot be built (a password the
    key no longer decrypts) is logged and left out; the others still run.
    """
    from django.db import close_old_connections

    from cluster import services
    from cluster.crypto import PasswordDecryptionError
    from cluster.models import Node

    close_old_connections()
    try:
        found = Node.objects.filter(name=node).values("address", "maintenance").first()
        if found is None:
            log.warning("node %s is not in the database: running no virtual host", node)
            return NodeConfig(node, (), False, config_version([], "", False))
        try:
            rows = services.desired_virtual_hosts(node)
        except PasswordDecryptionError:
            log.error("an alias password of node %s cannot be decrypted; check the key", node)
            raise
        vhosts = []
        for row in rows:
            try:
                vhosts.append(vhost_config(row, found["address"]))
            except (ConfigError, ValueError) as exc:
                log.error("vhid %s on %s left out: %s", row["vhid"], row["interface"], exc)
        version = config_version(rows, found["address"], found["maintenance"])
        return NodeConfig(node, tuple(vhosts), found["maintenance"], version)
    finally:
        close_old_connections()


class LocalConfigStore:
    """The last applied configuration on local disk: ``VAR_DIR/carp/<node>.json``.

    It holds the CARP passwords, so the JSON carries a Fernet token (the key of
    `cluster.crypto`, which encrypts them in the database too), the file is mode
    0600, and it is replaced atomically (temporary file, fsync, rename) so that a
    crash mid-write leaves the previous copy.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def for_node(cls, var_dir: Path, node: str) -> LocalConfigStore:
        return cls(Path(var_dir) / "carp" / f"{node}.json")

    def save(self, config: NodeConfig) -> None:
        from cluster import crypto

        plain = json.dumps(
            {
                "node": config.node,
                "version": config.version,
                "maintenance": config.maintenance,
                "vhosts": [_vhost_to_json(v) for v in config.vhosts],
            }
        )
        body = json.dumps({"format": LOCAL_FORMAT, "token": crypto.encrypt(plain)})
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as out:  # mkstemp creates it 0600
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)

    def load(self) -> NodeConfig | None:
        """The saved configuration, or None when there is none or it cannot be read."""
        from cluster import crypto

        try:
            body = json.loads(self.path.read_text())
            if body.get("format") != LOCAL_FORMAT:
                raise ValueError(f"unknown format {body.get('format')!r}")
            data = json.loads(crypto.decrypt(body["token"]))
            return NodeConfig(
                node=data["node"],
                vhosts=tuple(_vhost_from_json(v) for v in data["vhosts"]),
                maintenance=bool(data["maintenance"]),
                version=data["version"],
            )
        except FileNotFoundError:
            return None
        except Exception as exc:
            log.error("the local configuration %s cannot be read: %s", self.path, exc)
            return None


def _vhost_to_json(config: VirtualHostConfig) -> dict[str, Any]:
    return {
        "vhid": config.vhid,
        "interface": config.interface,
        "password": base64.b64encode(config.password).decode("ascii"),
        "addresses": [str(a) for a in config.addresses],
        "advbase": config.advbase,
        "advskew": config.advskew,
        "preempt": config.preempt,
        "src_ip": str(config.src_ip) if config.src_ip is not None else None,
    }


def _vhost_from_json(data: dict[str, Any]) -> VirtualHostConfig:
    return VirtualHostConfig(
        vhid=data["vhid"],
        interface=data["interface"],
        password=base64.b64decode(data["password"]),
        addresses=tuple(ipaddress.ip_interface(a) for a in data["addresses"]),
        advbase=data["advbase"],
        advskew=data["advskew"],
        preempt=data["preempt"],
        src_ip=ipaddress.ip_address(data["src_ip"]) if data["src_ip"] else None,
    )


# ---- live state in Redis -------------------------------------------------------------
class _RateLimitedOutage:
    """One log line when a dependency goes away, one every interval while it stays
    away, one when it is back: a Redis outage must not write a line per message."""

    def __init__(self, what: str, interval: float = OUTAGE_LOG_INTERVAL) -> None:
        self.what = what
        self.interval = interval
        self.down_since: float | None = None
        self._logged = float("-inf")

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
            self._logged = now
            log.warning("%s unreachable (%s); the engine goes on without it", self.what, exc)
        elif now - self._logged >= self.interval:
            self._logged = now
            log.warning("%s still unreachable after %.0f s", self.what, now - self.down_since)

    def succeeded(self) -> bool:
        """Record a success; True when it ends an outage."""
        if self.down_since is None:
            return False
        log.warning("%s is back after %.0f s", self.what, time.monotonic() - self.down_since)
        self.down_since = None
        return True


def vhost_fields(node: str, host: HostSnapshot, now: float) -> dict[str, str]:
    """The ``carp:vh:...`` hash of one virtual host (statekeys.VHOST_FIELDS)."""
    fields = {
        "node": node,
        "interface": host.interface,
        "vhid": str(host.vhid),
        "state": str(host.state),
        "advbase": str(host.advbase),
        "advskew": str(host.advertised_advskew),
        "demote": str(host.demote),
        "master": str(host.master) if host.master is not None else "",
        "addresses": ",".join(str(a) for a in host.addresses),
        "last_from": str(host.last_from) if host.last_from is not None else "",
        "last_to": str(host.state) if host.last_from is not None else "",
        "last_reason": str(host.last_reason) if host.last_reason is not None else "",
        "last_at": repr(host.last_at) if host.last_at is not None else "",
        "adverts_sent": str(host.adverts_sent),
        "adverts_received": str(host.adverts_received),
        "updated_at": repr(now),
    }
    return fields


_STOP = object()


class RedisStatePublisher:
    """The runner's `StatePublisher`, drained into Redis by a thread of its own.

    `publish` and `changed` run in the protocol loop: they only `put_nowait` into a
    bounded queue, and count what does not fit (`overflows`) rather than wait. The
    drainer owns the Redis client: it sends a ``vhost`` message (and a
    ``transition`` one) as soon as an item arrives, and at every heartbeat tick
    rewrites the heartbeat, every vhost hash and the node's vhost set. After an
    outage the first successful tick republishes a ``vhost`` message for every
    virtual host (catch-up): what happened meanwhile is in the hashes, and the
    history is in the database.
    """

    def __init__(
        self,
        node: str,
        redis_url: str,
        snapshot: Callable[[], RunnerSnapshot],
        status: Callable[[], dict[str, Any]],
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
        self.overflows = 0
        self.started_at = time.time()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._client: Any = None
        self._outage = _RateLimitedOutage("Redis")
        self._thread: threading.Thread | None = None

    @property
    def redis_down(self) -> bool:
        return self._outage.down_since is not None

    # -- the loop's side: never blocks ---------------------------------------------------
    def _put(self, item: Any) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.overflows += 1  # the next tick's full rewrite repairs what was lost

    def publish(
        self, interface: str, vhid: int, state: State, reason: Reason, *, old: State, at: float
    ) -> None:
        self._put(("transition", (interface, vhid, str(old), str(state), str(reason), at)))

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
            ended: dict[tuple[str, int], tuple[str, str, str, float]] = {}
            transitions: list[str] = []
            for kind, value in items:
                if kind == "node":
                    pipe.publish(
                        statekeys.EVENTS_CHANNEL,
                        statekeys.encode_message("node", node=self.node, status=value, at=now),
                    )
                elif kind == "transition":
                    interface, vhid, old, new, reason, at = value
                    transitions.append(
                        statekeys.encode_message(
                            "transition",
                            node=self.node,
                            interface=interface,
                            vhid=vhid,
                            at=at,
                            reason=reason,
                            **{"from": old, "to": new},
                        )
                    )
                    refreshed[(interface, vhid)] = at
                    ended[(interface, vhid)] = (old, new, reason, at)
                elif kind == "vhost":
                    interface, vhid, at = value
                    refreshed.setdefault((interface, vhid), at)
            for key, at in refreshed.items():
                host = hosts.get(key)
                if host is not None:
                    self._write_vhost(pipe, host, now, at)
            for (interface, vhid), (old, new, reason, at) in ended.items():
                if (interface, vhid) not in hosts:
                    # A host the runner has removed (a stop, a deleted alias): its last
                    # transition (to INIT) still reaches the hash, so that a stopped node
                    # does not show MASTER; the next tick deletes a removed one.
                    last = {"last_from": old, "last_to": new, "last_reason": reason}
                    pipe.hset(
                        statekeys.vhost_key(self.node, interface, vhid),
                        mapping={
                            "state": new,
                            **last,
                            "last_at": repr(at),
                            "updated_at": repr(now),
                        },
                    )
            # Announced only after the hashes above are written: a reader woken by the
            # message must find the new state, not the one before it.
            for message in transitions:
                pipe.publish(statekeys.EVENTS_CHANNEL, message)
            pipe.execute()

        self._attempt(work)

    def _write_vhost(self, pipe: Any, host: HostSnapshot, now: float, at: float | None) -> None:
        fields = vhost_fields(self.node, host, now)
        pipe.hset(statekeys.vhost_key(self.node, host.interface, host.vhid), mapping=fields)
        pipe.sadd(
            statekeys.node_vhosts_key(self.node), statekeys.vhost_member(host.interface, host.vhid)
        )
        if at is not None:
            message = statekeys.encode_message("vhost", **{**fields, "vhid": host.vhid, "at": at})
            pipe.publish(statekeys.EVENTS_CHANNEL, message)

    def heartbeat(self, snap: RunnerSnapshot, now: float) -> dict[str, Any]:
        return {
            "node": self.node,
            "pid": os.getpid(),
            "at": now,
            "started_at": self.started_at,
            **self.status(),
            "drops": snap.drops,
            "port_errors": snap.port_errors,
            # Beyond the statekeys contract (readers ignore unknown keys): state items
            # the loop could not queue because the drainer was behind.
            "publish_overflows": self.overflows,
        }

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
                interface, vhid = statekeys.parse_vhost_member(member)
                pipe.srem(members_key, member)
                pipe.delete(statekeys.vhost_key(self.node, interface, vhid))
            for host in snap.hosts:
                self._write_vhost(pipe, host, now, now if catch_up else None)
            pipe.set(
                statekeys.heartbeat_key(self.node),
                json.dumps(self.heartbeat(snap, now)),
                ex=statekeys.HEARTBEAT_TTL,
            )
            pipe.publish(
                statekeys.EVENTS_CHANNEL,
                statekeys.encode_message("heartbeat", node=self.node, at=now),
            )
            pipe.execute()

        self._attempt(work)

    def _final(self) -> None:
        """A graceful stop: the hosts (now INIT) as they are, ``stopped``, no heartbeat."""
        now = time.time()

        def work(client: Any) -> None:
            pipe = client.pipeline(transaction=False)
            pipe.publish(
                statekeys.EVENTS_CHANNEL,
                statekeys.encode_message("node", node=self.node, status="stopped", at=now),
            )
            pipe.delete(statekeys.heartbeat_key(self.node))
            pipe.execute()

        self._attempt(work)
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None


# ---- transition history --------------------------------------------------------------
@dataclass(frozen=True)
class _Pending:
    seq: int
    interface: str
    vhid: int
    old: str
    new: str
    reason: str
    at: float


class TransitionRecorder:
    """Writes a `Transition` row per state change, from a thread of its own.

    `add` only appends to a bounded buffer (the protocol loop calls it); the thread
    writes the buffer when woken and, while the database is down, retries every
    `retry_interval` s, dropping the oldest rows beyond `buffer_size` (counted in
    `dropped`). About once an hour it prunes rows older than `retention_days`.
    """

    def __init__(
        self,
        node: str,
        *,
        retention_days: int,
        buffer_size: int = TRANSITION_BUFFER_SIZE,
        retry_interval: float = DB_RETRY_INTERVAL,
        prune_interval: float = PRUNE_INTERVAL,
    ) -> None:
        self.node = node
        self.retention_days = retention_days
        self.retry_interval = retry_interval
        self.prune_interval = prune_interval
        self.dropped = 0
        self._buffer: collections.deque[_Pending] = collections.deque(maxlen=buffer_size)
        self._lock = threading.Lock()
        self._seq = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._outage = _RateLimitedOutage("the database (transition history)")

    def add(self, interface: str, vhid: int, old: str, new: str, reason: str, at: float) -> None:
        with self._lock:
            if len(self._buffer) == self._buffer.maxlen:
                self.dropped += 1  # the deque drops the oldest
            self._seq += 1
            self._buffer.append(_Pending(self._seq, interface, vhid, old, new, reason, at))
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def flush(self) -> bool:
        """Write what is buffered; False (and the rows kept) if the database refused."""
        from django.db import close_old_connections

        from cluster import services

        with self._lock:
            batch = list(self._buffer)
        if not batch:
            return True
        close_old_connections()
        try:
            kept = services.record_transitions(
                self.node,
                [
                    {
                        "vhid": p.vhid,
                        "interface": p.interface,
                        "from_state": p.old,
                        "to_state": p.new,
                        "reason": p.reason,
                        "at": datetime.datetime.fromtimestamp(p.at, tz=datetime.UTC),
                    }
                    for p in batch
                ],
            )
            if not kept:
                log.warning("node %s is not in the database: %d transitions not kept",
                            self.node, len(batch))  # fmt: skip
        except Exception as exc:
            self._outage.failed(exc)
            return False
        finally:
            close_old_connections()
        self._outage.succeeded()
        with self._lock:
            while self._buffer and self._buffer[0].seq <= batch[-1].seq:
                self._buffer.popleft()
        return True

    def prune(self) -> int:
        from django.db import close_old_connections

        from cluster import services

        close_old_connections()
        try:
            deleted = services.prune_transitions(self.retention_days)
        finally:
            close_old_connections()
        if deleted:
            log.info("pruned %d transitions older than %d days", deleted, self.retention_days)
        return deleted

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="carp-history", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def _run(self) -> None:
        from django.db import connection

        next_prune = time.monotonic()
        try:
            while True:
                # Idle, it still wakes for the next prune: a quiet cluster writes no
                # transitions, and its old rows must go all the same.
                until_prune = max(0.0, next_prune - time.monotonic())
                self._wake.wait(
                    timeout=min(self.retry_interval, until_prune) if self.pending else until_prune
                )
                if not self._stopping.is_set():
                    self._wake.clear()
                ok = self.flush()
                if self._stopping.is_set():
                    return
                if ok and time.monotonic() >= next_prune:
                    with contextlib.suppress(Exception):
                        self.prune()
                    next_prune = time.monotonic() + self.prune_interval
        finally:
            connection.close()


class BridgePublisher:
    """What the runner sees as its `StatePublisher`: Redis and the history, both queued."""

    def __init__(self, state: RedisStatePublisher, history: TransitionRecorder) -> None:
        self.state = state
        self.history = history

    def publish(
        self, interface: str, vhid: int, state: State, reason: Reason, *, old: State, at: float
    ) -> None:
        self.state.publish(interface, vhid, state, reason, old=old, at=at)
        self.history.add(interface, vhid, str(old), str(state), str(reason), at)

    def changed(self, interface: str, vhid: int) -> None:
        self.state.changed(interface, vhid)


# ---- the engine ----------------------------------------------------------------------
class EnginePorts(Protocol):
    """What the engine needs from `runner.SystemPorts` (tests pass fakes)."""

    def runner(self, configs: Iterable[VirtualHostConfig], **options: Any) -> Runner: ...

    def watch(self, interfaces: Iterable[str]) -> None: ...

    def start(self) -> None: ...

    def close(self) -> None: ...


class Engine:
    """One node's runner, its configuration and its publishers, in the worker's process."""

    def __init__(
        self,
        node: str,
        ports: EnginePorts,
        *,
        redis_url: str,
        store: LocalConfigStore,
        retention_days: int,
        read_config: Callable[[str], NodeConfig] = read_database,
        startup_timeout: float = DB_STARTUP_TIMEOUT,
        retry_interval: float = DB_RETRY_INTERVAL,
        resync_interval: float = RESYNC_INTERVAL,
        heartbeat_interval: float = statekeys.HEARTBEAT_INTERVAL,
    ) -> None:
        self.node = node
        self.ports = ports
        self.store = store
        self.read_config = read_config
        self.startup_timeout = startup_timeout
        self.retry_interval = retry_interval
        self.resync_interval = resync_interval
        self.applied: NodeConfig | None = None
        self.saved_version: str | None = None  # what the local file holds
        self.config_source = "none"  # "database", "local", or nothing applied yet
        self.demotion = 0
        self.database_ok = False
        self.history = TransitionRecorder(node, retention_days=retention_days)
        self.state = RedisStatePublisher(
            node,
            redis_url,
            self._snapshot,
            self._status,
            interval=heartbeat_interval,
            on_reconnect=self.resync_now,
        )
        self.runner = ports.runner([], publisher=BridgePublisher(self.state, self.history))
        self._lock = threading.Lock()
        self._converging = threading.Lock()
        self._stopping = threading.Event()
        self._resync = threading.Event()
        self._first_read = threading.Event()
        self._threads: list[threading.Thread] = []

    def resync_now(self) -> None:
        """Have the config thread read the database at once (any thread)."""
        self._resync.set()

    def _snapshot(self) -> RunnerSnapshot:
        return self.runner.snapshot()

    def _status(self) -> dict[str, Any]:
        applied = self.applied
        return {
            "config_version": applied.version if applied is not None else "",
            "config_source": self.config_source,
            "demotion": self.demotion,
        }

    # -- start and stop ----------------------------------------------------------------
    def start(self) -> None:
        """Start serving at once; the configuration follows from the database, or
        from the local file when the database does not answer within
        `startup_timeout` seconds."""
        self.ports.start()
        self._spawn(self.runner.run, "carp-engine", daemon=False)
        self.history.start()
        self.state.start()
        self._spawn(self._config_loop, "carp-config", daemon=True)
        if not self._first_read.wait(self.startup_timeout) or not self.database_ok:
            local = self.store.load()
            if local is not None:
                self.saved_version = local.version
            if local is None:
                log.warning("no database and no local configuration yet: running nothing")
            else:
                self._apply(local, "local")

    def _spawn(self, target: Callable[[], None], name: str, daemon: bool) -> None:
        thread = threading.Thread(target=target, name=name, daemon=daemon)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> bool:
        """Bow out, remove the VIPs, publish ``stopped``; True when the runner stopped."""
        self._stopping.set()
        self._resync.set()  # ends the config thread's wait
        self.runner.request_stop()
        stopped = self.runner.stopped.wait(timeout)
        if not stopped:
            log.error("the CARP runner did not stop within %s s", timeout)
        self.state.stop()
        self.history.stop()
        self.ports.close()
        return stopped

    # -- configuration -----------------------------------------------------------------
    def _config_loop(self) -> None:
        from django.db import connection

        try:
            while not self._stopping.is_set():
                try:
                    self.converge()
                except Exception as exc:
                    if self.database_ok or not self._first_read.is_set():
                        log.warning("cannot read the configuration from the database: %s", exc)
                    self.database_ok = False
                self._first_read.set()
                wait = self.resync_interval if self.database_ok else self.retry_interval
                self._resync.wait(wait)
                self._resync.clear()
        finally:
            connection.close()

    def converge(self) -> dict[str, Any]:
        """Read the node's desired state from the database and converge to it.

        Level-triggered: the same version twice changes nothing. Raises when the
        database cannot be read (the caller retries). Returns a summary without
        the passwords, for the apply task's log.
        """
        # One converge at a time, read to save: the config thread and apply tasks (the
        # threads pool runs several) would otherwise let an earlier read be applied
        # (and saved) after a newer one, and the node run the older configuration.
        with self._converging:
            wanted = self.read_config(self.node)
            self.database_ok = True
            changed = self._apply(wanted, "database")
            # Compared with what the file holds, not with the last apply: a save that
            # failed (a full disk) is tried again at the next converge, or a restart
            # with the database down would serve an older configuration.
            if wanted.version != self.saved_version:
                try:
                    self.store.save(wanted)
                    self.saved_version = wanted.version
                except Exception:
                    log.exception("could not save the local configuration to %s", self.store.path)
        return {
            "node": self.node,
            "version": wanted.version,
            "changed": changed,
            "virtual_hosts": [[v.interface, v.vhid, v.advskew] for v in wanted.vhosts],
        }

    def _apply(self, wanted: NodeConfig, source: str) -> bool:
        with self._lock:
            if source == "local" and self.config_source == "database":
                return False  # the database answered meanwhile: it wins
            same = self.applied is not None and self.applied.version == wanted.version
            self.config_source = source
            if same:
                self._restart_missing(wanted)
                return False
            self.ports.watch(wanted.interfaces)
            self.runner.reconfigure(wanted.vhosts)
            demotion = MAINTENANCE_DEMOTION if wanted.maintenance else 0
            if demotion != self.demotion:
                self.runner.set_demotion(demotion, Reason.MAINTENANCE)
                self.demotion = demotion
            self.applied = wanted
        log.info(
            "applied configuration %s from the %s: %d virtual host(s)%s",
            wanted.version,
            source,
            len(wanted.vhosts),
            ", maintenance" if wanted.maintenance else "",
            extra={"event": "config", "version": wanted.version, "source": source},
        )
        return True

    def _restart_missing(self, wanted: NodeConfig) -> None:
        """Hand the runner the applied configuration again when one of its virtual
        hosts is not running: its socket could not be opened (an interface not there
        yet), which the runner logs and leaves. Level-triggered: the version did not
        change, but the node does not run it yet. Harmless when the runner has simply
        not taken the last configuration yet (the same one again touches nothing)."""
        snap = self.runner.snapshot()
        if not snap.running:
            return
        running = {(h.interface, h.vhid) for h in snap.hosts}
        missing = [
            f"vhid {v.vhid} on {v.interface}"
            for v in wanted.vhosts
            if (v.interface, v.vhid) not in running
        ]
        if missing:
            log.info("virtual host(s) not running, applying again: %s", ", ".join(missing))
            self.runner.reconfigure(wanted.vhosts)


# The engine of this process, for the apply task (solo and threads pools run tasks
# in the worker's own process: NOTES.md).
_current: Engine | None = None


def current_engine() -> Engine | None:
    return _current


def set_current_engine(engine: Engine | None) -> None:
    global _current
    _current = engine


__all__ = [
    "MAINTENANCE_DEMOTION",
    "BridgePublisher",
    "Engine",
    "LocalConfigStore",
    "NodeConfig",
    "RedisStatePublisher",
    "TransitionRecorder",
    "config_version",
    "current_engine",
    "read_database",
    "set_current_engine",
    "vhost_config",
]
