"""One handover, one holder: five standalone daemons in namespaces (root only).

CARP as the BSDs and ucarp write it lets every backup act at once when the
master leaves or is slower than them (CARP.md "With more than two nodes"); our
engine lets the best backup act first and the others stand down on its advert
(DESIGN.md "One handover, one holder"). These tests watch every node's address
events (tests/addrwatch.py) and the adverts on the bridge, and assert who held
the VIP and how many at once, never how fast: a busy CI machine may be slow,
but it must not put the VIP on a node that should never have had it.

The advskews are the project's derivation with a step of 13 (cluster/advskew.py):
node *i* advertises ``13 * (i - 1)``, so node 1 is the best and node 5 the worst.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.lab.procs import Proc
from tests.addrwatch import AddressWatch
from tests.carp.netns import Capture, Cluster, last_lines, node_ip, wait_until

pytestmark = pytest.mark.netns

VIP = "192.0.2.100"
NODES = 5
STEP = 13
# A generous bound for an election (3 s + advskew/256 on an idle machine): the
# tests wait for an outcome, they do not time it.
ELECTION = 15.0
SETTLE = 2.0  # seconds the outcome must hold: a late contender would show by then


def advskew(index: int) -> int:
    return STEP * (index - 1)


def name(index: int) -> str:
    return f"node{index}"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster(tmp_path, nodes=NODES) as built:
        yield built


@pytest.fixture
def watch(cluster: Cluster) -> Iterator[AddressWatch]:
    with AddressWatch({name(i): cluster.ns(i) for i in range(1, NODES + 1)}) as built:
        yield built


def start(cluster: Cluster, index: int) -> Proc:
    return cluster.carp(index, addr=[VIP], advskew=advskew(index))


def in_backup(cluster: Cluster, procs: dict[int, Proc], timeout: float = 30) -> None:
    """Wait until every daemon of ``procs`` has logged its INIT -> BACKUP."""
    wait_until(
        lambda: all(re.search(r"init.{1,40}backup", cluster.log(p), re.I) for p in procs.values()),
        timeout,
        what=f"nodes {sorted(procs)} in BACKUP",
    )


def steady(cluster: Cluster, index: int, seconds: float = SETTLE) -> None:
    """Node ``index`` alone holds the VIP for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert cluster.holders(VIP) == [index]
        time.sleep(0.1)


def advertisers(cap: Capture, since: float) -> set[int]:
    """The nodes whose adverts crossed the bridge since ``since``."""
    sources = {a.source for a in cap.adverts if a.time >= since}
    return {i for i in range(1, NODES + 1) if node_ip(i) in sources}


def elected_node1(cluster: Cluster) -> dict[int, Proc]:
    """Node 1 first (its timer running first makes it the master by timeout), then
    the four backups at once; returns when node 1 alone holds the VIP and every
    backup is in BACKUP."""
    procs = {1: start(cluster, 1)}
    in_backup(cluster, procs)
    procs.update({i: start(cluster, i) for i in range(2, NODES + 1)})
    cluster.wait_holder(VIP, 1, ELECTION)
    in_backup(cluster, procs)
    steady(cluster, 1, 1.0)
    return procs


def test_a_restart_of_five_nodes_at_once_puts_the_vip_on_the_best_without_a_storm(
    cluster: Cluster, watch: AddressWatch
) -> None:
    # The worst node's daemon comes up first (its interpreter was quicker), the
    # four others at once right after: node 5 times out first and becomes master
    # while nodes 1 to 4 wait in BACKUP, and all four hear its first advert.
    # Every one of them is better than node 5; only node 1 may take over.
    cap = cluster.capture()
    since = time.time()
    procs = {5: start(cluster, 5)}
    in_backup(cluster, procs)
    procs.update({i: start(cluster, i) for i in range(1, NODES)})
    wait_until(lambda: name(5) in watch.adders(VIP), ELECTION, what="node 5 taking the VIP first")
    late = [
        i
        for i in range(1, NODES)
        if not re.search(r"init.{1,40}backup", cluster.log(procs[i]), re.I)
    ]
    assert not late, f"nodes {late} were not in BACKUP when node 5 took over: no contention"
    cluster.wait_holder(VIP, 1, ELECTION)
    steady(cluster, 1)

    timeline = watch.timeline(VIP, since)
    assert watch.adders(VIP, since) == {name(5), name(1)}, timeline
    assert watch.most_holders(VIP, [], since) <= 2, timeline
    # Nodes 2 to 4 never became master, so they never advertised.
    assert advertisers(cap, since) == {1, 5}, last_lines(cluster.log(procs[2]))


def test_a_bow_out_heard_by_four_backups_puts_the_vip_on_the_best_one_only(
    cluster: Cluster, watch: AddressWatch
) -> None:
    procs = elected_node1(cluster)
    cap = cluster.capture()
    since = time.time()

    assert cluster.stop(procs[1], signal.SIGTERM) == 0  # a graceful stop: the bow-out
    cluster.wait_holder(VIP, 2, ELECTION)
    steady(cluster, 2)

    timeline = watch.timeline(VIP, since)
    assert watch.adders(VIP, since) == {name(2)}, timeline
    assert name(1) in watch.removers(VIP, since), timeline
    assert watch.most_holders(VIP, [name(1)], since) <= 2, timeline
    assert advertisers(cap, since) == {1, 2}, last_lines(cluster.log(procs[3]))


def test_a_second_stop_in_a_row_moves_the_vip_to_the_third_best_node_only(
    cluster: Cluster, watch: AddressWatch
) -> None:
    procs = elected_node1(cluster)
    cap = cluster.capture()
    since = time.time()

    # kill's default signal: each stop bows out, heard by every remaining backup.
    assert cluster.stop(procs[1], signal.SIGTERM) == 0
    cluster.wait_holder(VIP, 2, ELECTION)
    steady(cluster, 2, 1.0)
    assert cluster.stop(procs[2], signal.SIGTERM) == 0
    cluster.wait_holder(VIP, 3, ELECTION)
    steady(cluster, 3)

    timeline = watch.timeline(VIP, since)
    assert watch.adders(VIP, since) == {name(2), name(3)}, timeline
    assert {name(1), name(2)} <= watch.removers(VIP, since), timeline
    assert watch.most_holders(VIP, [name(1)], since) <= 2, timeline
    assert advertisers(cap, since) == {1, 2, 3}, last_lines(cluster.log(procs[4]))
