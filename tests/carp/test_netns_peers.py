"""Adverts only from members, and no counter twice, on a real segment (root).

Two of our daemons guard vhid 42 with ``--peer-only`` (each other's address) and
``--strict-counters``; a third namespace plays the attacker of the review: it
replays and rewrites adverts (CARP's HMAC covers neither the source, advbase,
advskew nor demote, CARP.md). Without the checks each forged advert below makes
the backup take the VIP from a live master.
"""

from __future__ import annotations

import ipaddress
import re
import signal
import socket
import time

import pytest

from cluster.carp import wire
from cluster.carp.link import IPPROTO_CARP
from cluster.carp.runner import counter_start
from cluster.lab.procs import Proc
from tests.carp.netns import Cluster, in_netns, last_lines, node_ip, wait_until

pytestmark = pytest.mark.netns

VIP = "192.0.2.100"
ELECTION = 3.0 + 100 / 256 + 1.5


@pytest.fixture
def cluster(tmp_path):
    with Cluster(tmp_path, nodes=3) as built:
        yield built


def guarded(cluster: Cluster, index: int, peer: int, advskew: int) -> Proc:
    return cluster.carp(
        index, "--peer-only", node_ip(peer), "--strict-counters", addr=[VIP], advskew=advskew
    )


def send_from(cluster: Cluster, index: int, payload: bytes) -> None:
    """Send ``payload`` as a CARP advert from node ``index``'s own address."""

    def open_socket() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_CARP)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(node_ip(index)))
        return sock

    sock = in_netns(cluster.ns(index), open_socket)
    try:
        sock.sendto(payload, (str(wire.CARP_GROUP_V4), 0))
    finally:
        sock.close()


def drops(cluster: Cluster, proc: Proc, reason: str) -> int:
    """The daemon's drop counter for ``reason``, from its SIGUSR1 dump (ucarp's)."""
    before = cluster.log(proc).count("dropped packets:")
    cluster.send_signal(proc, signal.SIGUSR1)
    wait_until(lambda: cluster.log(proc).count("dropped packets:") > before, 5, what="the dump")
    line = cluster.log(proc).rsplit("dropped packets:", 1)[1].splitlines()[0]
    found = re.search(rf"\b{reason} (\d+)", line)
    return int(found.group(1)) if found else 0


def bow_out(counter: int) -> bytes:
    return wire.encode(42, 255, 255, 0, counter, b"s3cret", [ipaddress.ip_address(VIP)])


def elected(cluster: Cluster) -> tuple[Proc, Proc]:
    master = guarded(cluster, 1, peer=2, advskew=0)
    wait_until(lambda: "INIT -> BACKUP" in cluster.log(master), 10, what="node 1 in BACKUP")
    backup = guarded(cluster, 2, peer=1, advskew=100)
    cluster.wait_holder(VIP, 1, ELECTION)
    return master, backup


def test_a_forged_bow_out_from_a_non_member_is_dropped_and_counted(cluster):
    _master, backup = elected(cluster)
    # A fresh counter, so that only the source gives it away.
    send_from(cluster, 3, bow_out(counter_start(time.time()) + 2**40))
    time.sleep(0.5)  # the backup would have taken over within its 49 ms skew delay
    assert cluster.holders(VIP) == [1], last_lines(cluster.log(backup))
    assert drops(cluster, backup, "not_member") == 1


def test_an_old_counter_from_a_member_is_dropped_as_a_replay(cluster):
    _master, backup = elected(cluster)
    # The member's own address, an advert from an hour ago rewritten into a bow-out.
    send_from(cluster, 1, bow_out(counter_start(time.time() - 3600)))
    time.sleep(0.5)
    assert cluster.holders(VIP) == [1], last_lines(cluster.log(backup))
    assert drops(cluster, backup, "replay") == 1, last_lines(cluster.log(backup))


def test_a_member_that_restarts_is_accepted_again(cluster):
    master, backup = elected(cluster)
    cluster.stop(master, signal.SIGTERM)
    cluster.wait_holder(VIP, 2, 2.0)
    # node 1 comes back: it preempts node 2 with its first advert, whose counter
    # (from the clock) node 2 takes although it saw node 1's older run.
    again = guarded(cluster, 1, peer=2, advskew=0)
    cluster.wait_holder(VIP, 1, ELECTION)
    assert drops(cluster, backup, "replay") == 0, last_lines(cluster.log(again))
