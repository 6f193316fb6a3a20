"""A takeover carries the silence since the replaced master's last advert: the
failover time of ``carp_failover_duration_seconds`` (cluster/metrics.py)."""

from __future__ import annotations

import ipaddress

import pytest

from cluster import statekeys
from cluster.carp.fsm import VirtualHost
from cluster.carp.types import (
    Advertisement,
    AdvertReceived,
    Reason,
    Start,
    State,
    Timeout,
    Transitioned,
    VirtualHostConfig,
)

OWN = ipaddress.IPv4Address("192.0.2.11")
PEER = ipaddress.IPv4Address("192.0.2.12")


def backup(now: float = 0.0) -> VirtualHost:
    config = VirtualHostConfig(
        vhid=42, interface="eth0", password=b"s3cret", advbase=1, advskew=100, src_ip=OWN,
        addresses=(ipaddress.IPv4Interface("192.0.2.100/24"),),
    )  # fmt: skip
    vh = VirtualHost(config)
    vh.handle(Start(), now)
    return vh


def takeover(vh: VirtualHost) -> Transitioned:
    deadline = vh.next_deadline()
    assert deadline is not None
    actions = vh.handle(Timeout(), deadline)
    assert vh.state is State.MASTER
    (transitioned,) = [a for a in actions if isinstance(a, Transitioned)]
    return transitioned


def test_a_master_down_takeover_measures_from_the_masters_last_advert():
    vh = backup()
    for now in (1.0, 2.0, 3.25):
        vh.handle(AdvertReceived(Advertisement(42, 1, 0, 1, bytes(20)), PEER), now)
    transitioned = takeover(vh)
    assert transitioned.silence == pytest.approx(3 + 100 / 256)  # its master-down interval


def test_a_takeover_with_no_master_heard_is_no_failover():
    assert takeover(backup()).silence is None


def test_the_silence_is_not_part_of_a_transitions_identity():
    measured = Transitioned(42, State.BACKUP, State.MASTER, Reason.MASTER_DOWN, "", 1.0)
    assert measured == Transitioned(42, State.BACKUP, State.MASTER, Reason.MASTER_DOWN)


def test_the_silence_travels_in_the_transition_message_and_is_checked():
    message = statekeys.TransitionMessage(
        "node2", "eth0", 42, State.BACKUP, State.MASTER, "master_down", 1000.0, silence=3.4
    )
    assert statekeys.decode_message(statekeys.encode_message(message)) == message
    without = statekeys.TransitionMessage(
        "node2", "eth0", 42, State.BACKUP, State.MASTER, "master_down", 1000.0
    )
    assert "silence" not in statekeys.encode_message(without)
    raw = statekeys.encode_message(message).replace("3.4", '"soon"')
    with pytest.raises(statekeys.Unreadable, match="silence"):
        statekeys.decode_message(raw)
