"""The live status (cluster.live): engine state in the private Redis joined to
the desired state, and the event stream that pushes it."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, Iterator
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.test import override_settings
from django.utils import timezone

from cluster import hub, live, services, statekeys
from cluster.carp.types import DemotionSource
from cluster.checks import CheckStatus
from cluster.models import IPAlias, Node, Transition
from tests.factories import alias_data
from tests.livestate import chunk_text

THREE_TIERS = [
    {"node": "node1", "priority": "primary"},
    {"node": "node2", "priority": "secondary"},
    {"node": "node3", "priority": "backup"},
]


@pytest.fixture
def alias(alice: User, nodes: list[Node]) -> IPAlias:
    """VHID 1 on eth0: node1 Primary (skew 0), node2 Secondary (26), node3 Backup (156)."""
    return services.create_alias(alice, alias_data(1, priorities=THREE_TIERS))


def row(status: live.Status, vhid: int = 1) -> live.AliasStatus:
    return next(alias for alias in status.aliases if alias.vhid == vhid)


def states(alias: live.AliasStatus) -> dict[str, str]:
    return {cell.node: cell.state for cell in alias.cells}


def kinds(status: live.Status) -> list[str]:
    return [alert.kind for alert in status.alerts]


def test_a_healthy_cluster_has_its_primary_as_master_and_no_alert(engines, alias):
    engines.report("node1", {1: "MASTER"})
    engines.report("node2", {1: "BACKUP"})
    engines.report("node3", {1: "BACKUP"})
    status = live.compute_status()
    assert status.available
    found = row(status)
    assert states(found) == {"node1": "MASTER", "node2": "BACKUP", "node3": "BACKUP"}
    assert [(c.tier, c.advskew) for c in found.cells] == [
        ("primary", 0),
        ("secondary", 26),
        ("backup", 156),
    ]
    assert found.expected_owner == "node1"
    assert found.masters == ["node1"]
    assert not found.mismatch
    assert found.summary == "MASTER on node1"
    assert status.alerts == []
    assert [n.reporting for n in status.nodes] == [True, True, True]


def test_a_master_other_than_the_expected_owner_is_a_mismatch(engines, alias):
    engines.report("node1", {1: "BACKUP"})
    engines.report("node2", {1: "MASTER"})
    engines.report("node3", {1: "BACKUP"})
    found = row(live.compute_status())
    assert (found.expected_owner, found.masters, found.mismatch) == ("node1", ["node2"], True)
    assert (found.alert, found.alert_text) == (live.WRONG_OWNER, "not the expected owner")


def test_two_masters_are_a_split_brain(engines, alias):
    engines.report("node1", {1: "MASTER"})
    engines.report("node2", {1: "MASTER"})
    engines.report("node3", {1: "BACKUP"})
    status = live.compute_status()
    assert kinds(status) == [live.SPLIT_BRAIN]
    assert status.alerts[0].message == "Split brain: VHID 1 on eth0 is MASTER on node1 and node2."
    assert row(status).summary == "MASTER on node1, node2 (split brain)"
    assert row(status).mismatch


def test_a_dead_masters_last_state_is_not_a_split_brain(engines, alias):
    # node1 died hard 3.5 s ago: its hash still says MASTER and its heartbeat has
    # not expired yet, but node2 took the VIP over since. One MASTER: node2.
    engines.report("node1", {1: "MASTER"})
    beat = json.loads(engines.client.get(statekeys.heartbeat_key("node1")))
    beat["at"] -= 3.5
    engines.client.set(statekeys.heartbeat_key("node1"), json.dumps(beat), ex=1)
    engines.report("node2", {1: "MASTER"})
    engines.report("node3", {1: "BACKUP"})
    status = live.compute_status()
    found = row(status)
    assert states(found)["node1"] == "MASTER"  # its last word, until the heartbeat expires
    assert [cell.stale for cell in found.cells] == [True, False, False]  # shown as stale
    assert found.masters == ["node2"]
    assert kinds(status) == []
    assert found.summary == "MASTER on node2"


def test_two_live_masters_are_neither_stale(engines, alias):
    engines.report("node1", {1: "MASTER"})
    engines.report("node2", {1: "MASTER"})
    found = row(live.compute_status())
    assert [cell.stale for cell in found.cells] == [False, False, False]
    assert (found.alert, found.alert_text) == (live.SPLIT_BRAIN, "split brain")


def named_connection(url: str, name: str) -> subprocess.Popen[str]:
    """A process holding a Redis connection named ``name``, as a node's worker does
    (cluster/node/state.py); it says "ready" once the name is set."""
    code = (
        "import sys, time\n"
        "from cluster import statekeys\n"
        "client = statekeys.sync_client(sys.argv[1], client_name=sys.argv[2])\n"
        "client.ping()\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, url, name], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def test_a_killed_node_is_not_reporting_at_once_and_its_claim_not_counted(
    engines, redis_url, alias
):
    name = statekeys.node_client_name("node1")
    worker = named_connection(redis_url, name)
    try:
        engines.report("node1", {1: "MASTER"})
        engines.beat("node1", client=name)
        engines.report("node2", {1: "BACKUP"})
        engines.report("node3", {1: "BACKUP"})
        assert live.compute_status().nodes[0].reporting
        worker.kill()  # SIGKILL: no goodbye, the kernel closes its socket
        worker.wait(timeout=5)
        killed = time.monotonic()
        engines.report("node2", {1: "MASTER"})
        status = live.compute_status()
        while status.nodes[0].reporting and time.monotonic() - killed < 0.5:
            status = live.compute_status()  # Redis reads the closed socket's EOF
        elapsed = time.monotonic() - killed
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=5)
    # Seconds before its heartbeat key expires (HEARTBEAT_TTL = 4 s).
    assert engines.client.ttl(statekeys.heartbeat_key("node1")) > 2
    assert elapsed < 0.5
    node1 = status.nodes[0]
    assert not node1.reporting
    assert node1.summary.startswith("not reporting · its connection closed · last seen ")
    found = row(status)
    assert states(found)["node1"] == live.NOT_REPORTING
    assert found.masters == ["node2"]
    assert kinds(status) == [live.NODE_NOT_REPORTING]


def test_a_heartbeat_naming_an_open_connection_reports(engines, redis_url, alias):
    name = statekeys.node_client_name("node1")
    worker = named_connection(redis_url, name)
    try:
        engines.report("node1", {1: "MASTER"})
        engines.beat("node1", client=name)
        status = live.compute_status()
    finally:
        worker.kill()
        worker.wait(timeout=5)
    assert status.nodes[0].reporting
    assert states(row(status))["node1"] == "MASTER"


def test_an_enabled_alias_without_master_is_an_alert(engines, alias):
    for node in ("node1", "node2", "node3"):
        engines.report(node, {1: "BACKUP"})
    status = live.compute_status()
    assert kinds(status) == [live.NO_MASTER]
    assert row(status).summary == "no MASTER"


def test_a_node_whose_heartbeat_is_gone_is_not_reporting_and_not_counted(engines, alias):
    # node1's hash still says MASTER, but its heartbeat has expired: stale.
    engines.report("node1", {1: "MASTER"}, heartbeat=False)
    engines.report("node2", {1: "BACKUP"})
    engines.report("node3", {1: "BACKUP"})
    status = live.compute_status()
    found = row(status)
    assert states(found)["node1"] == live.NOT_REPORTING
    assert found.masters == []
    # The expected owner is the best member that is up: node2.
    assert found.expected_owner == "node2"
    assert kinds(status) == [live.NODE_NOT_REPORTING, live.NO_MASTER]
    node1 = status.nodes[0]
    assert not node1.reporting
    assert node1.summary.startswith("not reporting · last seen ")
    assert status.alerts[0].node == "node1"
    # The banner names the node, and when it was last seen.
    assert re.fullmatch(
        r"Node node1 is not reporting \(last seen \d\d:\d\d:\d\d\)\.", status.alerts[0].message
    )


def test_a_reporting_node_without_the_virtual_host_is_not_running_it(engines, alias):
    engines.report("node1", {1: "MASTER"})
    engines.report("node2", {1: "BACKUP"})
    engines.report("node3", {})
    assert states(row(live.compute_status()))["node3"] == live.NOT_RUNNING


def test_a_node_the_alias_does_not_list_is_not_a_member(alice, engines, nodes):
    two = [{"node": "node1", "priority": "primary"}, {"node": "node2", "priority": "secondary"}]
    services.create_alias(alice, alias_data(1, priorities=two))
    engines.report("node1", {1: "MASTER"})
    engines.report("node2", {1: "BACKUP"})
    engines.report("node3", {})
    assert states(row(live.compute_status()))["node3"] == live.NOT_MEMBER
    # Still running it (an old configuration): what it claims is shown, not hidden.
    engines.report("node3", {1: "BACKUP"})
    assert states(row(live.compute_status()))["node3"] == "BACKUP"


def test_a_node_in_maintenance_is_not_the_expected_owner(alice, engines, alias, nodes):
    services.update_node(alice, nodes[0], {"maintenance": True}, partial=True)
    engines.report("node1", {1: "BACKUP"})
    engines.report("node2", {1: "MASTER"})
    engines.report("node3", {1: "BACKUP"})
    found = row(live.compute_status())
    assert (found.expected_owner, found.mismatch) == ("node2", False)


def test_a_demoted_primary_is_not_the_expected_owner(engines, alias):
    # node1 (skew 0) demoted by 240 advertises 240: worse than node2 (26) and node3 (156).
    engines.report("node1", {1: "BACKUP"})
    engines.beat("node1", demotion=[DemotionSource("link:eth0", 240, "link eth0 down")])
    engines.report("node2", {1: "MASTER"})
    engines.report("node3", {1: "BACKUP"})
    found = row(live.compute_status())
    assert (found.expected_owner, found.mismatch, found.alert) == ("node2", False, "")
    # A smaller demotion that leaves it the best (0 + 20 < 26) keeps it the expected owner.
    engines.beat("node1", demotion=[DemotionSource("health:smtp", 20, "smtp failing")])
    found = row(live.compute_status())
    assert (found.expected_owner, found.mismatch) == ("node1", True)


def test_a_disabled_alias_wants_no_master_and_raises_no_alert(alice, engines, alias):
    services.update_alias(alice, alias, {"enabled": False}, partial=True)
    for node in ("node1", "node2", "node3"):
        engines.report(node, {})
    status = live.compute_status()
    found = row(status)
    assert (found.expected_owner, found.mismatch, found.summary) == (None, False, "disabled")
    assert status.alerts == []


def test_without_redis_the_status_is_unavailable_with_the_configured_owner(settings, alias):
    settings.REDIS_URL = "redis+socket:///nonexistent/redis.sock"
    status = live.compute_status()
    assert not status.available
    assert "Redis cannot be reached" in status.error
    found = row(status)
    assert set(states(found).values()) == {live.UNKNOWN}
    assert (found.expected_owner, found.mismatch) == ("node1", False)
    assert found.summary == "live state unavailable"
    assert status.alerts == []


def test_the_fingerprint_ignores_heartbeat_times_but_not_states(engines, alias):
    engines.report("node1", {1: "MASTER"})
    first = live.compute_status().as_dict()
    engines.beat("node1")  # a later heartbeat
    second = live.compute_status().as_dict()
    assert live.fingerprint(first) == live.fingerprint(second)
    engines.report("node1", {1: "BACKUP"})
    assert live.fingerprint(live.compute_status().as_dict()) != live.fingerprint(first)


def test_the_fingerprint_ignores_a_checks_times_and_count_but_not_its_result(engines, alias):
    def passing(count: int, at: float, ok: bool = True, message: str = "220 node1") -> None:
        engines.beat("node1", checks=[CheckStatus("smtp-25", "smtp", ok, count, message, at)])

    engines.report("node1", {1: "MASTER"})
    passing(4, 1767000000.0)
    first = live.compute_status().as_dict()
    passing(5, 1767000002.0)  # one more pass, two seconds later: nothing new to show
    assert live.fingerprint(live.compute_status().as_dict()) == live.fingerprint(first)
    passing(1, 1767000004.0, ok=False, message="connection refused")
    assert live.fingerprint(live.compute_status().as_dict()) != live.fingerprint(first)


def test_check_statuses_reads_each_nodes_checks_and_degrades_on_bad_data(engines, settings):
    smtp = CheckStatus("smtp-25", "smtp", False, 3, "connection refused", 1767000000.0)
    engines.beat("node1", checks=[smtp, CheckStatus("disk", "disk", True, 2, "40% free on /")])
    engines.beat_raw("node2", '{"node": "node2", "at": 1767000000, "checks": "many"}')
    found = live.check_statuses(["node1", "node2", "node3"])
    assert found == {"node1": {"smtp-25": smtp, "disk": found["node1"]["disk"]}}
    assert found["node1"]["disk"].passing is True
    settings.REDIS_URL = "redis+socket:///nonexistent/redis.sock"
    assert live.check_statuses(["node1"]) == {}


def test_the_timeline_shows_who_was_master_when_and_why(alias, nodes):
    now = timezone.now()
    Transition.objects.create(
        node=nodes[0], vhid=1, interface="eth0", from_state="BACKUP", to_state="MASTER",
        reason="master_down", at=now - timedelta(hours=12),
    )  # fmt: skip
    Transition.objects.create(
        node=nodes[0], vhid=1, interface="eth0", from_state="MASTER", to_state="INIT",
        reason="shutdown", at=now - timedelta(hours=6),
    )  # fmt: skip
    Transition.objects.create(
        node=nodes[1], vhid=1, interface="eth0", from_state="BACKUP", to_state="MASTER",
        reason="master_down", at=now - timedelta(hours=6),
    )  # fmt: skip
    Transition.objects.create(  # another VHID, and one older than the window: not shown
        node=nodes[1], vhid=9, interface="eth0", from_state="BACKUP", to_state="MASTER",
        reason="startup", at=now - timedelta(hours=30),
    )  # fmt: skip
    timeline = live.timelines(live.compute_status().aliases, now=now)[alias.pk]
    assert [(e.node, e.to_state, e.reason_label) for e in timeline.entries] == [
        ("node2", "MASTER", "Master down"),
        ("node1", "INIT", "Shutdown"),
        ("node1", "MASTER", "Master down"),
    ]
    # The bar starts at the oldest transition shown (12 h ago), not 24 h ago.
    assert timeline.bar_start == now - timedelta(hours=12)
    spans = [(s.node, s.left, s.width, s.end is None) for s in timeline.spans]
    assert spans == [("node1", 0.0, 50.0, False), ("node2", 50.0, 50.0, True)]


def test_a_short_history_still_gets_a_readable_bar(alias, nodes):
    # Two minutes of history on a 24-hour bar would be a sliver: at least 10 minutes.
    now = timezone.now()
    Transition.objects.create(
        node=nodes[0], vhid=1, interface="eth0", from_state="BACKUP", to_state="MASTER",
        reason="master_down", at=now - timedelta(minutes=2),
    )  # fmt: skip
    timeline = live.timelines(live.compute_status().aliases, now=now)[alias.pk]
    assert timeline.bar_start == now - live.TIMELINE_MIN_BAR
    assert [(s.node, s.left, s.width) for s in timeline.spans] == [("node1", 80.0, 20.0)]


def test_a_master_killed_without_a_transition_keeps_its_span(alias, nodes):
    # node1 is killed hard (no MASTER -> anything row), node2 takes over, node1
    # restarts (INIT -> BACKUP) and preempts: its first span must still be drawn.
    now = timezone.now()

    def add(node: Node, from_state: str, to_state: str, minutes_ago: int) -> None:
        Transition.objects.create(
            node=node, vhid=1, interface="eth0", from_state=from_state, to_state=to_state,
            reason="master_down", at=now - timedelta(minutes=minutes_ago),
        )  # fmt: skip

    add(nodes[0], "BACKUP", "MASTER", 100)
    add(nodes[1], "BACKUP", "MASTER", 90)
    add(nodes[0], "INIT", "BACKUP", 80)
    add(nodes[0], "BACKUP", "MASTER", 60)
    add(nodes[1], "MASTER", "BACKUP", 60)
    timeline = live.timelines(live.compute_status().aliases, now=now)[alias.pk]
    spans = [(s.node, s.left, s.width, s.end is None) for s in timeline.spans]
    assert spans == [
        ("node1", 0.0, 20.0, False),  # until its restart, at the latest
        ("node2", 10.0, 30.0, False),
        ("node1", 40.0, 60.0, True),
    ]


# The event stream, driven as the ASGI server drives it. The status hub
# computes in a thread of its own, which sees only committed rows: these tests
# use the transactional database, and forget the process's hub afterwards
# (its loop ends with the test).


@pytest.fixture
def stream_hub(transactional_db: None) -> Iterator[None]:
    yield
    hub.reset_shared()


class Events:
    """A stream's events (name, data) in order, whatever chunks they came in (an
    update's transitions and its status come as one); ``retry:`` and comments
    skipped."""

    def __init__(self, stream: AsyncGenerator[str | bytes, None]) -> None:
        self.stream = stream
        self.pending: list[tuple[str, Any]] = []

    async def next(self, timeout: float = 5.0) -> tuple[str, Any]:
        while not self.pending:
            chunk = await asyncio.wait_for(anext(self.stream), timeout)
            text = chunk_text(chunk)
            for block in text.split("\n\n"):
                if block.startswith("event: "):
                    head, data = block.split("\n", 1)
                    name, body = head.removeprefix("event: "), data.removeprefix("data: ")
                    self.pending.append((name, json.loads(body)))
        return self.pending.pop(0)


async def until_subscribed(url: str) -> None:
    client = statekeys.async_client(url)
    try:
        for _ in range(200):
            numsub = await client.pubsub_numsub(statekeys.EVENTS_CHANNEL)
            if numsub[0][1] > 0:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the stream never subscribed")
    finally:
        await client.aclose()


def test_the_stream_sends_the_status_then_each_transition_and_the_new_status(
    stream_hub, engines, redis_url, alias
):
    for node, state in (("node1", "MASTER"), ("node2", "BACKUP"), ("node3", "BACKUP")):
        engines.report(node, {1: state})

    async def scenario() -> list[tuple[str, Any]]:
        stream = hub.event_stream(redis_url)
        events = Events(stream)
        try:
            seen = [await events.next()]
            pending = asyncio.ensure_future(events.next())
            await until_subscribed(redis_url)
            # The engines: node1 fails over to node2.
            await asyncio.to_thread(engines.report, "node1", {1: "BACKUP"})
            await asyncio.to_thread(engines.report, "node2", {1: "MASTER"})
            transition = {"node": "node2", "interface": "eth0", "vhid": 1, "from": "BACKUP"}
            transition.update({"to": "MASTER", "reason": "master_down", "at": 1234.5})
            receivers = await asyncio.to_thread(engines.publish, "transition", **transition)
            assert receivers == 1
            seen.append(await pending)
            while seen[-1][0] != "status":
                seen.append(await events.next())
            return seen
        finally:
            await stream.aclose()

    (first, first_data), *between, (last, last_data) = async_to_sync(scenario)()
    assert first == "status"
    assert first_data["trigger"] == []
    assert row_of(first_data)["masters"] == ["node1"]
    # The transition as the hub heard it, and again just before the status
    # computed after it (the page shows it once): the same message.
    assert between
    assert {name for name, _ in between} == {"transition"}
    second_data = between[0][1]
    assert all(data == second_data for _, data in between)
    assert (second_data["kind"], second_data["node"], second_data["at"]) == (
        "transition",
        "node2",
        1234.5,
    )
    assert last == "status"
    assert row_of(last_data)["masters"] == ["node2"]
    assert last_data["trigger"] == [second_data]
    # The same body as GET /api/v1/status/, plus the trigger.
    assert set(last_data) == set(live.compute_status().as_dict()) | {"trigger"}


def test_the_stream_turns_a_node_not_reporting_when_its_heartbeat_expires_without_any_message(
    stream_hub, engines, redis_url, alias
):
    engines.report("node1", {1: "MASTER"})
    # The node's last heartbeat, 0.6 s before its key expires (as Redis's TTL
    # counts it): then the node falls silent. No message says so.
    engines.beat("node1", at=time.time() - statekeys.HEARTBEAT_TTL + 0.6, ttl=0.6)

    async def scenario() -> dict[str, Any]:
        stream = hub.event_stream(redis_url)
        events = Events(stream)
        try:
            first = (await events.next())[1]
            assert first["nodes"][0]["reporting"] is True
            started = time.monotonic()
            name, data = await events.next(timeout=3)
            # Recomputed at the expiry, not a tick later.
            assert time.monotonic() - started < 1.0
            assert name == "status"
            return dict(data)
        finally:
            await stream.aclose()

    data = async_to_sync(scenario)()
    assert data["trigger"] == []
    assert data["nodes"][0]["reporting"] is False
    assert row_of(data)["cells"][0]["state"] == live.NOT_REPORTING


def test_the_stream_starts_and_goes_on_without_redis(stream_hub, settings, alias):
    settings.REDIS_URL = "redis+socket:///nonexistent/redis.sock"

    async def scenario() -> tuple[str, Any]:
        stream = hub.event_stream(settings.REDIS_URL)
        try:
            return await Events(stream).next()
        finally:
            await stream.aclose()

    name, data = async_to_sync(scenario)()
    assert (name, data["available"]) == ("status", False)


def row_of(status: dict[str, Any], vhid: int = 1) -> dict[str, Any]:
    found: dict[str, Any] = next(a for a in status["aliases"] if a["vhid"] == vhid)
    return found


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("database", "configuration from the database"),
        ("local", "configuration from its local copy (database unreachable)"),
        ("none", "waiting for its configuration"),
    ],
)
def test_a_node_says_where_its_configuration_came_from_and_its_digest(
    engines, alias, source, words
):
    # The engine's version is a hex digest, not a number: it must come through.
    engines.beat("node1", config_source=source)
    node1 = live.compute_status().nodes[0]
    assert node1.config_source == source
    assert node1.config_version == "3f9a0c1d2e4b5a69"
    assert node1.summary == f"reporting · {words}"


@pytest.mark.parametrize("where", ["heartbeat", "vhost"])
def test_an_unreadable_master_is_not_reported_as_no_master(engines, alias, where):
    engines.report("node1", {1: "MASTER"})
    engines.report("node2", {1: "BACKUP"})
    engines.report("node3", {1: "BACKUP"})
    if where == "heartbeat":
        engines.beat_raw("node1", '{"node": "node1", "at": "nan"}')
    else:
        engines.overwrite("node1", 1, updated_at="soon")
    status = live.compute_status()
    assert states(row(status))["node1"] == live.UNREADABLE
    # What node1 holds is not known: "no node holds" it would be a guess.
    assert live.NO_MASTER not in kinds(status)


def test_without_client_list_rights_only_the_heartbeats_ttl_tells(engines, redis_url, alias):
    # A Redis whose ACL refuses CLIENT LIST answers with an error in the pipeline:
    # the status does not fail, and a heartbeat naming a connection still counts.
    engines.client.execute_command(
        "ACL", "SETUSER", "console", "on", ">pw", "~*", "&*", "+@all", "-client"
    )
    engines.report("node1", {1: "MASTER"})
    engines.beat("node1", client=statekeys.node_client_name("node1"))  # no such connection
    engines.report("node2", {1: "BACKUP"})
    engines.report("node3", {1: "BACKUP"})
    path = statekeys.redis_py_url(redis_url).removeprefix("unix://")
    restricted = f"unix://console:pw@{path}"
    try:
        with override_settings(REDIS_URL=restricted):
            status = live.compute_status()
    finally:
        engines.client.execute_command("ACL", "DELUSER", "console")
    assert status.available
    assert status.nodes[0].reporting
    assert row(status).masters == ["node1"]
    # With the right to list connections, the same heartbeat is one of a dead node.
    assert not live.compute_status().nodes[0].reporting


def test_a_computation_on_a_given_client_reads_through_it_and_leaves_it_open(
    engines, redis_url, settings, alias
):
    engines.report("node1", {1: "MASTER"})
    settings.REDIS_URL = "redis+socket:///nonexistent/redis.sock"  # not what it reads
    client = live.redis_client(redis_url)
    try:
        first = live.compute_status(client=client)
        second = live.compute_status(client=client)
        assert first.available
        assert second.available
        assert states(row(second))["node1"] == live.MASTER
        assert client.ping()  # still open for the next one
    finally:
        client.close()
    assert live.compute_status().available is False  # without one: settings.REDIS_URL
