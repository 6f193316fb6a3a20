"""Real-time scheduling of the protocol loop (keepalived's vrrp_rt_priority): the
thread that asks, and only it; normal scheduling for its children; a soft failure
without the capability; the daemon's option."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

import pytest

from cluster.carp import realtime
from cluster.carp.config import build_parser, realtime_priority_from_args
from cluster.carp.types import ConfigError

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="SCHED_RR needs root")


def in_thread(work) -> None:
    """Run ``work`` in a thread of its own (so the test's thread never runs real-time)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    if errors:
        raise errors[0]


@needs_root
def test_the_calling_thread_runs_sched_rr_and_its_children_run_normally():
    seen: dict[str, object] = {}

    def work() -> None:
        state = realtime.Realtime()
        assert state.enter(5)
        tid = threading.get_native_id()
        seen["policy"] = os.sched_getscheduler(tid) & ~os.SCHED_RESET_ON_FORK
        seen["priority"] = os.sched_getparam(tid).sched_priority
        seen["process"] = os.sched_getscheduler(os.getpid()) & ~os.SCHED_RESET_ON_FORK
        child = subprocess.run(
            [sys.executable, "-c", "import os; print(os.sched_getscheduler(0))"],
            capture_output=True,
            text=True,
            check=True,
        )
        seen["child"] = int(child.stdout)
        state.leave("the test is over")
        seen["after"] = os.sched_getscheduler(tid)

    in_thread(work)
    assert (seen["policy"], seen["priority"]) == (os.SCHED_RR, 5)
    assert seen["process"] == os.SCHED_OTHER  # the main thread is left alone
    assert seen["child"] == os.SCHED_OTHER  # SCHED_RESET_ON_FORK: hooks run normally
    assert seen["after"] == os.SCHED_OTHER


def test_without_the_capability_it_says_so_once_and_runs_normally(monkeypatch, caplog):
    def refuse(*_args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    state = realtime.Realtime()
    with caplog.at_level(logging.INFO, logger="cluster.carp"):
        assert not state.enter(10, lock_memory=True)
    lines = [r for r in caplog.records if getattr(r, "event", "") == "realtime"]
    assert len(lines) == 1
    assert "Operation not permitted" in lines[0].getMessage()
    assert (state.tid, state.priority, state.memory_locked) == (None, 0, False)
    assert not state.guard_cpu()  # nothing to guard
    state.leave("nothing to leave")  # harmless


def test_priority_zero_turns_it_off_and_out_of_range_is_refused(monkeypatch):
    monkeypatch.setattr(os, "sched_setscheduler", pytest.fail)
    assert not realtime.Realtime().enter(0)
    with pytest.raises(ValueError, match=r"must be 0\.\.99"):
        realtime.Realtime().enter(100)


@needs_root
def test_the_cpu_guard_needs_the_main_thread():
    def work() -> None:
        state = realtime.Realtime()
        assert state.enter(3)
        try:
            assert not state.guard_cpu()  # a signal handler is the main thread's
        finally:
            state.leave("the test is over")

    in_thread(work)


def test_the_daemon_option_and_the_file_key_choose_the_priority(tmp_path):
    parser = build_parser()
    args = parser.parse_args(["run", "-v", "1"])
    assert realtime_priority_from_args(args, {}) == realtime.DEFAULT_PRIORITY
    assert realtime_priority_from_args(args, {"realtime_priority": 7}) == 7
    args = parser.parse_args(["run", "--realtime-priority", "0"])
    assert realtime_priority_from_args(args, {"realtime_priority": 7}) == 0  # CLI wins
    args = parser.parse_args(["run", "--realtime-priority", "100"])
    with pytest.raises(ConfigError, match=r"must be 0\.\.99"):
        realtime_priority_from_args(args, {})
