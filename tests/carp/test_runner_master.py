"""The runner's view of the current master (the address adverts come from), its
advertised advskew/demote and the publisher's transition facts, over fakes."""

from __future__ import annotations

import ipaddress
import time

from cluster.carp.types import State
from tests.carp.test_runner import Node, config, run_for, start

A = ipaddress.ip_address("192.0.2.11")
B = ipaddress.ip_address("192.0.2.12")


def host(node: Node, vhid: int = 42):
    return next(h for h in node.runner.snapshot().hosts if h.vhid == vhid)


def test_the_backup_names_the_master_its_adverts_come_from_and_the_master_names_itself(
    clock, segment
):
    a = Node(segment, clock, [config(1, advskew=0)])
    b = Node(segment, clock, [config(2, advskew=100)])
    start(a, b)
    assert host(a).master is None  # BACKUP with no advert heard yet
    run_for(clock, [a, b], 4)
    assert (host(a).state, host(a).master) == (State.MASTER, A)
    assert (host(b).state, host(b).master) == (State.BACKUP, A)
    assert ("eth0", 42) in b.publisher.changes  # the master became known: publish now


def test_a_failover_moves_the_master_address_and_a_stop_forgets_it(clock, segment):
    a = Node(segment, clock, [config(1, advskew=0)])
    b = Node(segment, clock, [config(2, advskew=100)])
    start(a, b)
    run_for(clock, [a, b], 4)
    a.runner.shutdown()
    run_for(clock, [b], 0.06)  # its skew delay: 100/2048 s
    assert (host(b).state, host(b).master) == (State.MASTER, B)
    # a comes back: it preempts b, and b (BACKUP again) names a as master.
    a2 = Node(segment, clock, [config(1, advskew=0)])
    start(a2)
    run_for(clock, [a2, b], 4)
    assert (host(a2).state, host(b).state, host(b).master) == (State.MASTER, State.BACKUP, A)


def test_demotion_shows_in_the_snapshot_and_tells_the_publisher(clock, segment):
    a = Node(segment, clock, [config(1, advskew=10)])
    start(a)
    run_for(clock, [a], 4)
    before = len(a.publisher.changes)
    a.runner.set_demotion("operator", 240)
    run_for(clock, [a], 0.01)
    snap = host(a)
    assert (snap.advskew, snap.advertised_advskew, snap.demote) == (10, 240, 240)
    assert len(a.publisher.changes) == before + 1


def test_a_transition_is_published_with_its_old_state_and_wall_clock_time(clock, segment):
    a = Node(segment, clock, [config(1)])
    before = time.time()
    start(a)
    run_for(clock, [a], 4)
    first, second = a.publisher.published[:2]
    assert (first.old, first.state, second.old, second.state) == (
        State.INIT,
        State.BACKUP,
        State.BACKUP,
        State.MASTER,
    )
    assert first.at is not None
    assert second.at is not None
    assert before <= first.at <= second.at <= time.time()
    snap = host(a)
    assert (snap.last_from, snap.last_at) == (State.BACKUP, second.at)
