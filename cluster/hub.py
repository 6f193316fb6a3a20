"""One live computation per process, fanned out to every viewer (issue 11).

`StatusHub` is two asyncio tasks: a reader that subscribes to ``carp:events``
and hands each message, as it arrives, to the listeners (each open stream
forwards transitions and cluster events to its page at once, even while a
computation runs) and then to the computation loop, which recomputes
``live.compute_status()`` in a worker thread of its own (never the server's
thread for synchronous views) once per change:

- a message on ``carp:events`` (a transition, a virtual host's new values, an
  engine started or stopped, a ``desired`` change written by the services);
- a heartbeat that says something new (a node back, a new demotion or
  configuration; the once-a-second refresh of the same heartbeat is no change);
- a heartbeat expiring: the recomputation is scheduled at the moment the
  first reporting node's heartbeat key expires, not on a blind tick. The moment
  is Redis's own (the keys' remaining TTL after each computation, and a full
  TTL from each heartbeat message's arrival), never a node's clock: a node
  whose clock is off must not make the hub recompute in a loop;
- a desired-state change made in this process (``desired_changed()``, called by
  the services after the commit; it also reaches other processes over Redis);
- Redis coming back (the hub resubscribes every ``RESUBSCRIBE`` seconds while
  it is away; the status meanwhile says ``available: false``).

Messages that arrive within ``COALESCE`` of each other, or while a computation
runs, make one computation; those that came during a computation are a batch
already, and the next computation starts as soon as it ends, without the
window. The computations read Redis on a connection the hub's worker thread
keeps (a new one after a failure). Each new status (one whose ``live.fingerprint``
differs, or that came with transitions) is fanned out to every subscriber
through a one-place queue: a slow subscriber finds only the newest status
there, with the transitions of those it missed merged in; the hub never waits
for a subscriber.

Readers:

- the status page's event stream (``live.event_stream``) subscribes;
- ``GET /api/v1/status/`` and ``/metrics`` read ``current_update()`` (the
  newest status, computed by nobody in the request), falling back to a
  computation of their own when no hub runs in this process (the test client,
  a management command);
- another process (the notifier) runs a hub of its own.

The interface, for another process::

    from cluster.hub import StatusHub

    async def main() -> None:
        hub = StatusHub(settings.REDIS_URL)
        hub.start()                      # in the running loop; stop with await hub.stop()
        with hub.subscribe() as statuses:
            first = await hub.wait_latest()      # the status at start
            async for update in statuses:        # each new status, newest first if behind
                update.status                    # live.Status (dataclasses)
                update.data                      # the same as a dict (GET /api/v1/status/)
                update.transitions               # statekeys.TransitionMessage since the last one
                update.trigger                   # every message that led to it
                update.seq                       # increasing, per hub

or from synchronous code, a hub in a thread of its own::

    hub = BackgroundHub(settings.REDIS_URL)      # starts it
    for update in hub.updates(timeout=1.0):      # yields None when nothing came in time
        ...
    hub.close()

The web process runs one hub, started by the ASGI application
(``appliance/asgi.py``) at the server's start-up or at its first request
(``ensure_shared``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import queue
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any, Self

from redis.exceptions import RedisError

from cluster import desired, live, statekeys
from cluster.checks import CheckStatus

log = logging.getLogger(__name__)

COALESCE = 0.005  # seconds to wait for more messages after one before recomputing
RESUBSCRIBE = 2.0  # seconds between attempts while Redis is away
RETRY_AFTER_FAILURE = 1.0  # seconds before computing again when a computation failed
MIN_GAP = 0.05  # an expiry already due is looked at again no sooner than this
EXPIRY_MARGIN = 0.01  # past the key's TTL, so that Redis reads it as gone
TRIGGER_LIMIT = 500  # messages kept in one update's trigger (a slow subscriber's merge)
# Messages the reader queues for a computation loop that is busy, at most: beyond it
# the oldest go (a computation reads every node's state from Redis anyway, so the
# status loses nothing; only the trigger does) and the loop is told to look again.
QUEUED_LIMIT = 4 * TRIGGER_LIMIT
READ_POLL = 1.0  # seconds the reader waits in one read of the channel (then reads again)

Listener = Callable[[statekeys.Message], None]


@dataclass(frozen=True)
class Update:
    """One computed status, as every subscriber gets it."""

    seq: int
    status: live.Status
    data: dict[str, Any]
    status_json: str  # ``data`` as JSON, encoded once for every stream
    trigger: tuple[statekeys.Message, ...]
    computed_at: float  # time.time() when the computation finished
    desired_generation: int = 0  # ``desired_changed()`` calls it had seen when it began
    heard: int = 0  # transitions the hub had heard when its computation began

    @property
    def transitions(self) -> list[statekeys.TransitionMessage]:
        return [m for m in self.trigger if isinstance(m, statekeys.TransitionMessage)]

    @cached_property
    def trigger_json(self) -> str:
        messages = [statekeys.message_dict(m) for m in self.trigger]
        return json.dumps(messages, separators=(",", ":"))

    def sse_status(self) -> str:
        """The stream's ``status`` event: the status plus ``trigger``, without
        encoding the status again (it is the same text for every stream)."""
        body = self.status_json[:-1] + ',"trigger":' + self.trigger_json + "}"
        return f"event: status\ndata: {body}\n\n"

    @cached_property
    def sse(self) -> bytes:
        """What every stream sends for this update, encoded once: a ``transition``
        event per transition of the trigger (each stream had them already as the
        hub heard them, unless it missed them: see `event_stream`), then the
        ``status`` event, as one chunk. Each chunk costs a stream a pass through
        Django's and uvicorn's send path and a write to its socket, much the same
        for 100 bytes as for the nine-node demo's 8 KB: with one chunk per update, a transition
        reached the last of 100 streams in 0.67 to 0.85 times the time of a
        chunk per event at a load average of 1 to 2, about 0.55 times at 6
        (bench/stream_fanout.py)."""
        events = [transition_sse(m) for m in self.transitions]
        events.append(self.sse_status().encode())
        return b"".join(events)

    def after(self, missed: Update) -> Update:
        """This update for a subscriber that never got ``missed``: its trigger too."""
        trigger = (missed.trigger + self.trigger)[-TRIGGER_LIMIT:]
        return dataclasses.replace(self, trigger=trigger)


class Subscription:
    """A subscriber's one-place queue; iterate it (async) for each new update."""

    def __init__(self, hub: StatusHub) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[Update] = asyncio.Queue(maxsize=1)
        self.skipped = 0  # updates replaced by a newer one before this subscriber took them

    def offer(self, update: Update) -> None:
        """Called by the hub; never waits. A waiting update is replaced by the new one."""
        with contextlib.suppress(asyncio.QueueEmpty):
            update = update.after(self._queue.get_nowait())
            self.skipped += 1
        self._queue.put_nowait(update)

    async def get(self, timeout: float | None = None) -> Update | None:
        """The next update, or None after ``timeout`` seconds without one."""
        try:
            async with asyncio.timeout(timeout):
                return await self._queue.get()
        except TimeoutError:
            return None

    def close(self) -> None:
        self._hub._subscribers.discard(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> AsyncIterator[Update]:
        return self

    async def __anext__(self) -> Update:
        return await self._queue.get()


# Desired-state changes made by this process (``desired_changed``): a reader that
# just wrote waits for a status computed after its write (read-your-writes).


@dataclass
class StatusHub:
    """The one computation of the live status in a process; see the module doc."""

    redis_url: str
    # None: ``live.compute_status`` on the hub's kept Redis connection (`_compute_live`).
    compute: Callable[[], live.Status] | None = None
    coalesce: float = COALESCE
    resubscribe: float = RESUBSCRIBE
    listeners: list[Listener] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.computations = 0  # how many times the status was computed
        self.latest: Update | None = None
        self._subscribers: set[Subscription] = set()
        self._seq = 0
        self._shown = ""
        self._pending: list[statekeys.Message] = []
        self._heartbeats: dict[str, str] = {}  # node -> what its heartbeat says, time aside
        self._expiries: dict[str, float] = {}  # node -> when its heartbeat key expires
        self._connected: frozenset[str] | None = None  # the nodes' named connections
        self._client: Any = None
        self._redis: Any = None  # the worker thread's Redis client for the computations
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        # The reader task's hand-over to the computation loop: the messages heard
        # since the loop last took them, and whether the subscription was lost.
        self._queued: list[statekeys.Message] = []
        self._lost = False
        self._arrived = asyncio.Event()
        self.transitions_heard = 0  # by the reader, since the start
        self._changed = threading.Condition()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="status-hub"
        )

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Start the hub's task in the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = self._loop.create_task(self.run(), name="status-hub")

    @property
    def running(self) -> bool:
        loop = self._loop
        return (
            self._task is not None
            and not self._task.done()
            and loop is not None
            and not loop.is_closed()
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
        await asyncio.get_running_loop().run_in_executor(self._executor, self._release)
        self._executor.shutdown(wait=False)

    def close(self) -> None:
        """Release the worker thread (and its database and Redis connections) from
        any thread, for a hub whose loop has ended."""
        with contextlib.suppress(RuntimeError):
            self._executor.submit(self._release).result(timeout=5)
        self._executor.shutdown(wait=False)

    def _release(self) -> None:
        """In the worker thread: close the connections it keeps."""
        _close_db()
        self._drop_redis()

    # ---- readers -----------------------------------------------------------------------
    def subscribe(self) -> Subscription:
        """A new subscriber (in the hub's loop); ``close()`` it, or use ``with``."""
        subscription = Subscription(self)
        self._subscribers.add(subscription)
        return subscription

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def wait_latest(self, timeout: float | None = None) -> Update | None:
        """The newest update, waiting for the first one if there is none yet."""
        if self.latest is not None:
            return self.latest
        with self.subscribe() as subscription:
            if self.latest is not None:
                return self.latest
            return await subscription.get(timeout)

    def current(self, timeout: float = 1.0) -> Update | None:
        """The newest update for a reader in another thread (a synchronous view):
        one computed after this process's last desired-state change, waiting up to
        ``timeout`` for it; None when there is none in time. The only wait is a
        request that follows this process's own write: one computation at most,
        so that an API client reads back what it just changed."""
        wanted = desired_generation()
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                latest = self.latest
                if latest is not None and latest.desired_generation >= wanted:
                    return latest
                left = deadline - time.monotonic()
                if left <= 0 or not self.running:
                    return None
                self._changed.wait(left)

    def desired_changed(self) -> None:
        """Thread-safe: the desired state changed in this process; recompute."""
        if self._loop is not None and self._wake is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._wake.set)

    # ---- the tasks ---------------------------------------------------------------------
    async def run(self) -> None:
        """The computation loop; the channel has a reader task of its own (`_read`)."""
        loop = asyncio.get_running_loop()
        if self._wake is None:
            self._wake = asyncio.Event()
        client = statekeys.async_client(self.redis_url, timeout=live.REDIS_TIMEOUT)
        self._client = client
        self._arrived = asyncio.Event()
        attempted = asyncio.Event()
        reader = loop.create_task(self._read(client, attempted), name="status-hub-reader")
        # A reader that fails ends the hub (``running`` says so), as a failure in
        # the loop does: it must not go on computing, deaf to the engines.
        main = asyncio.current_task()

        def ended(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and main is not None:
                log.error("the status hub's reader failed", exc_info=task.exception())
                main.cancel()

        reader.add_done_callback(ended)
        dirty = True
        not_before = 0.0  # after a failed computation, when to try again
        try:
            # Subscribed (or tried to) before the first computation: nothing the
            # engines publish after it is missed.
            await attempted.wait()
            while True:
                if dirty and loop.time() >= not_before:
                    if await self._recompute():
                        dirty = False
                    else:
                        not_before = loop.time() + RETRY_AFTER_FAILURE
                batch = await self._take(self._timeout(loop, dirty, not_before))
                if self._wake.is_set():
                    self._wake.clear()
                    dirty = True
                if self._lost:
                    # Messages were lost while unsubscribed: look again.
                    self._lost, dirty = False, True
                if batch:
                    dirty = await self._news(client, batch) or dirty
                if self._expired():
                    dirty = True
        finally:
            reader.cancel()
            await asyncio.wait([reader])  # its failure, if any, was logged by ``ended``
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()

    async def _read(self, client: Any, attempted: asyncio.Event) -> None:
        """The reader task: each message on ``carp:events`` as it arrives, to the
        listeners at once (each open stream forwards transitions and cluster
        events to its page without waiting for a computation under way), then
        to the computation loop's queue. Resubscribes every ``resubscribe``
        seconds while Redis is away; the computation loop then recomputes (the
        status says ``available: false``) and again once it is back."""
        loop = asyncio.get_running_loop()
        pubsub: Any = None
        next_subscribe = 0.0
        try:
            while True:
                if pubsub is None:
                    # One attempt every ``resubscribe`` seconds at most.
                    await asyncio.sleep(max(0.0, next_subscribe - loop.time()))
                    pubsub = await _subscribe(client)
                    next_subscribe = loop.time() + self.resubscribe
                    if pubsub is not None and attempted.is_set():
                        self._stir(lost=True)  # messages were lost while unsubscribed
                    attempted.set()
                    continue
                try:
                    # Bounded by a timeout of its own: redis-py's pub/sub retries a
                    # lost connection inside get_message, for seconds.
                    async with asyncio.timeout(READ_POLL + live.REDIS_TIMEOUT + 1):
                        message = await pubsub.get_message(timeout=READ_POLL)
                except (RedisError, OSError, TimeoutError) as exc:
                    log.warning("the status hub lost Redis: %r", exc)
                    await _close(pubsub)
                    pubsub = None
                    self._stir(lost=True)
                    continue
                decoded = _decode(message) if message is not None else None
                if decoded is not None:
                    self._heard(decoded)
        finally:
            await _close(pubsub)

    def _heard(self, message: statekeys.Message) -> None:
        """In the reader task: hand one message to the listeners, then queue it."""
        for listener in self.listeners:
            try:
                listener(message)
            except Exception:
                log.exception("a status hub listener failed")
        if isinstance(message, statekeys.TransitionMessage):
            self.transitions_heard += 1
        self._queued.append(message)
        overflow = len(self._queued) > QUEUED_LIMIT
        if overflow:
            del self._queued[:-QUEUED_LIMIT]
        self._stir(lost=overflow)

    def _stir(self, lost: bool = False) -> None:
        self._lost = self._lost or lost
        self._arrived.set()

    async def _take(self, timeout: float) -> list[statekeys.Message]:
        """The queued messages as one batch: at once those that came while the
        loop was busy (a computation, its fan-out, the reading of heartbeats);
        otherwise, after waiting up to ``timeout`` for the first, those within
        ``coalesce`` of it. Returns early when ``desired_changed`` wakes us."""
        assert self._wake is not None
        if not self._arrived.is_set():
            await _either(timeout, self._arrived, self._wake)
            if self._queued and not self._wake.is_set():
                await _either(self.coalesce, self._wake)
        batch, self._queued = self._queued, []
        self._arrived.clear()
        return batch

    def _timeout(self, loop: asyncio.AbstractEventLoop, dirty: bool, not_before: float) -> float:
        """How long to wait for messages: until the next heartbeat expiry, or a
        retry after a failure."""
        waits = [3600.0]
        if dirty:
            waits.append(not_before - loop.time())
        if self._expiries:
            waits.append(min(self._expiries.values()) + EXPIRY_MARGIN - time.time())
        return max(0.0, min(waits))

    def _expired(self) -> bool:
        expiries = self._expiries.values()
        return bool(expiries) and time.time() >= min(expiries) + EXPIRY_MARGIN

    async def _news(self, client: Any, batch: Sequence[statekeys.Message]) -> bool:
        """Whether ``batch`` changes the status; keeps what it says for the trigger.
        (The listeners had each message as the reader heard it.)"""
        beats = [m for m in batch if isinstance(m, statekeys.HeartbeatMessage)]
        # A stored cluster event changes nothing the status shows: the listeners
        # (each open stream's, in event_stream) have had it; no recomputation.
        news: list[statekeys.Message] = [
            m
            for m in batch
            if not isinstance(m, statekeys.HeartbeatMessage | statekeys.ClusterEventMessage)
        ]
        for beat in beats:
            # Its key was just set with a full TTL (the arrival, on our clock).
            self._expiries[beat.node] = time.time() + statekeys.HEARTBEAT_TTL
        changed = await self._changed_heartbeats(client, {b.node for b in beats})
        news.extend(b for b in beats if b.node in changed)
        self._pending.extend(news)
        del self._pending[:-TRIGGER_LIMIT]
        return bool(news)

    async def _changed_heartbeats(self, client: Any, nodes: set[str]) -> set[str]:
        """The nodes whose heartbeat says something new (its time and counters aside)."""
        if not nodes:
            return set()
        names = sorted(nodes)
        try:
            async with asyncio.timeout(live.REDIS_TIMEOUT * 2):
                pipe = client.pipeline(transaction=False)
                for name in names:
                    pipe.get(statekeys.heartbeat_key(name))
                # A killed worker's named connection is gone at once (the kernel
                # closes its sockets), long before its heartbeat key expires: the
                # live nodes' heartbeats, every second, are when we look.
                pipe.client_list(_type="normal")
                replies = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError, TimeoutError):
            return set(names)  # cannot tell: recompute
        *replies, listed = replies
        if any(isinstance(r, Exception) for r in replies):
            return set(names)
        connected = statekeys.node_connections(listed)
        changed = set()
        if connected is not None and connected != self._connected:
            if self._connected is not None:
                changed.update(names)  # the status changes: any name makes it news
            self._connected = connected
        for name, raw in zip(names, replies, strict=True):
            said = _what_it_says(raw)
            if self._heartbeats.get(name) != said:
                self._heartbeats[name] = said
                changed.add(name)
        return changed

    async def _key_expiries(self, nodes: list[str]) -> dict[str, float]:
        """When each node's heartbeat key expires, from Redis's remaining TTLs
        (counted from their arrival: late rather than early)."""
        if not nodes:
            return {}
        try:
            async with asyncio.timeout(live.REDIS_TIMEOUT * 2):
                pipe = self._client.pipeline(transaction=False)
                for name in nodes:
                    pipe.pttl(statekeys.heartbeat_key(name))
                replies = await pipe.execute()
        except (RedisError, OSError, TimeoutError, AttributeError):
            return {name: time.time() + statekeys.HEARTBEAT_TTL for name in nodes}
        now = time.time()
        expiries = {}
        for name, left in zip(nodes, replies, strict=True):
            if left == -1:
                continue  # no TTL: it will not expire by itself
            # -2: gone already (it was there during the computation): look again soon.
            expiries[name] = now + max(int(left), 0) / 1000 + (MIN_GAP if left < 0 else 0)
        return expiries

    async def _recompute(self) -> bool:
        """One computation in the worker thread, then the fan-out; False if it failed."""
        trigger, self._pending = tuple(self._pending), []
        generation = desired_generation()
        heard = self.transitions_heard
        loop = asyncio.get_running_loop()
        try:
            status, data, text, shown = await loop.run_in_executor(self._executor, self._compute)
        except Exception:
            log.exception("the live status could not be computed")
            self._pending[:0] = trigger
            return False
        self.computations += 1
        self._fan_out(status, data, text, shown, trigger, generation, heard)
        # After the fan-out: the readers need not wait for this round trip.
        self._expiries = await self._key_expiries([n.name for n in status.nodes if n.reporting])
        for node in status.nodes:
            if not node.reporting:
                self._heartbeats.pop(node.name, None)  # its next heartbeat is news
        return True

    def _fan_out(
        self,
        status: live.Status,
        data: dict[str, Any],
        text: str,
        shown: str,
        trigger: tuple[statekeys.Message, ...],
        generation: int,
        heard: int,
    ) -> None:
        if (
            self.latest is not None
            and shown == self._shown
            and not any(isinstance(m, statekeys.TransitionMessage) for m in trigger)
        ):
            # Nothing to show: keep the update (the readers' generation moves on).
            update = dataclasses.replace(
                self.latest, desired_generation=generation, computed_at=time.time()
            )
            self._publish(update, fan_out=False)
            return
        self._shown = shown
        self._seq += 1
        update = Update(self._seq, status, data, text, trigger, time.time(), generation, heard)
        self._publish(update, fan_out=True)

    def _compute(self) -> tuple[live.Status, dict[str, Any], str, str]:
        # The thread keeps its database connection from one computation to the
        # next (reconnecting each time cost milliseconds); one that failed is
        # closed, and the next computation opens a new one.
        try:
            status = self.compute() if self.compute is not None else self._compute_live()
        except Exception:
            _close_db()
            self._drop_redis()
            raise
        data = status.as_dict()
        return status, data, json.dumps(data, separators=(",", ":")), live.fingerprint(data)

    def _compute_live(self) -> live.Status:
        """``live.compute_status`` on a Redis connection the worker thread keeps:
        a new one per computation cost 0.8 ms more at the median, 1.9 ms at p95
        (issue 11). redis-py checks a pooled connection as it hands it out and
        reconnects one that Redis closed (a restart); a computation that could
        not read Redis drops the client all the same, and the next one opens a
        new connection."""
        if self._redis is None:
            self._redis = live.redis_client(self.redis_url)
        status = live.compute_status(client=self._redis)
        if not status.available:
            self._drop_redis()
        return status

    def _drop_redis(self) -> None:
        client, self._redis = self._redis, None
        if client is not None:
            with contextlib.suppress(RedisError, OSError):
                client.close()

    def _publish(self, update: Update, fan_out: bool) -> None:
        with self._changed:
            self.latest = update
            self._changed.notify_all()
        if fan_out:
            for subscription in list(self._subscribers):
                subscription.offer(update)


def _decode(message: dict[str, Any]) -> statekeys.Message | None:
    """A pub/sub message of ours, decoded; None for anything else."""
    if message.get("type") != "message":
        return None
    try:
        return statekeys.decode_message(message["data"])
    except ValueError as exc:
        log.warning("ignoring a message that is not ours (%s): %.200r", exc, message["data"])
        return None


def _what_it_says(raw: str | None) -> str:
    """A heartbeat without what changes at every beat: its time, its packet
    counters, and its health checks' times and counts (a check's result, its
    demotion and its gating are news)."""
    if raw is None:
        return ""
    try:
        beat = statekeys.Heartbeat.decode(raw)
    except statekeys.Unreadable:
        return raw  # unreadable: any new text is news
    checks = sorted((c.name, c.kind, c.passing, c.demotion, c.gating) for c in metrics_checks(beat))
    changes: dict[str, Any] = {"at": 0.0, "drops": {}, "port_errors": {}}
    if hasattr(beat, "checks"):
        changes["checks"] = type(beat.checks)()
    return repr((dataclasses.replace(beat, **changes), checks))


def metrics_checks(beat: statekeys.Heartbeat) -> list[CheckStatus]:
    """The health checks a heartbeat reports (``Heartbeat.checks``, when the
    engine sends them: a sequence or a mapping of `CheckStatus`)."""
    found: Any = getattr(beat, "checks", None) or ()
    if isinstance(found, dict):
        found = found.values()
    return [c for c in found if isinstance(c, CheckStatus)]


def _close_db() -> None:
    from django.db import connections

    connections.close_all()


async def _either(timeout: float, *events: asyncio.Event) -> None:
    """Wait until one of ``events`` is set, or ``timeout`` seconds."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def _subscribe(client: Any) -> Any:
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        async with asyncio.timeout(live.REDIS_TIMEOUT * 2):
            await pubsub.subscribe(statekeys.EVENTS_CHANNEL)
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("the status hub cannot subscribe: %s", exc)
        await _close(pubsub)
        return None
    return pubsub


async def _close(pubsub: Any) -> None:
    if pubsub is not None:
        with contextlib.suppress(RedisError, OSError):
            await pubsub.aclose()


# ---- the process's hub ------------------------------------------------------------------
_shared: StatusHub | None = None
_shared_lock = threading.Lock()


def ensure_shared(redis_url: str | None = None) -> StatusHub:
    """The process's hub, started in the running loop unless it runs already (in
    this loop). The ASGI application calls it; so does the event stream."""
    global _shared
    from django.conf import settings

    url = redis_url or settings.REDIS_URL
    loop = asyncio.get_running_loop()
    with _shared_lock:
        hub = _shared
        if hub is not None and hub.running and hub._loop is loop and hub.redis_url == url:
            return hub
        if hub is not None:
            hub.close()  # its loop has ended (a test's), or another Redis was asked for
        hub = StatusHub(url, listeners=_default_listeners())
        hub.start()
        _shared = hub
        return hub


def shared() -> StatusHub | None:
    """The process's running hub, or None (no server loop runs one here)."""
    hub = _shared
    return hub if hub is not None and hub.running else None


async def stop_shared() -> None:
    global _shared
    with _shared_lock:
        hub, _shared = _shared, None
    if hub is not None:
        await hub.stop()


def reset_shared() -> None:
    """Forget the process's hub (tests, whose loops end with each test)."""
    global _shared
    with _shared_lock:
        hub, _shared = _shared, None
    if hub is not None:
        hub.close()


_default: list[Listener] = []


def add_default_listener(listener: Listener) -> None:
    """Every hub this process shares gets ``listener`` (the ASGI application adds
    the metrics' observer: ``cluster.metrics`` reads this module, not the reverse)."""
    if listener not in _default:
        _default.append(listener)


def _default_listeners() -> list[Listener]:
    return list(_default)


def desired_generation() -> int:
    return desired.generation()


def desired_changed() -> None:
    """The services call this after a commit that changed the desired state
    (through ``cluster.desired``, which the dispatch imports instead of this module)."""
    desired.changed()


def _wake_shared() -> None:
    hub = _shared
    if hub is not None:
        hub.desired_changed()


desired.listen(_wake_shared)


def current_update() -> Update | None:
    """The newest update of this process's running hub, one computed after this
    process's own last desired change (`StatusHub.current`); None when no hub runs
    here (the test client, a management command) or it has none in time."""
    hub = shared()
    return hub.current() if hub is not None else None


def current_status() -> live.Status:
    """The newest status for a synchronous reader: the hub's when one runs in this
    process, else computed here (the test client, runserver without a stream yet)."""
    update = current_update()
    return update.status if update is not None else live.compute_status()


def current_data() -> dict[str, Any]:
    """``current_status().as_dict()``, without converting the hub's again."""
    update = current_update()
    return update.data if update is not None else live.compute_status().as_dict()


# ---- the status page's stream -----------------------------------------------------------
@lru_cache(maxsize=256)
def transition_sse(message: statekeys.TransitionMessage) -> bytes:
    """A transition's ``transition`` event, encoded once for every stream (the
    message is a frozen dataclass: the same transition is the same key; the
    hub's early forward and the update's chunk share it)."""
    return live.sse("transition", statekeys.message_dict(message)).encode()


async def event_stream(
    redis_url: str, status_hub: StatusHub | None = None
) -> AsyncGenerator[str | bytes, None]:
    """``status`` events (the body of ``GET /api/v1/status/`` plus ``trigger``,
    the messages that led to it) on connect and at each change, ``transition``
    events as the engines send them, ``cluster_event`` events (one stored cluster
    event, as ``/api/v1/events/`` shows it) as the notifiers announce them, which
    recompute nothing. Nothing is computed here: the process's
    status hub (cluster/hub.py) computes once for every stream and hands each
    the newest status; a stream that falls behind skips to it. Redis going away
    is survived by the hub: the status says so until it returns.

    A transition comes twice (issue 11): as the hub's reader hears it
    (`_Announced`, apart from any computation, so that the page shows it at
    once), and again in the chunk of the status computed after it
    (`Update.sse`), which the page ignores as a repeat (the same node, vhid,
    interface and ``at``). The second is what a stream that subscribed after the
    hub heard it, or whose queue of announced messages overflowed, still gets:
    no transition is lost silently, and a slow stream's status merges the
    transitions of those it skipped (`Update.after`). A transition is never
    followed by a status older than it: when a status and an announced message
    are both waiting, the status goes first (it was fanned out before the hub
    heard the message); a status whose computation began before the hub heard a
    transition this stream sent already (``Update.heard``) is held back and
    merged into the next, which that transition starts at once (up to
    ``HOLD_LIMIT`` in a row, so that a storm of transitions cannot starve the
    page of statuses)."""
    if status_hub is None:
        status_hub = ensure_shared(redis_url)
    loop = asyncio.get_running_loop()
    with status_hub.subscribe() as updates, _Announced(status_hub) as announced:
        yield f"retry: {live.RETRY_MS}\n\n"
        first = await status_hub.wait_latest()
        if first is None:  # only with a timeout, which is not given here
            return
        shown = first.seq
        yield live.sse("status", {**first.data, "trigger": []})
        last_sent = loop.time()
        sent_heard = 0  # the hub's count of transitions heard when this stream last sent one
        held: Update | None = None  # a status perhaps older than a transition sent
        while True:
            keepalive = max(0.0, live.KEEPALIVE - (loop.time() - last_sent))
            update, message = await announced.next(updates, keepalive)
            if update is None and message is None:
                yield ": keepalive\n\n"
                last_sent = loop.time()
                continue
            # (An update not newer than ``shown``: the first status, queued while
            # it was being sent.)
            if update is not None and update.seq > shown:
                if held is not None:
                    update, held = update.after(held), None
                if update.heard < sent_heard and update.seq - shown <= HOLD_LIMIT:
                    # Its computation began before the hub heard a transition this
                    # stream sent: it may not show it, and the page would go back
                    # to the older state. The next status, which the hub computes
                    # at once for that transition, goes instead (with this one's trigger).
                    held = update
                else:
                    shown = update.seq
                    yield update.sse  # its transitions, then its status: the same bytes for all
                    last_sent = loop.time()
            if message is not None:
                # Those that came while the stream was busy: one chunk for them all
                # (each chunk costs a pass through the server's send path).
                messages = [message, *announced.waiting()]
                if any(isinstance(m, statekeys.TransitionMessage) for m in messages):
                    sent_heard = status_hub.transitions_heard
                yield b"".join(map(_announced_sse, messages))
                last_sent = loop.time()


HOLD_LIMIT = 3  # statuses a stream holds back in a row for a transition it sent (see event_stream)
ANNOUNCED_QUEUED = 100  # announced messages a stream holds for its browser, newest kept

AnnouncedMessage = statekeys.TransitionMessage | statekeys.ClusterEventMessage


def _announced_sse(message: AnnouncedMessage) -> bytes:
    if isinstance(message, statekeys.TransitionMessage):
        return transition_sse(message)
    return live.sse("cluster_event", message.public()).encode()


class _Announced:
    """A stream's transitions and cluster events, as the hub hears them from the
    engines and the notifiers: a hub listener (called by the hub's reader for
    every message as it arrives; it never waits; a stream that falls behind
    loses the oldest, and finds its transitions in the next status's chunk)
    while the stream runs, and the stream's wait for the next status or message."""

    def __init__(self, status_hub: StatusHub) -> None:
        self._hub = status_hub
        self._queue: asyncio.Queue[AnnouncedMessage] = asyncio.Queue(ANNOUNCED_QUEUED)
        # Both waits are kept from one round to the next: neither is cancelled
        # half-way while the other answers.
        self._update: asyncio.Task[Update | None] | None = None
        self._event: asyncio.Task[AnnouncedMessage] | None = None

    def offer(self, message: statekeys.Message) -> None:
        if isinstance(message, statekeys.TransitionMessage | statekeys.ClusterEventMessage):
            if self._queue.full():
                self._queue.get_nowait()
            self._queue.put_nowait(message)

    def waiting(self) -> list[AnnouncedMessage]:
        """The messages queued now, which the stream has not taken yet."""
        found = []
        while not self._queue.empty():
            found.append(self._queue.get_nowait())
        return found

    async def next(
        self, updates: Subscription, timeout: float
    ) -> tuple[Update | None, AnnouncedMessage | None]:
        """Whichever came first (both if both did), or (None, None) after ``timeout``."""
        if self._update is None:
            self._update = asyncio.ensure_future(updates.get())
        if self._event is None:
            self._event = asyncio.ensure_future(self._queue.get())
        done, _ = await asyncio.wait(
            (self._update, self._event), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        update = event = None
        if self._update in done:
            update, self._update = self._update.result(), None
        if self._event in done:
            event, self._event = self._event.result(), None
        return update, event

    def __enter__(self) -> Self:
        self._hub.listeners.append(self.offer)
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(ValueError):
            self._hub.listeners.remove(self.offer)
        for task in (self._update, self._event):
            if task is not None:
                task.cancel()


# ---- a hub in a thread of its own, for synchronous code ------------------------------
class BackgroundHub:
    """A `StatusHub` on an event loop in a daemon thread; `updates()` yields each
    new update to synchronous code (a slow reader gets the newest)."""

    def __init__(self, redis_url: str, **options: Any) -> None:
        self._updates: queue.Queue[Update] = queue.Queue(maxsize=1)
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.hub = StatusHub(redis_url, **options)
        self._thread = threading.Thread(target=self._run, name="status-hub-loop", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self.hub.start()
        with self.hub.subscribe() as subscription:
            self._ready.set()
            forward = asyncio.ensure_future(self._forward(subscription))
            await self._stopping.wait()
            forward.cancel()
        await self.hub.stop()

    async def _forward(self, subscription: Subscription) -> None:
        async for update in subscription:
            with contextlib.suppress(queue.Empty):
                update = update.after(self._updates.get_nowait())
            self._updates.put_nowait(update)

    def updates(self, timeout: float | None = None) -> Iterator[Update | None]:
        """Each new update; None when ``timeout`` passes without one."""
        while self._thread.is_alive():
            try:
                yield self._updates.get(timeout=timeout)
            except queue.Empty:
                yield None

    def latest(self) -> Update | None:
        return self.hub.latest

    def close(self) -> None:
        if self._loop is not None and self._stopping is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=10)
