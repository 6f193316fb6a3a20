"""The daemon as an operator drives it, in a namespace of its own (root only).

A ucarp user keeps their habits: the signals ucarp understands, and the scripts of
the command line. advbase 0 with advskew 50 makes a lone node MASTER within
3 x 50/256 s (CARP.md: OpenBSD's sub-second setting), which keeps these tests short.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.carp.netns import Cluster, last_lines, node_ip, wait_until

pytestmark = pytest.mark.netns

VIP = "192.0.2.100"
FAST = {"advbase": 0, "advskew": 50}


@pytest.fixture
def cluster(tmp_path):
    with Cluster(tmp_path, nodes=1) as built:
        yield built


@pytest.mark.parametrize("stop_signal", [signal.SIGHUP, signal.SIGQUIT])
def test_ucarps_other_stop_signals_bow_out_and_leave_no_vip_and_sigusr1_logs_the_state(
    cluster, stop_signal
):
    daemon = cluster.carp(1, addr=[VIP], **FAST)
    cluster.wait_holder(VIP, 1, 5)
    cap = cluster.capture()
    # ucarp's SIGUSR1 dumps its state; Python's default would kill us and keep the VIP.
    cluster.send_signal(daemon, signal.SIGUSR1)
    wait_until(lambda: "adverts sent" in cluster.log(daemon), 2, what="the state dump")
    assert daemon.poll() is None
    assert "vhid 42 on eth0: MASTER" in cluster.log(daemon), last_lines(cluster.log(daemon))
    assert cluster.holders(VIP) == [1]
    stopped = time.time()
    assert cluster.stop(daemon, stop_signal) == 0, last_lines(cluster.log(daemon))
    assert cluster.holders(VIP) == []
    last = [(a.advbase, a.advskew) for a in cap.adverts_from(node_ip(1), since=stopped)]
    assert last[-1:] == [(255, 255)]
