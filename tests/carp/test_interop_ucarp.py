"""A mixed cluster: our daemon and Debian's ucarp on one vhid with one IPv4 VIP (root only).

ucarp reads packets through libpcap without immediate mode and sees adverts up
to about 1 s late (CARP.md), so its takeovers and step-downs get a second or two
more than the protocol's formula. Its link stays up throughout: ucarp exits on a
link flap (CARP.md). `scripts/ensure-debian.sh ucarp tcpdump` installs it.
"""

from __future__ import annotations

import shutil
import signal

import pytest

from tests.carp.netns import Cluster, last_lines, node_ip, wait_until

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("ucarp") is None, reason="needs Debian's ucarp"),
]

VIP = "192.0.2.100"
OURS, THEIRS = 1, 2  # node 1 runs our daemon, node 2 runs ucarp
ELECTION = 3 + 100 / 256 + 2.0  # master-down interval plus ucarp's late delivery
UCARP_LAG = 1.5


@pytest.fixture
def cluster(tmp_path):
    with Cluster(tmp_path, nodes=2) as built:
        yield built


def test_ucarp_takes_over_when_ours_is_killed_and_ours_preempts_it_back(cluster):
    ours = cluster.carp(OURS, addr=[VIP], advskew=0)
    ucarp = cluster.ucarp(THEIRS, VIP, advskew=100)
    cluster.wait_holder(VIP, OURS, ELECTION)
    # One master: ucarp stays BACKUP while our adverts (interval 1 s < its 1.39 s) arrive.
    wait_until(lambda: "MASTER" not in cluster.log(ucarp), 0.1, what="ucarp staying BACKUP")
    cluster.stop(ours, signal.SIGKILL)
    wait_until(
        lambda: THEIRS in cluster.holders(VIP),
        3 + 100 / 256 + UCARP_LAG + 1,
        what="ucarp taking the VIP",
    )
    # The Primary returns: it removes the VIP its crash left, then preempts the slower ucarp.
    ours = cluster.carp(OURS, addr=[VIP], advskew=0)
    cluster.wait_holder(VIP, OURS, 1 + 100 / 256 + UCARP_LAG + 2)
    assert "BACKUP -> MASTER (preempted)" in cluster.log(ours), last_lines(cluster.log(ours))


def test_ours_takes_over_when_ucarp_is_killed_and_ucarp_preempts_it_back(cluster):
    ucarp = cluster.ucarp(THEIRS, VIP, advskew=0)
    ours = cluster.carp(OURS, addr=[VIP], advskew=100)
    cluster.wait_holder(VIP, THEIRS, ELECTION)
    cluster.stop(ucarp, signal.SIGKILL)
    # SIGKILL leaves ucarp's VIP in place (no downscript): wait for ours to add its own.
    wait_until(
        lambda: OURS in cluster.holders(VIP), 3 + 100 / 256 + 1.0, what="ours taking the VIP"
    )
    assert "BACKUP -> MASTER (master_down)" in cluster.log(ours)
    # ucarp returns (its start-up downscript clears the stale VIP) and preempts ours.
    ucarp = cluster.ucarp(THEIRS, VIP, advskew=0)
    cluster.wait_holder(VIP, THEIRS, 1 + 100 / 256 + UCARP_LAG + 2)
    assert "MASTER -> BACKUP (higher_priority_seen)" in cluster.log(ours)


def test_a_wrong_password_is_refused_on_both_sides_with_a_logged_reason(cluster):
    ours = cluster.carp(OURS, addr=[VIP], advskew=0, password="s3cret")
    ucarp = cluster.ucarp(THEIRS, VIP, advskew=100, password="wrong")
    # Neither accepts the other's adverts, so both end up MASTER: the split brain a
    # password mismatch causes, and the logs say why.
    wait_until(lambda: cluster.holders(VIP) == [OURS, THEIRS], ELECTION + 1, what="both MASTER")
    wait_until(lambda: "bad_hmac" in cluster.log(ours), 2, what="bad_hmac in our log")
    assert f"from {node_ip(THEIRS)}" in cluster.log(ours)
    wait_until(lambda: "Bad digest" in cluster.log(ucarp), 3, what="ucarp's Bad digest")
