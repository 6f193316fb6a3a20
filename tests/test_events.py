"""Event detection (cluster/events.py): statuses built here, time passed in, no I/O."""

from __future__ import annotations

from typing import Any

from cluster import events
from cluster.checks import CheckSpec, source_name
from cluster.events import DetectorState, detect, remember
from cluster.health import CheckTracker

T0 = 1_800_000_000.0


def node(name: str, reporting: bool = True, version: str | None = "v1", demotion=(), **kw):
    sources = [{"source": s, "level": 240, "reason": r} for s, r in demotion]
    return {
        "name": name,
        "ordinal": int(name[-1]),
        "maintenance": False,
        "reporting": reporting,
        "last_seen": T0 if reporting else T0 - 5,
        "config_source": "database",
        "config_version": version if reporting else None,
        "summary": "",
        "demotion": {"total": 240 * len(sources), "sources": sources},
        "unreadable": kw.get("unreadable", ""),
    }


def cell(name: str, state: str, reason: str = "", at: float | None = None, source: str = ""):
    return {
        "node": name,
        "tier": "primary",
        "advskew": 0,
        "state": state,
        "advertised_advskew": 0,
        "last_reason": reason,
        "last_at": at,
        "last_source": source,
        "detail": "",
    }


def alias(cells: list[dict[str, Any]], masters: list[str], vhid: int = 1):
    return {
        "id": vhid,
        "vhid": vhid,
        "interface": "eth0",
        "addresses": ["192.0.2.100/24"],
        "enabled": True,
        "description": "",
        "cells": cells,
        "expected_owner": "node1",
        "masters": masters,
        "mismatch": False,
        "summary": "",
    }


def status(nodes, aliases, alerts=(), available: bool = True) -> dict[str, Any]:
    return {
        "available": available,
        "error": "",
        "generated_at": T0,
        "nodes": nodes,
        "aliases": aliases,
        "alerts": list(alerts),
    }


def owned_by(owner: str, at: float = T0, reason: str = "master_down", down: str = ""):
    """Three nodes, VHID 1 held by ``owner`` (``down``: a node not reporting)."""
    names = ["node1", "node2", "node3"]
    cells = [
        cell(n, "MASTER" if n == owner else "BACKUP", reason if n == owner else "", at)
        for n in names
    ]
    if down:
        cells = [cell(c["node"], "not reporting") if c["node"] == down else c for c in cells]
    nodes = [node(n, reporting=n != down) for n in names]
    return status(nodes, [alias(cells, [owner])])


class Detector:
    """A detector with its memory kept as the store would keep it."""

    def __init__(self, desired=None, grace=30.0):
        self.state = DetectorState()
        self.memory: dict[str, str] = {}
        self.prev = None
        self.desired = desired
        self.grace = grace

    def see(self, cur, now):
        found = detect(self.prev, cur, now, self.memory, self.state, self.desired, self.grace)
        remember(self.memory, found)
        self.prev = cur
        self.baselines = [e for e in found if e.baseline]
        return [e for e in found if not e.baseline]


def kinds(found):
    return [e.kind for e in found]


def test_a_failover_is_one_owner_changed_event_with_old_and_new_owner_and_cause():
    detector = Detector()
    assert detector.see(owned_by("node1"), T0) == []
    after = owned_by("node2", at=T0 + 3, reason="master_down", down="node1")
    found = [e for e in detector.see(after, T0 + 3.1) if e.kind == events.OWNER_CHANGED]
    assert len(found) == 1
    event = found[0]
    assert (event.old_owner, event.new_owner, event.vhid, event.interface) == (
        "node1", "node2", 1, "eth0",
    )  # fmt: skip
    assert "master_down" in event.cause
    assert "node1 not reporting" in event.cause
    assert event.detail["transition_at"] == T0 + 3
    # Seen again (the next tick, or a second detector with the same memory): nothing.
    assert [e for e in detector.see(after, T0 + 4) if e.kind == events.OWNER_CHANGED] == []


def test_a_second_detector_with_the_stored_memory_produces_the_same_subject_and_condition():
    first, second = Detector(), Detector()
    first.see(owned_by("node1"), T0)
    second.see(owned_by("node1"), T0 + 0.4)
    after = owned_by("node2", at=T0 + 3, down="node1")
    a = [e for e in first.see(after, T0 + 3.1) if e.kind == events.OWNER_CHANGED]
    b = [e for e in second.see(after, T0 + 3.7) if e.kind == events.OWNER_CHANGED]
    assert [(e.subject, e.condition) for e in a] == [(e.subject, e.condition) for e in b]
    # What the store deduplicates on: once the first is stored, the second finds the
    # subject's condition already there.
    remember(second.memory, a)
    third = Detector()
    third.memory = dict(second.memory)
    assert [e for e in third.see(after, T0 + 4) if e.kind == events.OWNER_CHANGED] == []


def test_a_change_missed_while_the_detector_was_down_is_reported_from_the_stored_owner():
    detector = Detector()
    detector.memory = {"owner:eth0:1": "node1"}
    found = detector.see(owned_by("node3", at=T0 - 50, reason="preempted"), T0)
    assert [(e.kind, e.old_owner, e.new_owner) for e in found] == [
        (events.OWNER_CHANGED, "node1", "node3")
    ]


def test_a_starting_detector_with_nothing_stored_reports_no_owner_change_but_a_baseline():
    detector = Detector()
    assert detector.see(owned_by("node2"), T0) == []
    assert [(e.subject, e.condition) for e in detector.baselines] == [("owner:eth0:1", "node2")]
    # Measured from the baseline, the next change is an event (a notifier that was
    # down during it finds the baseline in the database, and reports it too).
    restarted = Detector()
    restarted.memory = dict(detector.memory)
    found = restarted.see(owned_by("node3", at=T0 + 9, reason="master_down", down="node2"), T0 + 10)
    assert [(e.kind, e.old_owner, e.new_owner) for e in found if e.subject.startswith("owner")] == [
        (events.OWNER_CHANGED, "node2", "node3")
    ]


def test_ten_owner_changes_in_a_minute_are_summarised_not_sent_ten_times():
    detector = Detector()
    detector.see(owned_by("node1"), T0)
    found = []
    for i in range(1, 11):
        owner = "node2" if i % 2 else "node1"
        found += detector.see(owned_by(owner, at=T0 + 5 * i), T0 + 5 * i + 0.1)
    owner_events = [e for e in found if e.kind == events.OWNER_CHANGED]
    flaps = [e for e in found if e.kind == events.FLAPPING]
    assert len(owner_events) == events.FLAP_THRESHOLD - 1
    assert len(flaps) == 1
    assert flaps[0].detail["count"] == events.FLAP_THRESHOLD
    # A quiet minute later: one event says where it settled and how often it changed.
    later = detector.see(owned_by("node2", at=T0 + 50), T0 + 50 + events.FLAP_WINDOW + 1)
    assert [e.kind for e in later] == [events.OWNER_CHANGED]
    assert (later[0].old_owner, later[0].new_owner) == ("node1", "node2")
    assert later[0].detail["flap_count"] == 11  # every change of the flap, the last one too
    assert "flapping" in later[0].message


def test_a_flap_that_settles_on_the_owner_last_reported_ends_with_one_flapping_summary():
    detector = Detector()
    detector.see(owned_by("node1"), T0)
    for i in range(1, 7):
        detector.see(owned_by("node2" if i % 2 else "node1", at=T0 + i), T0 + i + 0.1)
    later = detector.see(owned_by("node1", at=T0 + 6), T0 + 6 + events.FLAP_WINDOW + 1)
    assert [(e.kind, e.detail.get("settled")) for e in later] == [(events.FLAPPING, True)]
    assert later[0].detail["count"] == 6


def split(now_masters=("node1", "node2")):
    cells = [cell("node1", "MASTER", at=T0), cell("node2", "MASTER", at=T0 + 1)]
    alert = {"kind": "split_brain", "message": "", "node": None, "vhid": 1, "interface": "eth0"}
    return status([node("node1"), node("node2")], [alias(cells, list(now_masters))], [alert])


def test_split_brain_is_reported_once_it_has_lasted_the_hold_time_and_its_end_once():
    detector = Detector()
    assert detector.see(split(), T0) == []
    assert detector.see(split(), T0 + events.HOLD_SECONDS / 2) == []
    found = detector.see(split(), T0 + events.HOLD_SECONDS)
    assert kinds(found) == [events.SPLIT_BRAIN]
    assert found[0].detail["masters"] == ["node1", "node2"]
    assert detector.see(split(), T0 + 10) == []
    healed = owned_by("node1")
    assert events.MASTER_RESTORED in kinds(detector.see(healed, T0 + 11))


def test_a_split_brain_shorter_than_the_hold_time_is_no_event():
    detector = Detector()
    detector.see(split(), T0)
    assert kinds(detector.see(owned_by("node1"), T0 + 0.1)) == []


def test_no_master_is_reported_after_the_hold_time():
    cells = [cell("node1", "BACKUP"), cell("node2", "BACKUP")]
    alert = {"kind": "no_master", "message": "", "node": None, "vhid": 1, "interface": "eth0"}
    none = status([node("node1"), node("node2")], [alias(cells, [])], [alert])
    detector = Detector()
    detector.see(none, T0)
    assert kinds(detector.see(none, T0 + events.HOLD_SECONDS)) == [events.NO_MASTER]


def test_a_node_not_reporting_and_back_are_one_event_each():
    detector = Detector()
    up = status([node("node1"), node("node2")], [])
    down = status([node("node1"), node("node2", reporting=False)], [])
    assert detector.see(up, T0) == []
    found = detector.see(down, T0 + 5)
    assert [(e.kind, e.node) for e in found] == [(events.NODE_NOT_REPORTING, "node2")]
    assert detector.see(down, T0 + 6) == []
    assert [(e.kind, e.node) for e in detector.see(up, T0 + 9)] == [
        (events.NODE_REPORTING, "node2")
    ]
    assert detector.see(up, T0 + 10) == []


def smtp(boot: bool = False, **spec: Any) -> CheckTracker:
    """The node host's tracker of one check (cluster/health.py): the tests feed it
    probe results, and the heartbeat reports what it says."""
    check = CheckSpec("smtp", "smtp", **{"rise": 2, "fall": 3, **spec})
    return CheckTracker.at_boot(check) if boot else CheckTracker(check)


def checked(name: str, *trackers: CheckTracker) -> dict[str, Any]:
    """A reporting node whose heartbeat carries these checks' statuses and, as the
    runner would, each demoting check's source ``health:<name>``."""
    sources = [(source_name(t.spec.name), t.demotion()[1]) for t in trackers if t.level]
    reported: dict[str, Any] = node(name, demotion=sources)
    reported["checks"] = [t.status().to_data() for t in trackers]
    return reported


def probes(tracker: CheckTracker, results: str, start: float) -> float:
    """Feed ``results`` ("x" fail, "." pass) one second apart; the time of the last."""
    for i, result in enumerate(results):
        ok = result == "."
        tracker.record(ok, "250 mail ready" if ok else "connection refused", start + i)
    return start + len(results) - 1


def test_a_check_failing_by_its_fall_count_is_one_failing_event_and_its_recovery_one_passing():
    detector, check = Detector(), smtp()
    at = probes(check, "..", T0)
    assert detector.see(status([checked("node1", check)], []), at) == []
    at = probes(check, "xx", at + 1)  # below fall (3): not failing yet
    assert detector.see(status([checked("node1", check)], []), at) == []
    at = probes(check, "x", at + 1)
    found = detector.see(status([checked("node1", check)], []), at)
    assert [(e.kind, e.subject, e.condition, e.cause) for e in found] == [
        (events.CHECK_FAILING, "check:node1:smtp", "failing", "connection refused")
    ]
    assert "smtp on node1 is failing" in found[0].message
    at = probes(check, "x.", at + 1)  # one pass is below rise (2): still failing
    assert detector.see(status([checked("node1", check)], []), at) == []
    at = probes(check, ".", at + 1)
    found = detector.see(status([checked("node1", check)], []), at)
    assert [(e.kind, e.subject, e.condition) for e in found] == [
        (events.CHECK_PASSING, "check:node1:smtp", "passing")
    ]
    assert detector.see(status([checked("node1", check)], []), at + 1) == []


def test_a_single_failed_probe_below_the_fall_count_is_no_event():
    detector, check = Detector(), smtp()
    at = probes(check, "..x..x.", T0)
    for i in range(7):
        assert detector.see(status([checked("node1", check)], []), at + i) == []


def test_a_plain_boot_with_gating_raises_no_check_event():
    detector = Detector()
    check = smtp(boot=True)
    booting = checked("node1", check)
    # Demoted by its health source without any result: gating, not failing.
    assert booting["demotion"]["sources"][0]["source"] == "health:smtp"
    assert detector.see(status([booting], []), T0) == []
    assert detector.see(status([booting], []), T0 + events.BOOT_GRACE_SECONDS + 1) == []
    at = probes(check, ".", T0 + events.BOOT_GRACE_SECONDS + 2)
    assert not check.gating
    assert detector.see(status([checked("node1", check)], []), at) == []
    assert detector.memory == {}


def test_boot_gating_that_needs_rise_passes_is_no_event_while_it_still_holds():
    detector, check = Detector(), smtp(boot=True, boot_needs_rise=True, rise=3)
    for i in range(3):
        assert check.gating
        at = probes(check, ".", T0 + i)
        assert detector.see(status([checked("node1", check)], []), at) == []
    assert not check.gating


def test_a_service_slow_to_start_fails_at_boot_then_passes_within_the_grace_and_is_no_event():
    detector, check = Detector(), smtp(boot=True)
    at = probes(check, "xxxx", T0)  # past fall, but within the boot grace
    assert check.gating
    assert check.status().passing is False
    assert detector.see(status([checked("node1", check)], []), at) == []
    at = probes(check, "..", at + 1)
    assert detector.see(status([checked("node1", check)], []), at) == []
    assert detector.memory == {}


def test_a_check_failing_since_the_boot_is_failing_after_the_grace_and_passing_once_it_recovers():
    detector, check = Detector(), smtp(boot=True)
    probes(check, "x", T0)
    assert detector.see(status([checked("node1", check)], []), T0 + 1) == []
    at = probes(check, "x" * int(events.BOOT_GRACE_SECONDS), T0 + 1)
    found = detector.see(status([checked("node1", check)], []), at)
    assert [(e.kind, e.condition, e.detail.get("boot")) for e in found] == [
        (events.CHECK_FAILING, "failing", True)
    ]
    assert "has not passed since the node started" in found[0].message
    assert detector.see(status([checked("node1", check)], []), at + 1) == []
    at = probes(check, ".", at + 1)  # ungated, but failing until rise (2) passes
    assert detector.see(status([checked("node1", check)], []), at) == []
    at = probes(check, ".", at + 1)
    assert kinds(detector.see(status([checked("node1", check)], []), at)) == [events.CHECK_PASSING]


def test_a_node_rebooted_while_its_check_failed_says_nothing_until_the_check_has_a_verdict():
    detector = Detector()
    detector.memory = {"check:node1:smtp": "failing"}
    check = smtp(boot=True)
    assert detector.see(status([checked("node1", check)], []), T0) == []
    at = probes(check, ".", T0 + 1)
    assert kinds(detector.see(status([checked("node1", check)], []), at)) == [events.CHECK_PASSING]


def test_a_check_failing_on_three_nodes_is_one_event_per_node_and_two_detectors_agree():
    names = ["node1", "node2", "node3"]
    trackers = {n: smtp() for n in names}
    for tracker in trackers.values():
        probes(tracker, "xxx", T0)
    failing = status([checked(n, trackers[n]) for n in names], [])
    first, second = Detector(), Detector()
    a, b = first.see(failing, T0 + 3), second.see(failing, T0 + 3.5)
    assert [(e.kind, e.subject, e.node) for e in a] == [
        (events.CHECK_FAILING, f"check:{n}:smtp", n) for n in names
    ]
    assert [(e.subject, e.condition) for e in a] == [(e.subject, e.condition) for e in b]
    assert first.see(failing, T0 + 4) == []


def test_a_failing_check_the_node_no_longer_runs_is_closed_once_and_a_new_failure_is_news():
    detector, check = Detector(), smtp()
    at = probes(check, "xxx", T0)
    assert kinds(detector.see(status([checked("node1", check)], []), at)) == [events.CHECK_FAILING]
    removed = detector.see(status([checked("node1")], []), at + 1)
    assert [(e.kind, e.subject, e.condition) for e in removed] == [
        (events.CHECK_PASSING, "check:node1:smtp", "removed")
    ]
    assert detector.see(status([checked("node1")], []), at + 2) == []
    again = smtp()
    at = probes(again, "xxx", at + 3)
    assert kinds(detector.see(status([checked("node1", again)], []), at)) == [events.CHECK_FAILING]


def test_a_node_that_stops_reporting_does_not_make_its_failing_check_pass():
    detector, check = Detector(), smtp()
    at = probes(check, "xxx", T0)
    detector.see(status([checked("node1", check)], []), at)
    found = detector.see(status([node("node1", reporting=False)], []), at + 5)
    assert kinds(found) == [events.NODE_NOT_REPORTING]
    assert detector.memory["check:node1:smtp"] == "failing"


def test_configuration_drift_is_reported_after_the_grace_period_only():
    detector = Detector(desired={"node1": "v2"}, grace=30)
    lagging = status([node("node1", version="v1")], [])
    assert detector.see(lagging, T0) == []
    assert detector.see(lagging, T0 + 29) == []
    found = detector.see(lagging, T0 + 30)
    assert [(e.kind, e.detail["desired"], e.detail["applied"]) for e in found] == [
        (events.CONFIG_DRIFT, "v2", "v1")
    ]
    assert detector.see(lagging, T0 + 40) == []
    assert kinds(detector.see(status([node("node1", version="v2")], []), T0 + 41)) == [
        events.CONFIG_CONVERGED
    ]


def test_a_node_that_catches_up_within_the_grace_period_is_no_drift():
    detector = Detector(desired={"node1": "v2"}, grace=30)
    detector.see(status([node("node1", version="v1")], []), T0)
    assert detector.see(status([node("node1", version="v2")], []), T0 + 5) == []
    assert detector.see(status([node("node1", version="v2")], []), T0 + 60) == []


def test_a_status_without_live_state_yields_no_event():
    detector = Detector()
    detector.memory = {"owner:eth0:1": "node1"}
    dead = status([node("node1", reporting=False)], [], available=False)
    assert detector.see(dead, T0) == []
