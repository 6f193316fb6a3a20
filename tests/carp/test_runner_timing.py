"""The runner's wake-ups: adverts of many masters grouped into one, and a loop that
stops sleeping reported (over fakes; the spin check with a real select on a pipe)."""

from __future__ import annotations

import ipaddress
import os
import threading

import pytest

from cluster.carp import runner as runner_module
from cluster.carp.fakes import FakeAddresses, FakeGratuitous, FakeLink
from cluster.carp.runner import Runner
from cluster.carp.types import IPAddress, State
from tests.carp.test_runner import Node, config, start


def _vip(vhid: int):
    return ipaddress.ip_interface(f"198.51.100.{vhid}/32")


def step_at_next_deadline(clock, node: Node) -> None:
    wait = node.runner._time_to_next(clock.now)
    assert wait is not None
    clock.advance(wait)
    node.runner.step(max_wait=0)


def test_masters_whose_adverts_fall_due_a_few_ms_apart_advertise_in_one_wake_up(clock, segment):
    a = Node(segment, clock, [config(1, vhid=1, addresses=(_vip(1),))])
    start(a)
    clock.advance(0.004)
    a.runner.reconfigure([config(1, vhid=v, addresses=(_vip(v),)) for v in (1, 2)])
    a.runner.step(max_wait=0)  # vhid 2 starts 4 ms after vhid 1
    step_at_next_deadline(clock, a)  # vhid 1's master-down timer
    # A master-down timer never fires early: vhid 2 waits for its own.
    assert (a.state(1), a.state(2)) == (State.MASTER, State.BACKUP)
    step_at_next_deadline(clock, a)
    assert a.state(2) == State.MASTER
    sent = [(p.vhid, clock.now) for p in a.links[0].sent]
    # Their periodic adverts fall due 4 ms apart; each wake-up sends both.
    for period in range(1, 6):
        before = len(a.links[0].sent)
        step_at_next_deadline(clock, a)
        assert sorted(p.vhid for p in a.links[0].sent[before:]) == [1, 2], period
    assert len(a.links[0].sent) == len(sent) + 10
    # vhid 2 keeps its own schedule (4 ms after vhid 1's): its next deadline is an
    # interval after the one it was due at, so it is never later than due.
    host2 = a.runner._hosts[("eth0", 2)]
    host1 = a.runner._hosts[("eth0", 1)]
    assert host1.scheduled is not None
    assert host2.scheduled == pytest.approx(host1.scheduled + 0.004, abs=1e-9)


def test_only_adverts_due_within_an_eighth_of_their_interval_go_early(clock, segment):
    a = Node(segment, clock, [config(1, vhid=1, addresses=(_vip(1),))])
    start(a)
    clock.advance(0.5)  # far beyond the group window
    a.runner.reconfigure([config(1, vhid=v, addresses=(_vip(v),)) for v in (1, 2)])
    a.runner.step(max_wait=0)
    for _ in range(2):
        step_at_next_deadline(clock, a)
    assert (a.state(1), a.state(2)) == (State.MASTER, State.MASTER)
    before = len(a.links[0].sent)
    step_at_next_deadline(clock, a)
    assert [p.vhid for p in a.links[0].sent[before:]] == [1]


class PipeLink(FakeLink):
    """A fake link with a real descriptor, so that the runner's select() really waits."""

    def __init__(self, interface: str, source: IPAddress) -> None:
        super().__init__(interface, source)
        self.read_end, self.write_end = os.pipe()

    def fileno(self) -> int:
        return self.read_end

    def close(self) -> None:
        super().close()
        os.close(self.read_end)
        os.close(self.write_end)


def pipe_runner(on_spin) -> tuple[Runner, list[PipeLink]]:
    links: list[PipeLink] = []

    def open_link(interface: str, source: IPAddress) -> PipeLink:
        links.append(PipeLink(interface, source))
        return links[-1]

    runner = Runner(
        [config(1)],
        open_link=open_link,
        addresses=FakeAddresses(),
        gratuitous=FakeGratuitous(),
        on_spin=on_spin,
    )
    return runner, links


def test_a_loop_that_stops_sleeping_is_reported_once(monkeypatch):
    monkeypatch.setattr(runner_module, "SPIN_LIMIT", 0.1)
    spun = threading.Event()
    runner, links = pipe_runner(spun.set)
    runner.start()
    # A descriptor that stays readable while receive() finds nothing: select()
    # returns at once, every time.
    os.write(links[0].write_end, b"x")
    thread = threading.Thread(target=runner.serve)
    thread.start()
    try:
        assert spun.wait(5), "the spinning loop was not reported"
        assert runner.on_spin is None  # once
    finally:
        runner.request_stop()
        thread.join(5)
    assert not thread.is_alive()


def test_an_idle_loop_sleeps_and_is_not_reported(monkeypatch):
    monkeypatch.setattr(runner_module, "SPIN_LIMIT", 0.1)
    spun = threading.Event()
    runner, _links = pipe_runner(spun.set)
    runner.start()
    thread = threading.Thread(target=runner.serve)
    thread.start()
    try:
        assert not spun.wait(0.6)  # BACKUP: it sleeps until its master-down deadline
    finally:
        runner.request_stop()
        thread.join(5)
    assert not thread.is_alive()
