"""The runner reads a link's state before the first virtual host on it starts (fakes only).

The worker's link watcher starts with no interface and reports one added later only
from its next change; a vhost started on a dead link must not take it as up.
"""

from __future__ import annotations

import ipaddress

from cluster.carp import wire
from cluster.carp.fakes import FakeLinkStates
from cluster.carp.runner import IFDOWN_DEMOTION
from cluster.carp.types import Reason, State, VirtualHostConfig
from tests.carp.test_runner import VIP, VIP2, Node, config, run_for, start


def node_reading(segment, clock, configs, states: FakeLinkStates) -> Node:
    node = Node(segment, clock, configs)
    node.runner.link_state_of = states
    return node


def test_a_vhost_whose_link_is_down_at_start_never_becomes_master(clock, segment):
    states = FakeLinkStates({"eth0": False})
    a = node_reading(segment, clock, [config(1)], states)
    start(a)
    run_for(clock, [a], 10)
    assert a.state() == State.INIT
    assert not a.holds()
    assert a.links[0].sent == []
    assert a.publisher.published == []  # no BACKUP on a dead link, not even for a moment
    (demotion,) = a.runner.snapshot().demotion
    assert (demotion.source, demotion.level) == ("link:eth0", IFDOWN_DEMOTION)


def test_a_vhost_whose_link_was_down_at_start_takes_over_after_link_up(clock, segment):
    a = node_reading(segment, clock, [config(1)], FakeLinkStates({"eth0": False}))
    start(a)
    run_for(clock, [a], 5)
    a.runner.post_link_state("eth0", True)
    run_for(clock, [a], 2.9)
    assert a.state() == State.BACKUP
    run_for(clock, [a], 0.3)
    assert a.state() == State.MASTER
    assert a.holds()
    assert [(p.state, p.reason) for p in a.publisher.published] == [
        (State.BACKUP, Reason.LINK_UP),
        (State.MASTER, Reason.MASTER_DOWN),
    ]
    assert a.runner.snapshot().demotion == ()
    assert wire.parse(a.links[0].sent[-1].payload).advskew == 0


def test_a_vhost_a_reconfigure_adds_on_a_down_link_stays_in_init(clock, segment):
    # The worker's way: the runner starts with nothing, the configuration follows.
    states = FakeLinkStates({"eth0": False})
    a = node_reading(segment, clock, [], states)
    start(a)
    a.runner.reconfigure([config(1)])
    run_for(clock, [a], 10)
    assert a.state() == State.INIT
    assert not a.holds()
    a.runner.post_link_state("eth0", True)
    run_for(clock, [a], 4)
    assert a.state() == State.MASTER


def test_it_reads_each_interface_once(clock, segment):
    states = FakeLinkStates({"eth0": True})
    a = node_reading(segment, clock, [config(1, vhid=42), config(1, vhid=43)], states)
    start(a)
    a.runner.reconfigure([config(1, vhid=42), config(1, vhid=43), config(1, vhid=44)])
    run_for(clock, [a], 4)
    # Later changes come from the watcher: a second read could only race with them.
    assert states.asked == ["eth0"]
    assert a.state(42) == State.MASTER  # an interface that is up starts as before
    assert a.runner.snapshot().demotion == ()


def test_a_vhost_added_on_a_link_reported_down_starts_in_init(clock, segment):
    a = Node(segment, clock, [config(1, vhid=42)])
    start(a)
    run_for(clock, [a], 4)
    a.runner.post_link_state("eth0", False)
    run_for(clock, [a], 0.01)
    a.runner.reconfigure([config(1, vhid=42), config(1, vhid=43, addresses=[VIP2])])
    run_for(clock, [a], 10)
    assert (a.state(42), a.state(43)) == (State.INIT, State.INIT)
    assert a.addresses.list("eth0") == set()


def test_a_link_state_it_cannot_read_is_taken_as_up_and_counted(clock, segment):
    def broken(interface: str) -> bool | None:
        raise OSError("netlink said no")

    a = Node(segment, clock, [config(1)])
    a.runner.link_state_of = broken
    start(a)
    run_for(clock, [a], 4)
    assert a.state() == State.MASTER
    assert a.runner.snapshot().port_errors == {"link_state:eth0": 1}


def test_a_second_interface_down_at_start_demotes_the_master_on_the_first(clock, segment):
    eth1 = VirtualHostConfig(
        vhid=43,
        interface="eth1",
        password=b"s3cret",
        addresses=(ipaddress.ip_interface("198.51.100.100/32"),),
        src_ip=ipaddress.ip_address("198.51.100.11"),
    )
    states = FakeLinkStates({"eth0": True, "eth1": False})
    a = node_reading(segment, clock, [config(1), eth1], states)
    start(a)
    run_for(clock, [a], 4)
    assert (a.state(42), a.state(43)) == (State.MASTER, State.INIT)
    eth0_link = next(link for link in a.links if link.interface == "eth0")
    advert = wire.parse(eth0_link.sent[-1].payload)
    assert (advert.advskew, advert.demote) == (240, 240)
    assert VIP in a.addresses.list("eth0")
