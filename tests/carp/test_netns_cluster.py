"""Our daemon in real network namespaces: a bridge and up to three nodes (root only).

What counts is the real state: which namespace has the VIP on its eth0 (``ip -n NS
addr``) and the adverts seen on the bridge. advbase is 1 everywhere, so a master
appears after 3 s + advskew/256 (CARP.md); timeouts allow a second more.
"""

from __future__ import annotations

import json
import re
import signal
import time

import pytest

from cluster.lab.procs import Proc
from tests.carp.netns import Cluster, last_lines, node_ip, node_ip6, wait_until

pytestmark = pytest.mark.netns

VIP = "192.0.2.100"
ELECTION = 3.0 + 100 / 256 + 1.5  # the slowest master-down interval here, plus slack


@pytest.fixture
def cluster(tmp_path):
    with Cluster(tmp_path, nodes=3) as built:
        yield built


def in_backup(cluster: Cluster, proc: Proc) -> Proc:
    """Wait until the daemon has started (its INIT -> BACKUP, text or JSON log).

    On two CPUs three interpreters starting at once can finish their imports in any
    order, and a later-started backup would then time out first and be preempted:
    the Primary started (and its timer running) first makes the election order the
    one the test describes.
    """
    wait_until(
        lambda: re.search(r"INIT.{1,40}BACKUP", cluster.log(proc)), 10, what="the daemon in BACKUP"
    )
    return proc


def steady_holder(cluster: Cluster, vip: str, index: int, seconds: float = 1.5) -> None:
    """``vip`` stays on node ``index`` alone for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert cluster.holders(vip) == [index]
        time.sleep(0.1)


def test_three_nodes_elect_the_primary_and_only_it_advertises(cluster):
    procs = [
        in_backup(cluster, cluster.carp(1, "--log-format", "json", addr=[VIP], advskew=0)),
        cluster.carp(2, addr=[VIP], advskew=50),
        cluster.carp(3, addr=[VIP], advskew=100),
    ]
    cap = cluster.capture()
    cluster.wait_holder(VIP, 1, ELECTION)
    since = time.time()
    steady_holder(cluster, VIP, 1, 2.5)
    adverts = [a for a in cap.adverts if a.time >= since]
    assert {a.source for a in adverts} == {node_ip(1)}
    assert {(a.vhid, a.ttl, a.advbase, a.advskew) for a in adverts} == {(42, 255, 1, 0)}
    assert 2 <= len(adverts) <= 4  # one a second
    assert cap.announced(VIP)  # gratuitous ARP at takeover
    # --log-format json: one object per line, the transition with its reason.
    events = [json.loads(line) for line in cluster.log(procs[0]).splitlines()]
    assert {
        "event": "transition",
        "old": "BACKUP",
        "new": "MASTER",
        "reason": "master_down",
    }.items() <= next(
        e for e in events if e.get("event") == "transition" and e["new"] == "MASTER"
    ).items()


def test_the_backup_takes_over_when_the_master_is_killed(cluster):
    primary = in_backup(cluster, cluster.carp(1, addr=[VIP], advskew=0))
    cluster.carp(2, addr=[VIP], advskew=50)
    cluster.carp(3, addr=[VIP], advskew=100)
    cluster.wait_holder(VIP, 1, ELECTION)
    cap = cluster.capture()
    killed = time.time()
    cluster.stop(primary, signal.SIGKILL)
    # SIGKILL leaves node 1's VIP behind (NOTES.md); the Secondary must take it anyway.
    wait_until(lambda: 2 in cluster.holders(VIP), 3 + 50 / 256 + 1.0, what="takeover by node 2")
    taken = cap.announced(VIP, since=killed)
    assert taken
    assert taken[0].time - killed < 3 + 50 / 256 + 0.2
    # Node 1's stale copy stays (nobody runs there); the Backup must not take it too.
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        assert cluster.holders(VIP) == [1, 2]
        time.sleep(0.1)


def test_the_primary_returns_cleans_up_and_preempts(cluster):
    in_backup(cluster, cluster.carp(2, addr=[VIP], advskew=50))
    cluster.wait_holder(VIP, 2, ELECTION)
    # A crash of an earlier run left the VIP on node 1: the new run must remove it.
    cluster_ns1 = cluster.ns(1)
    from tests.carp.netns import sh

    sh("ip", "-n", cluster_ns1, "addr", "add", f"{VIP}/32", "dev", "eth0")
    cluster.carp(1, addr=[VIP], advskew=0)
    wait_until(lambda: cluster.holders(VIP) == [2], 2, what="stale VIP removed from node 1")
    # It preempts on the first advert of the slower master it hears (CARP.md).
    cluster.wait_holder(VIP, 1, 1 + 50 / 256 + 1.0)
    steady_holder(cluster, VIP, 1)


def test_a_graceful_stop_bows_out_and_the_backup_takes_over_at_once(cluster):
    primary = in_backup(cluster, cluster.carp(1, addr=[VIP], advskew=0))
    backup = cluster.carp(2, addr=[VIP], advskew=50)
    cluster.wait_holder(VIP, 1, ELECTION)
    cap = cluster.capture()
    stopped = time.time()
    assert cluster.stop(primary, signal.SIGTERM) == 0
    cluster.wait_holder(VIP, 2, 0.5)
    # Its last advert is the bow-out (a periodic one may just precede it).
    last = [(a.advbase, a.advskew) for a in cap.adverts_from(node_ip(1), since=stopped)]
    assert last[-1:] == [(255, 255)]
    assert cap.announced(VIP, since=stopped)[0].time - stopped < 0.2
    assert "BACKUP -> MASTER (bow_out)" in cluster.log(backup)
    assert "MASTER -> INIT (shutdown)" in cluster.log(primary)


def test_link_down_on_the_master_hands_over_and_link_up_takes_it_back(cluster):
    primary = in_backup(cluster, cluster.carp(1, addr=[VIP], advskew=0))
    cluster.carp(2, addr=[VIP], advskew=50)
    cluster.wait_holder(VIP, 1, ELECTION)
    cluster.set_link(1, up=False)
    wait_until(lambda: VIP not in cluster.addresses(1), 1, what="node 1 dropping the VIP")
    cluster.wait_holder(VIP, 2, 3 + 50 / 256 + 1.0)
    assert "MASTER -> INIT (link_down)" in cluster.log(primary)
    cluster.set_link(1, up=True)
    cluster.wait_holder(VIP, 1, 1 + 50 / 256 + 1.5)
    log = cluster.log(primary)
    assert "INIT -> BACKUP (link_up)" in log
    assert "BACKUP -> MASTER (preempted)" in log, last_lines(log)


def test_two_vhids_with_opposite_priorities_run_active_active_in_one_process(cluster, tmp_path):
    vip1, vip2 = "192.0.2.101", "192.0.2.102"
    for node, (skew1, skew2) in ((1, (0, 100)), (2, (100, 0))):
        path = tmp_path / f"node{node}.toml"
        path.write_text(
            'password = "s3cret"\nadvbase = 1\n'
            f'[[vhost]]\nvhid = 1\naddresses = ["{vip1}"]\nadvskew = {skew1}\n'
            f'[[vhost]]\nvhid = 2\naddresses = ["{vip2}"]\nadvskew = {skew2}\n'
        )
        cluster.carp(node, "--config", str(path), vhid=None)
    cap = cluster.capture()
    cluster.wait_holder(vip1, 1, ELECTION)
    cluster.wait_holder(vip2, 2, ELECTION)
    since = time.time()
    time.sleep(1.5)
    seen = {(a.vhid, a.source) for a in cap.adverts if a.time >= since}
    assert seen == {(1, node_ip(1)), (2, node_ip(2))}


def test_an_ipv6_vip_fails_over_with_unsolicited_neighbour_advertisements(cluster):
    vip6 = "2001:db8::100"
    # The IPv6 source address makes the adverts IPv6 (ff02::12, hop limit 255).
    primary = in_backup(
        cluster, cluster.carp(1, "--srcip", node_ip6(1), addr=[f"{vip6}/64"], advskew=0)
    )
    cluster.carp(2, "--srcip", node_ip6(2), addr=[f"{vip6}/64"], advskew=50)
    cap = cluster.capture()
    cluster.wait_holder(vip6, 1, ELECTION)
    assert {a.source for a in cap.adverts if a.vhid == 42} == {node_ip6(1)}
    assert {a.ttl for a in cap.adverts} == {255}
    assert cap.announced(vip6)
    killed = time.time()
    cluster.stop(primary, signal.SIGKILL)
    wait_until(lambda: 2 in cluster.holders(vip6), 3 + 50 / 256 + 1.0, what="IPv6 takeover")
    assert cap.announced(vip6, since=killed)


def test_several_addresses_on_one_vhid_move_together(cluster):
    vips = ["192.0.2.100", "192.0.2.101/24", "2001:db8::100/64"]
    bare = ["192.0.2.100", "192.0.2.101", "2001:db8::100"]
    primary = in_backup(cluster, cluster.carp(1, addr=vips, advskew=0))
    cluster.carp(2, addr=vips, advskew=50)
    cap = cluster.capture()
    wait_until(
        lambda: all(cluster.holders(v) == [1] for v in bare), ELECTION, what="all VIPs on node 1"
    )
    stopped = time.time()
    cluster.stop(primary, signal.SIGTERM)
    wait_until(lambda: all(cluster.holders(v) == [2] for v in bare), 1, what="all VIPs on node 2")
    for vip in bare:
        assert cap.announced(vip, since=stopped), vip
