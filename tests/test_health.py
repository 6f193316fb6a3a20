"""Rise, fall and boot gating of health checks (cluster/health.py): pure, time passed in."""

from __future__ import annotations

from cluster.checks import CheckSpec
from cluster.health import MESSAGE_LIMIT, CheckTracker, reconcile, short, with_target

SMTP = CheckSpec("smtp-25", "smtp", rise=2, fall=3, weight=240)


def feed(tracker: CheckTracker, results: str, start: float = 1000.0, step: float = 2.0) -> None:
    """Feed ``results`` ("+" pass, "-" connection refused) one interval apart."""
    for n, mark in enumerate(results):
        ok = mark == "+"
        tracker.record(ok, "220 banner" if ok else "connection refused", start + n * step)


def test_fall_failures_in_a_row_demote_by_the_weight_with_the_reason_in_words():
    tracker = CheckTracker(SMTP)
    feed(tracker, "--")
    assert tracker.demotion() == (0, "")  # two of three: not yet
    feed(tracker, "-", start=1004.0)
    assert tracker.demotion() == (240, "health smtp-25 failing 3× (connection refused)")
    status = tracker.status()
    assert (status.passing, status.count, status.message) == (False, 3, "connection refused")
    assert status.demotion == 240
    assert (status.changed_at, status.last_at) == (1000.0, 1004.0)


def test_a_pass_between_failures_starts_the_count_again():
    tracker = CheckTracker(SMTP)
    feed(tracker, "--+--")
    assert tracker.level == 0
    assert tracker.status().count == 2
    feed(tracker, "-", start=2000.0)
    assert tracker.level == 240


def test_rise_passes_in_a_row_clear_a_failing_check_and_one_is_not_enough():
    tracker = CheckTracker(SMTP)
    feed(tracker, "---")
    feed(tracker, "+", start=1010.0)
    assert tracker.level == 240  # one pass of two
    feed(tracker, "-+", start=1012.0)
    assert tracker.level == 240  # the failure in between started the rise again
    feed(tracker, "+", start=1016.0)
    assert tracker.demotion() == (0, "")
    assert tracker.status().changed_at == 1014.0  # when it last turned to passing


def test_the_reason_does_not_change_while_a_failing_check_keeps_failing():
    tracker = CheckTracker(SMTP)
    feed(tracker, "------")
    assert tracker.reason == "health smtp-25 failing 3× (connection refused)"
    assert tracker.status().count == 6  # the count itself is reported as it grows


def test_a_timeout_is_a_failure_with_its_message():
    tracker = CheckTracker(CheckSpec("smtp-25", "smtp", fall=1))
    tracker.record(False, "timeout after 2000 ms", 5.0)
    assert tracker.demotion() == (240, "health smtp-25 failing 1× (timeout after 2000 ms)")


def test_at_boot_a_check_demotes_until_it_has_passed_once():
    tracker = CheckTracker.at_boot(SMTP)
    assert tracker.demotion() == (240, "health smtp-25 not checked yet (boot)")
    assert tracker.status().gating is True
    tracker.record(False, "connection refused", 1.0)
    assert tracker.demotion() == (240, "health smtp-25 failing 1× (connection refused)")
    tracker.record(True, "220 node1", 3.0)
    assert tracker.demotion() == (0, "")
    assert tracker.status().gating is False
    # Ungated for good: a later single failure is counted towards fall, no more.
    tracker.record(False, "connection refused", 5.0)
    assert tracker.level == 0


def test_with_boot_needs_rise_it_demotes_until_rise_passes_in_a_row():
    tracker = CheckTracker.at_boot(CheckSpec("smtp-25", "smtp", rise=3, boot_needs_rise=True))
    tracker.record(True, "ok", 1.0)
    assert tracker.demotion() == (240, "health smtp-25 passed 1 of 3 (boot)")
    tracker.record(True, "ok", 2.0)
    tracker.record(False, "banner 554 busy", 3.0)
    tracker.record(True, "ok", 4.0)
    tracker.record(True, "ok", 5.0)
    assert tracker.level == 240
    tracker.record(True, "ok", 6.0)
    assert tracker.level == 0


def test_a_boot_check_that_fails_fall_times_stays_demoted_until_rise_passes():
    tracker = CheckTracker.at_boot(SMTP)
    feed(tracker, "---+")
    # One pass ends the gating, but the check is failing: rise (2) passes clear it.
    assert tracker.gating is False
    assert tracker.level == 240
    feed(tracker, "+", start=1100.0)
    assert tracker.level == 0


def test_the_weight_is_the_checks_own():
    tracker = CheckTracker(CheckSpec("disk", "disk", fall=1, weight=50))
    tracker.record(False, "4% free on /var, below 10%", 1.0)
    assert tracker.demotion() == (50, "health disk failing 1× (4% free on /var, below 10%)")


def test_reconcile_keeps_results_of_kept_checks_gates_only_at_boot_and_drops_removed_ones():
    at_boot = reconcile({}, (SMTP, CheckSpec("web", "http")), boot=True)
    assert all(t.gating for t in at_boot.values())
    feed(at_boot["smtp-25"], "+")
    edited = CheckSpec("smtp-25", "smtp", rise=2, fall=3, weight=100)
    later = reconcile(at_boot, (edited, CheckSpec("tcp-587", "tcp", port=587)), boot=False)
    assert set(later) == {"smtp-25", "tcp-587"}
    assert later["smtp-25"] is at_boot["smtp-25"]
    assert later["smtp-25"].spec.weight == 100
    assert later["smtp-25"].status().count == 1
    assert (later["tcp-587"].gating, later["tcp-587"].level) == (False, 0)


def test_an_edited_weight_applies_at_once_to_a_failing_check():
    trackers = reconcile({}, (SMTP,), boot=False)
    feed(trackers["smtp-25"], "---")
    trackers = reconcile(trackers, (CheckSpec("smtp-25", "smtp", weight=60),), boot=False)
    assert trackers["smtp-25"].demotion() == (60, "health smtp-25 failing 3× (connection refused)")


def test_an_empty_host_means_the_nodes_own_address():
    assert with_target(SMTP, "192.0.2.11").host == "192.0.2.11"
    elsewhere = CheckSpec("relay", "smtp", host="192.0.2.50")
    assert with_target(elsewhere, "192.0.2.11").host == "192.0.2.50"


def test_messages_are_one_short_line():
    assert short("banner 554\r\n  busy") == "banner 554 busy"
    assert len(short("x" * 1000)) == MESSAGE_LIMIT
