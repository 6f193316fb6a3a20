"""A node started with its link down, in namespaces of its own (root only).

Both the standalone daemon and a real Celery worker (the lab's, as ``make demo``
starts it): the worker's link watcher starts with no interface and learns eth0
only with the configuration, so only a read of the link's state keeps the engine
from taking a dead link as up.
"""

from __future__ import annotations

import signal
import time

import pytest

from cluster import statekeys
from cluster.carp.netlink import LinkChange, LinkWatcher
from cluster.carp.types import State
from cluster.lab.lab import Lab
from tests.carp.netns import Cluster, in_netns, last_lines, wait_until

pytestmark = pytest.mark.netns

VIP = "192.0.2.100"
DEMO_VIPS = ["192.0.2.101", "192.0.2.102"]  # demo_setup: node1 is Primary of both when alone


def test_the_watcher_reads_a_link_it_did_not_watch_and_reports_its_later_changes(tmp_path):
    with Cluster(tmp_path, nodes=1) as cluster:
        ns = cluster.ns(1)
        cluster.set_link(1, False)

        def started() -> LinkWatcher:
            watcher = LinkWatcher([])  # the worker's: no interface before the configuration
            watcher.start()  # its thread is made here, in the namespace
            return watcher

        watcher = in_netns(ns, started)
        try:
            assert in_netns(ns, lambda: watcher.state_of("eth0")) is False
            assert in_netns(ns, lambda: watcher.state_of("nosuch0")) is False
            assert watcher.drain() == []
            cluster.set_link(1, True)
            seen: list[LinkChange] = []

            def reported_up() -> bool:
                seen.extend(watcher.drain())
                return LinkChange("eth0", True) in seen

            # The kernel may first announce the link up without its carrier (still down).
            wait_until(reported_up, 2, what="the link up")
            assert {change.interface for change in seen} == {"eth0"}
            assert in_netns(ns, lambda: watcher.state_of("eth0")) is True
        finally:
            watcher.stop()


def test_the_daemon_started_on_a_down_link_waits_in_init_and_takes_over_when_it_comes_up(
    tmp_path,
):
    with Cluster(tmp_path, nodes=1) as cluster:
        cluster.set_link(1, False)
        # advbase 0, advskew 50: MASTER within 3 x 50/256 s when alone (test_netns_daemon).
        daemon = cluster.carp(1, addr=[VIP], advbase=0, advskew=50)
        wait_until(lambda: "link eth0 is down" in cluster.log(daemon), 5, what="the link's state")
        time.sleep(1.5)  # more than twice the master-down interval
        log = cluster.log(daemon)
        assert cluster.holders(VIP) == [], last_lines(log)
        # Not even BACKUP for a moment (its downscript would run, the console would show it).
        assert " -> " not in log, last_lines(log)
        cluster.set_link(1, True)
        cluster.wait_holder(VIP, 1, 5)
        log = cluster.log(daemon)
        assert "INIT -> BACKUP (link_up)" in log, last_lines(log)
        assert cluster.stop(daemon, signal.SIGTERM) == 0, last_lines(cluster.log(daemon))
        assert cluster.holders(VIP) == []


def vhost_states(lab: Lab) -> dict[int, State]:
    client = statekeys.sync_client(lab.redis_url)
    try:
        states: dict[int, State] = {}
        for member in client.smembers(statekeys.node_vhosts_key("node1")):
            interface, vhid = statekeys.parse_vhost_member(member)
            values = client.hgetall(statekeys.vhost_key("node1", interface, vhid))
            if values:
                states[vhid] = statekeys.VhostState.from_hash(values).state
        return states
    finally:
        client.close()


def test_a_worker_started_on_a_down_link_never_reports_master_and_takes_over_when_it_comes_up(
    tmp_path,
):
    with Lab(tmp_path, nodes=1) as lab:
        lab.manage("demo_setup", "--var-dir", str(lab.var_dir), "--nodes", "1")
        lab.lan.set_link(1, False)
        worker = lab.start_worker("node1")

        def applied() -> bool:
            return "applied configuration" in lab.processes.log_text(worker)

        wait_until(applied, 30, what="the worker to apply its configuration")
        wait_until(lambda: len(vhost_states(lab)) == 2, 10, what="both vhosts in Redis")
        # advbase 1: a BACKUP would be MASTER 3 s after the start; leave it twice that.
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            assert lab.addresses("node1") == set(), last_lines(lab.processes.log_text(worker))
            assert set(vhost_states(lab).values()) == {State.INIT}
            time.sleep(0.2)
        assert " -> MASTER" not in lab.processes.log_text(worker)

        lab.lan.set_link(1, True)
        for vip in DEMO_VIPS:
            lab.wait_holder(vip, "node1", 10)
        wait_until(
            lambda: set(vhost_states(lab).values()) == {State.MASTER}, 5, what="MASTER in Redis"
        )
        log = lab.processes.log_text(worker)
        assert log.count("INIT -> BACKUP (link_up)") == 2, last_lines(log)
        assert lab.stop_worker("node1") == 0, last_lines(lab.processes.log_text(worker))
        assert lab.addresses("node1") == set()
