"""The status hub (cluster/hub.py): one computation per change, fanned out.

The hub runs against the private test Redis. Its computation is a stand-in
that counts its calls (the live status itself is tested in test_live.py), so
that "once per change, however many subscribers" is counted, not assumed.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from cluster import hub, live, services, statekeys
from cluster.carp.types import DemotionSource, State
from cluster.lab.redisd import RedisServer
from tests.factories import alias_data
from tests.livestate import FakeEngines, chunk_text


class CountingCompute:
    """A computation that counts its calls; each result differs from the last
    (its alert names the call), so every computation is a change to show."""

    def __init__(self, node_last_seen: float | None = None, redis_url: str = "") -> None:
        self.calls = 0
        self.times: list[float] = []  # time.monotonic() of each call
        self.node_last_seen = node_last_seen
        self.redis_url = redis_url  # node1 reports while its heartbeat key is there

    def __call__(self) -> live.Status:
        self.calls += 1
        self.times.append(time.monotonic())
        nodes = []
        if self.redis_url:
            client = statekeys.sync_client(self.redis_url)
            if not client.exists(statekeys.heartbeat_key("node1")):
                self.node_last_seen = None
            client.close()
        if self.node_last_seen is not None:
            nodes.append(
                live.NodeStatus("node1", 1, False, True, self.node_last_seen, "database", None, "")
            )
        alert = live.Alert(live.NO_MASTER, f"computation {self.calls}")
        return live.Status(True, "", time.time(), nodes, [], [alert])


def transition(vhid: int, at: float = 1000.0) -> str:
    message = statekeys.TransitionMessage(
        "node2", "eth0", vhid, State.BACKUP, State.MASTER, "master_down", at
    )
    return statekeys.encode_message(message)


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return async_to_sync(scenario)()


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


async def subscribed(url: str) -> None:
    client = statekeys.async_client(url)
    try:
        for _ in range(500):
            if (await client.pubsub_numsub(statekeys.EVENTS_CHANNEL))[0][1] > 0:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the hub never subscribed")
    finally:
        await client.aclose()


async def started(redis_url: str, compute: Any, **options: Any) -> hub.StatusHub:
    status_hub = hub.StatusHub(redis_url, compute, **options)
    status_hub.start()
    assert await status_hub.wait_latest(timeout=5) is not None
    await subscribed(redis_url)
    return status_hub


def test_a_hundred_subscribers_cost_one_computation_per_change(redis_url, engines):
    compute = CountingCompute()

    async def scenario() -> tuple[tuple[int, int], list[list[int]]]:
        status_hub = await started(redis_url, compute)
        try:
            subscriptions = [status_hub.subscribe() for _ in range(100)]
            before = compute.calls
            await asyncio.to_thread(engines.client.publish, statekeys.EVENTS_CHANNEL, transition(1))
            firsts = [await s.get(timeout=5) for s in subscriptions]
            await asyncio.sleep(0.2)  # time for any extra computation to show up
            after = compute.calls
            await asyncio.to_thread(engines.client.publish, statekeys.EVENTS_CHANNEL, transition(2))
            seconds = [await s.get(timeout=5) for s in subscriptions]
            await asyncio.sleep(0.2)
            assert all(u is not None for u in firsts + seconds)
            vhids = [[t.vhid for u in (f, s) if u for t in u.transitions] for f, s in
                     zip(firsts, seconds, strict=True)]  # fmt: skip
            return (after - before, compute.calls - after), vhids
        finally:
            await status_hub.stop()

    (first_change, second_change), vhids = run(scenario)
    assert (first_change, second_change) == (1, 1)
    assert vhids == [[1, 2]] * 100  # every subscriber got both, each in its own update


def test_a_burst_of_messages_is_one_computation_with_every_message_in_its_trigger(
    redis_url, engines
):
    compute = CountingCompute()

    async def scenario() -> tuple[int, list[int]]:
        status_hub = await started(redis_url, compute, coalesce=0.05)
        try:
            with status_hub.subscribe() as updates:
                before = compute.calls
                pipe = engines.client.pipeline(transaction=False)
                for vhid in range(1, 21):
                    pipe.publish(statekeys.EVENTS_CHANNEL, transition(vhid))
                await asyncio.to_thread(pipe.execute)
                update = await updates.get(timeout=5)
                await asyncio.sleep(0.3)
                assert update is not None
                return compute.calls - before, [t.vhid for t in update.transitions]
        finally:
            await status_hub.stop()

    computations, vhids = run(scenario)
    assert computations == 1
    assert vhids == list(range(1, 21))


def test_a_slow_subscriber_gets_the_newest_status_with_the_transitions_it_missed(
    redis_url, engines
):
    compute = CountingCompute()

    async def scenario() -> tuple[Any, Any, int]:
        status_hub = await started(redis_url, compute)
        try:
            with status_hub.subscribe() as slow, status_hub.subscribe() as quick:
                for vhid in (1, 2, 3):
                    await asyncio.to_thread(
                        engines.client.publish, statekeys.EVENTS_CHANNEL, transition(vhid)
                    )
                    # The quick one reads each update; the slow one reads none yet.
                    assert (await quick.get(timeout=5)) is not None
                update = await slow.get(timeout=1)
                return update, status_hub.latest, slow.skipped
        finally:
            await status_hub.stop()

    update, latest, skipped = run(scenario)
    assert update.seq == latest.seq  # the newest, not the first it missed
    assert [t.vhid for t in update.transitions] == [1, 2, 3]
    assert skipped == 2


def test_the_same_heartbeat_again_is_no_change_and_a_new_demotion_is(redis_url, engines):
    compute = CountingCompute()
    heartbeat = statekeys.encode_message(statekeys.HeartbeatMessage("node1", time.time()))

    async def beat(**options: Any) -> None:
        await asyncio.to_thread(engines.beat, "node1", **options)
        await asyncio.to_thread(engines.client.publish, statekeys.EVENTS_CHANNEL, heartbeat)

    async def scenario() -> list[int]:
        status_hub = await started(redis_url, compute)
        try:
            counts = []
            await beat()  # the first heartbeat the hub sees from node1: news
            await asyncio.sleep(0.3)
            counts.append(compute.calls)
            for _ in range(3):  # the once-a-second refresh: no news
                await beat()
            await asyncio.sleep(0.3)
            counts.append(compute.calls)
            await beat(demotion=[DemotionSource("maintenance", 240, "maintenance")])
            await until(lambda: compute.calls > counts[-1])
            await asyncio.sleep(0.3)
            counts.append(compute.calls)
            return counts
        finally:
            await status_hub.stop()

    first, refreshed, demoted = run(scenario)
    assert refreshed == first
    assert demoted == first + 1


def test_the_hub_recomputes_when_a_heartbeat_expires_and_not_before(redis_url, engines):
    # node1 reports; its heartbeat key expires in 0.8 s (Redis's TTL). Its own
    # clock is a minute behind: the hub must not go by it.
    beaten = time.monotonic()
    engines.beat("node1", at=time.time() - 60, ttl=0.8)
    compute = CountingCompute(node_last_seen=time.time() - 60, redis_url=redis_url)

    async def scenario() -> list[float]:
        status_hub = await started(redis_url, compute)
        try:
            assert compute.node_last_seen is not None  # it started while node1 reported
            first = compute.calls
            await until(lambda: compute.calls > first, timeout=3)
            waited = compute.times[first] - beaten
            await asyncio.sleep(1.0)
            return [waited, compute.calls - first]
        finally:
            await status_hub.stop()

    waited, computations = run(scenario)
    assert compute.node_last_seen is None  # the recomputation found the key gone
    assert waited < 1.5
    assert computations == 1  # once at the expiry, then nothing more to wait for


def test_a_desired_change_in_this_process_is_read_back_by_a_synchronous_reader(redis_url):
    compute = CountingCompute()

    async def scenario() -> tuple[int, int]:
        status_hub = await started(redis_url, compute)
        try:
            before = compute.calls
            hub._shared, saved = status_hub, hub._shared
            try:
                hub.desired_changed()
                # What GET /api/v1/status/ does, in its thread: a status computed
                # after the change, waited for, not computed by the reader.
                update = await asyncio.to_thread(status_hub.current, 5.0)
            finally:
                hub._shared = saved
            assert update is not None
            assert update.desired_generation >= hub.desired_generation()
            return before, compute.calls
        finally:
            await status_hub.stop()

    before, after = run(scenario)
    assert after == before + 1


def test_the_status_view_reads_the_running_hub_without_computing(
    redis_url, monkeypatch, alice, client
):
    compute = CountingCompute()
    background = hub.BackgroundHub(redis_url, compute=compute)
    try:
        assert next(background.updates(timeout=5)) is not None
        monkeypatch.setattr(hub, "_shared", background.hub)

        def refuse() -> live.Status:
            raise AssertionError("the view computed the status itself")

        monkeypatch.setattr(live, "compute_status", refuse)
        calls = compute.calls
        client.force_login(alice)
        answer = client.get("/api/v1/status/")
        assert answer.status_code == 200
        assert answer.json()["alerts"][0]["message"] == f"computation {calls}"
        assert compute.calls == calls
    finally:
        background.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, to stop and start again."""
    with RedisServer(tmp_path) as server:
        yield server


def test_the_hub_survives_losing_redis_and_resubscribes_when_it_returns(own_redis):
    compute = CountingCompute()

    async def scenario() -> tuple[int, list[int]]:
        status_hub = await started(own_redis.url, compute, resubscribe=0.2)
        try:
            with status_hub.subscribe() as updates:
                await asyncio.to_thread(own_redis.stop)
                await asyncio.sleep(1.0)  # it notices, and keeps trying
                assert status_hub.running
                await asyncio.to_thread(own_redis.start)
                await subscribed(own_redis.url)
                # Back: a message reaches it again.
                while (await updates.get(timeout=0.01)) is not None:
                    pass  # the recomputations of the outage and of the return
                engines = FakeEngines(own_redis.url)
                try:
                    await asyncio.to_thread(
                        engines.client.publish, statekeys.EVENTS_CHANNEL, transition(7)
                    )
                finally:
                    engines.close()
                update = await updates.get(timeout=5)
                assert update is not None
                return compute.calls, [t.vhid for t in update.transitions]
        finally:
            await status_hub.stop()

    calls, vhids = run(scenario)
    assert vhids == [7]
    assert calls >= 3  # at start, on the return (messages were lost), and for the message


def test_a_background_hub_hands_synchronous_code_each_update(redis_url, engines):
    compute = CountingCompute()
    background = hub.BackgroundHub(redis_url, compute=compute)
    try:
        updates = background.updates(timeout=5)
        first = next(updates)
        assert first is not None
        # Subscribed before it handed out its first status.
        engines.client.publish(statekeys.EVENTS_CHANNEL, transition(4))
        second = next(updates)
        assert second is not None
        assert [t.vhid for t in second.transitions] == [4]
        assert json.loads(second.status_json) == second.data
    finally:
        background.close()


def test_an_update_is_a_status_event_with_its_trigger_without_encoding_the_status_again():
    compute = CountingCompute()
    status = compute()
    data = status.as_dict()
    message = statekeys.decode_message(transition(9))
    update = hub.Update(1, status, data, json.dumps(data), (message,), time.time())
    head, body = update.sse_status().split("\n", 2)[:2]
    assert head == "event: status"
    assert json.loads(body.removeprefix("data: ")) == {
        **data,
        "trigger": [statekeys.message_dict(message)],
    }


def sse_events(chunk: str | bytes) -> list[tuple[str, Any]]:
    """The events (name, data) in a chunk of the stream."""
    text = chunk_text(chunk)
    found = []
    for block in text.split("\n\n"):
        if block.startswith("event: "):
            head, data = block.split("\n", 1)
            found.append((head.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return found


async def status_chunk(stream: Any) -> Any:
    """The stream's next chunk with a status, past the transitions the hub
    forwarded as it heard them (a chunk of their own)."""
    while True:
        chunk = await asyncio.wait_for(anext(stream), 5)
        if "status" in [name for name, _ in sse_events(chunk)]:
            return chunk


def test_an_update_reaches_every_stream_as_one_chunk_and_a_slow_stream_gets_what_it_missed(
    redis_url, engines
):
    compute = CountingCompute()

    async def scenario() -> tuple[list[Any], Any, hub.Update]:
        status_hub = await started(redis_url, compute)
        quick, slow = (
            hub.event_stream(redis_url, status_hub),
            hub.event_stream(redis_url, status_hub),
        )
        try:
            for stream in (quick, slow):
                assert chunk_text(await anext(stream)).startswith("retry:")
                assert chunk_text(await anext(stream)).startswith("event: status")
            chunks = []
            for vhid in (1, 2):
                await asyncio.to_thread(
                    engines.client.publish, statekeys.EVENTS_CHANNEL, transition(vhid)
                )
                chunks.append(await status_chunk(quick))
            # The slow stream read nothing meanwhile: one chunk, with both transitions.
            behind = await asyncio.wait_for(anext(slow), 5)
            assert status_hub.latest is not None
            return chunks, behind, status_hub.latest
        finally:
            await quick.aclose()
            await slow.aclose()
            await status_hub.stop()

    chunks, behind, latest = run(scenario)
    # Encoded once by the hub: the stream sends the update's own bytes.
    assert chunks[-1] is latest.sse
    for vhid, chunk in zip((1, 2), chunks, strict=True):
        (name, message), (last, status) = sse_events(chunk)
        assert (name, message["vhid"], last) == ("transition", vhid, "status")
        assert status["trigger"] == [message]
    names = [name for name, _ in sse_events(behind)]
    assert names == ["transition", "transition", "status"]
    *missed, (_, status) = sse_events(behind)
    assert [m["vhid"] for _, m in missed] == [1, 2]
    assert status == {**latest.data, "trigger": [m for _, m in missed]}


@pytest.mark.django_db(transaction=True)
def test_a_committed_change_of_the_desired_state_is_announced_to_every_hub(engines, alice, nodes):
    listener = engines.client.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(statekeys.EVENTS_CHANNEL)
    try:
        generation = hub.desired_generation()
        services.create_alias(alice, alias_data(5))
        # This process's hub: at once, with no Redis round trip.
        assert hub.desired_generation() > generation
        # The others: a ``desired`` message on carp:events.
        message = None
        deadline = time.monotonic() + 5
        while message is None and time.monotonic() < deadline:
            message = listener.get_message(timeout=0.5)
        assert message is not None
        assert isinstance(statekeys.decode_message(message["data"]), statekeys.DesiredMessage)
    finally:
        listener.close()


def test_a_killed_nodes_closed_connection_is_news_at_the_next_heartbeat_of_another_node(
    redis_url: str, engines: FakeEngines
) -> None:
    """The hub recomputes when a node's named connection closes (a killed worker's
    sockets close at once), at the next heartbeat of any other node, long before
    the dead node's heartbeat key expires."""
    compute = CountingCompute()
    heartbeat = statekeys.encode_message(statekeys.HeartbeatMessage("node2", time.time()))
    node1 = statekeys.sync_client(redis_url)
    node1.client_setname(statekeys.node_client_name("node1"))

    async def beat() -> None:
        await asyncio.to_thread(engines.beat, "node2")
        await asyncio.to_thread(engines.client.publish, statekeys.EVENTS_CHANNEL, heartbeat)

    async def scenario() -> tuple[int, int]:
        status_hub = await started(redis_url, compute)
        try:
            for _ in range(2):  # node2's first heartbeat is news; the second is not
                await beat()
                await asyncio.sleep(0.3)
            quiet = compute.calls
            await beat()
            await asyncio.sleep(0.3)
            unchanged = compute.calls - quiet
            await asyncio.to_thread(node1.close)  # node1's worker is killed
            await beat()
            await until(lambda: compute.calls > quiet + unchanged)
            return unchanged, compute.calls - quiet
        finally:
            await status_hub.stop()

    try:
        unchanged, after_close = run(scenario)
    finally:
        node1.close()
    assert unchanged == 0
    assert after_close == 1


async def open_streams(
    redis_url: str, status_hub: hub.StatusHub, count: int
) -> list[AsyncGenerator[str | bytes, None]]:
    """``count`` status streams, each past its ``retry:`` and its first status."""
    streams = [hub.event_stream(redis_url, status_hub) for _ in range(count)]
    for stream in streams:
        assert chunk_text(await anext(stream)).startswith("retry:")
        assert chunk_text(await anext(stream)).startswith("event: status\n")
    return streams


def test_an_announced_cluster_event_reaches_each_open_stream_and_computes_nothing(
    redis_url, engines
):
    compute = CountingCompute()
    event = statekeys.ClusterEventMessage(
        7, "node_not_reporting", "Node node2 is not reporting.", "2026-12-02T03:32:48Z",
        node="node2", dedup_key="node:node2#1",
    )  # fmt: skip

    async def scenario() -> tuple[list[str], int, int]:
        status_hub = await started(redis_url, compute)
        streams = await open_streams(redis_url, status_hub, 2)
        try:
            before = compute.calls
            raw = statekeys.encode_message(event)
            await asyncio.to_thread(engines.client.publish, statekeys.EVENTS_CHANNEL, raw)
            received = [chunk_text(await asyncio.wait_for(anext(s), 5)) for s in streams]
            await asyncio.sleep(0.3)  # time for a computation, if one were made, to show up
            computations = compute.calls - before
        finally:
            for stream in streams:
                await stream.aclose()
        try:
            return received, computations, len(status_hub.listeners)
        finally:
            await status_hub.stop()

    received, computations, listeners = run(scenario)
    for text in received:
        head, body = text.split("\n")[:2]
        assert head == "event: cluster_event"
        assert json.loads(body.removeprefix("data: ")) == event.public()
    assert computations == 0
    assert listeners == 0  # a closed stream leaves nothing behind in the hub


class GatedCompute(CountingCompute):
    """A computation that, once ``hold()`` was called, waits in its next call
    until ``release()``: the test decides when it ends."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self._gate = threading.Event()
        self._gate.set()

    def hold(self) -> None:
        self.entered.clear()
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def __call__(self) -> live.Status:
        self.entered.set()
        self._gate.wait(10)
        return super().__call__()


def shown_early_then_confirmed(
    early: list[list[tuple[str, Any]]], later: list[list[tuple[str, Any]]], raw: str
) -> list[Any]:
    """Each stream's statuses, after asserting that it sent the transition alone
    first, then again with the status that carries it in its trigger."""
    message = statekeys.message_dict(statekeys.decode_message(raw))
    assert early == [[("transition", message)]] * len(early)
    statuses = []
    for events in later:
        (name, again), (last, status) = events
        assert (name, again, last) == ("transition", message, "status")
        assert status["trigger"] == [message]
        statuses.append(status)
    return statuses


def test_a_transition_reaches_each_open_stream_as_the_hub_hears_it_before_its_computation_ends(
    redis_url, engines
):
    """The page shows an engine's transition without waiting for the status it
    starts: the stream forwards it while that computation still runs, and the
    status that follows carries it again (a stream that missed it loses nothing)."""
    compute = GatedCompute()

    async def scenario() -> tuple[list[list[tuple[str, Any]]], list[list[tuple[str, Any]]], int]:
        status_hub = await started(redis_url, compute)
        streams = await open_streams(redis_url, status_hub, 2)
        try:
            before = compute.calls
            compute.hold()
            await asyncio.to_thread(
                engines.client.publish, statekeys.EVENTS_CHANNEL, transition(3, at=1234.5)
            )
            early = [sse_events(await asyncio.wait_for(anext(s), 5)) for s in streams]
            # The computation the transition started has begun and not ended.
            assert await asyncio.to_thread(compute.entered.wait, 5)
            running = compute.calls - before
            compute.release()
            confirmed = [sse_events(await asyncio.wait_for(anext(s), 5)) for s in streams]
            return early, confirmed, running
        finally:
            compute.release()
            for stream in streams:
                await stream.aclose()
            await status_hub.stop()

    early, confirmed, running = run(scenario)
    assert running == 0
    shown_early_then_confirmed(early, confirmed, transition(3, at=1234.5))


def test_a_transition_heard_during_a_computation_reaches_each_open_stream_before_it_ends(
    redis_url, engines
):
    """The hub reads ``carp:events`` in a task of its own: a transition the
    engines send while a computation runs (one that no message started) reaches
    the open streams at once, not after that computation. That computation's
    status may be older than the transition (it began before the hub heard it):
    a stream that sent the transition sends instead the next status, which the
    transition starts at once, and the page never goes back to the older state."""
    compute = GatedCompute()

    async def scenario() -> tuple[list[list[tuple[str, Any]]], int, list[Any], int]:
        status_hub = await started(redis_url, compute)
        streams = await open_streams(redis_url, status_hub, 2)
        try:
            compute.hold()
            status_hub.desired_changed()  # a computation that waits for no message
            assert await asyncio.to_thread(compute.entered.wait, 5)
            before = compute.calls  # the held call counts itself once released
            await asyncio.to_thread(
                engines.client.publish, statekeys.EVENTS_CHANNEL, transition(5, at=1240.0)
            )
            early = [sse_events(await asyncio.wait_for(anext(s), 5)) for s in streams]
            running = compute.calls - before
            compute.release()
            later = [sse_events(await asyncio.wait_for(anext(s), 5)) for s in streams]
            return early, running, later, before
        finally:
            compute.release()
            for stream in streams:
                await stream.aclose()
            await status_hub.stop()

    early, running, later, before = run(scenario)
    assert running == 0  # the computation was still held when the streams had it
    statuses = shown_early_then_confirmed(early, later, transition(5, at=1240.0))
    # Not the held computation's status (before + 1): the one after it.
    assert [s["alerts"][0]["message"] for s in statuses] == [f"computation {before + 2}"] * 2


def test_a_batchs_transitions_reach_a_stream_as_one_chunk_after_a_status_older_than_them(
    redis_url, engines
):
    """The hub's reader hands a burst of messages to the listeners, after the
    status computed before them: a stream that finds both waiting sends that status
    first (the page must not go back to a state older than a transition it
    showed), then the batch's transitions in one chunk (each chunk costs the
    server a pass through its send path)."""
    compute = CountingCompute()
    messages = [statekeys.decode_message(transition(vhid)) for vhid in (1, 2)]

    async def scenario() -> list[list[tuple[str, Any]]]:
        status_hub = await started(redis_url, compute)
        (stream,) = await open_streams(redis_url, status_hub, 1)
        try:
            # The stream is not read meanwhile: a new status, then the batch.
            seq = status_hub.latest.seq if status_hub.latest else 0
            status_hub.desired_changed()
            await until(lambda: status_hub.latest is not None and status_hub.latest.seq > seq)
            for message in messages:  # as the hub's reader hands out a burst
                for listener in list(status_hub.listeners):
                    listener(message)
            return [sse_events(await asyncio.wait_for(anext(stream), 5)) for _ in range(2)]
        finally:
            await stream.aclose()
            await status_hub.stop()

    (older,), forwarded = run(scenario)
    assert older[0] == "status"
    assert older[1]["trigger"] == []
    expected = [("transition", statekeys.message_dict(m)) for m in messages]
    assert forwarded == expected


def test_messages_that_came_during_a_computation_start_the_next_one_without_the_window(
    redis_url, engines
):
    compute = GatedCompute()
    window = 60.0  # a message that waited for it would not be computed within the test

    async def scenario() -> tuple[int, list[int], list[int]]:
        status_hub = await started(redis_url, compute, coalesce=window)
        try:
            with status_hub.subscribe() as updates:
                compute.hold()
                status_hub.desired_changed()  # a computation that waits for no message
                assert await asyncio.to_thread(compute.entered.wait, 5)
                for vhid in (1, 2):
                    heard = await asyncio.to_thread(
                        engines.client.publish, statekeys.EVENTS_CHANNEL, transition(vhid)
                    )
                    assert heard == 1  # the hub's subscription has it
                before = compute.calls
                compute.release()
                held = await updates.get(timeout=5)  # the computation that was running
                following = await updates.get(timeout=5)  # the messages', not after the window
                assert held is not None
                assert following is not None
                return (
                    compute.calls - before,
                    [t.vhid for t in held.transitions],
                    [t.vhid for t in following.transitions],
                )
        finally:
            compute.release()
            await status_hub.stop()

    computations, held, following = run(scenario)
    assert held == []
    assert following == [1, 2]  # both, in one computation
    assert computations == 2


def test_a_message_while_the_hub_is_idle_still_waits_the_window_for_others(redis_url, engines):
    compute = CountingCompute()
    window = 60.0

    async def scenario() -> hub.Update | None:
        status_hub = await started(redis_url, compute, coalesce=window)
        try:
            with status_hub.subscribe() as updates:
                await asyncio.to_thread(
                    engines.client.publish, statekeys.EVENTS_CHANNEL, transition(1)
                )
                return await updates.get(timeout=1)
        finally:
            await status_hub.stop()

    assert run(scenario) is None  # still gathering a batch


def test_a_hub_whose_reader_fails_stops_instead_of_computing_deaf_to_the_engines(
    redis_url, engines, monkeypatch
):
    compute = CountingCompute()

    def broken(message: dict[str, Any], batch: list[statekeys.Message]) -> bool:
        raise RuntimeError("a bug in the reader")

    async def scenario() -> bool:
        status_hub = await started(redis_url, compute)
        try:
            monkeypatch.setattr(hub, "_decode", broken)
            await asyncio.to_thread(engines.client.publish, statekeys.EVENTS_CHANNEL, transition(1))
            await until(lambda: not status_hub.running)
            return status_hub.running
        finally:
            await status_hub.stop()  # cleanly, all the same

    assert run(scenario) is False


def connections_received(url: str) -> int:
    client = statekeys.sync_client(url)
    try:
        return int(client.info("stats")["total_connections_received"])
    finally:
        client.close()


@pytest.mark.django_db(transaction=True)
def test_the_hubs_computations_keep_one_redis_connection_through_a_redis_outage(own_redis, nodes):
    async def scenario() -> tuple[int, int, bool]:
        status_hub = hub.StatusHub(own_redis.url, resubscribe=0.2)
        status_hub.start()
        try:
            first = await status_hub.wait_latest(timeout=5)
            assert first is not None
            assert first.status.available
            await subscribed(own_redis.url)
            opened = connections_received(own_redis.url)
            computations = status_hub.computations

            def computed_since(count: int) -> Callable[[], bool]:
                return lambda: status_hub.computations > count

            def available() -> bool:
                latest = status_hub.latest
                return latest is not None and latest.status.available

            for _ in range(5):
                status_hub.desired_changed()
                await until(computed_since(status_hub.computations))
            reconnections = connections_received(own_redis.url) - opened - 1  # INFO's own
            await asyncio.to_thread(own_redis.stop)
            await until(lambda: not available())
            away = status_hub.running
            await asyncio.to_thread(own_redis.start)
            await until(available)
            # Back: a computation on a new connection says so.
            return status_hub.computations - computations, reconnections, away
        finally:
            await status_hub.stop()

    computed, reconnections, running_while_away = run(scenario)
    assert computed >= 5
    assert reconnections == 0  # five computations, no new connection
    assert running_while_away


@pytest.mark.django_db(transaction=True)
def test_a_kept_connection_that_redis_closed_is_replaced_at_the_next_computation(own_redis, nodes):
    status_hub = hub.StatusHub(own_redis.url)
    try:
        assert status_hub._compute_live().available
        kept = status_hub._redis
        own_redis.stop()
        own_redis.start()  # between two computations: the hub saw nothing of it
        status = status_hub._compute_live()
        assert status.available, status.error  # not one "unavailable" for the stale one
        assert status_hub._redis is kept
        assert [n.name for n in status.nodes] == ["node1", "node2", "node3"]
    finally:
        status_hub._release()


def test_a_busy_loops_backlog_keeps_the_newest_messages_and_makes_the_loop_look_again():
    """The reader queues at most QUEUED_LIMIT messages for a busy computation loop:
    the oldest go, and the loop is told that some were lost (it recomputes)."""
    status_hub = hub.StatusHub("redis://unused")
    try:
        for vhid in range(hub.QUEUED_LIMIT + 5):
            status_hub._heard(statekeys.decode_message(transition(vhid % 255 + 1, at=vhid)))
        assert len(status_hub._queued) == hub.QUEUED_LIMIT
        kept = [m.at for m in status_hub._queued if isinstance(m, statekeys.TransitionMessage)]
        assert kept[0] == 5
        assert kept[-1] == hub.QUEUED_LIMIT + 4
        assert status_hub._lost
        assert status_hub.transitions_heard == hub.QUEUED_LIMIT + 5
    finally:
        status_hub.close()
