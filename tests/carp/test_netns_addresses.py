"""`NetlinkAddresses` against a real kernel, in a namespace of its own (root only).

The adapter writes its rtnetlink requests itself, many per send: these check that
the kernel does what ``ip addr replace/del`` would, for every address of a batch,
and that a failure in the middle of a batch neither hides the error nor stops the
other addresses.
"""

from __future__ import annotations

import ipaddress
import subprocess

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from cluster.carp.netlink import BATCH, NetlinkAddresses
from tests.carp.netns import Cluster, in_netns

pytestmark = pytest.mark.netns

# More than two batches of requests, so that the acks of several sends are collected.
MANY = [ipaddress.ip_interface(f"198.51.100.{n}/32") for n in range(1, 2 * BATCH + 20)]


def ip_addresses(ns: str) -> list[str]:
    shown = subprocess.run(
        ["ip", "-n", ns, "-o", "addr", "show", "dev", "eth0"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split()[3] for line in shown.splitlines()]


def test_hundreds_of_addresses_are_added_and_removed_in_batches_and_both_are_idempotent(
    tmp_path,
):
    with Cluster(tmp_path, nodes=1) as cluster:
        ns = cluster.ns(1)
        addresses = NetlinkAddresses()

        def add_twice_then_list() -> set[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
            addresses.add("eth0", MANY)
            addresses.add("eth0", MANY[:3])  # already there: replaced, no EEXIST
            return addresses.list("eth0")

        try:
            listed = in_netns(ns, add_twice_then_list)
            assert set(MANY) <= listed
            shown = ip_addresses(ns)
            assert all(str(a) in shown for a in MANY)
            assert sum(a.startswith("198.51.100.") for a in shown) == len(MANY)

            def remove_twice() -> None:
                addresses.remove("eth0", MANY)
                addresses.remove("eth0", MANY[:3])  # gone already: EADDRNOTAVAIL is success

            in_netns(ns, remove_twice)
            assert not any(a.startswith("198.51.100.") for a in ip_addresses(ns))
            assert cluster.addresses(1)  # the node's own address stays
        finally:
            addresses.close()


def test_an_address_present_with_another_prefix_is_removed_with_that_prefix(tmp_path):
    with Cluster(tmp_path, nodes=1) as cluster:
        ns = cluster.ns(1)
        subprocess.run(
            ["ip", "-n", ns, "addr", "add", "198.51.100.9/24", "dev", "eth0"], check=True
        )
        addresses = NetlinkAddresses()
        try:
            in_netns(
                ns, lambda: addresses.remove("eth0", [ipaddress.ip_interface("198.51.100.9/32")])
            )
            assert "198.51.100.9/24" not in ip_addresses(ns)
        finally:
            addresses.close()


def test_ipv6_addresses_are_usable_at_once_without_duplicate_address_detection(tmp_path):
    with Cluster(tmp_path, nodes=1) as cluster:
        ns = cluster.ns(1)
        vips = [ipaddress.ip_interface(f"2001:db8::{n:x}/128") for n in range(1, 6)]
        addresses = NetlinkAddresses()
        try:
            in_netns(ns, lambda: addresses.add("eth0", vips))
            shown = subprocess.run(
                ["ip", "-n", ns, "-6", "-o", "addr", "show", "dev", "eth0"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            for vip in vips:
                line = next(line for line in shown.splitlines() if f" {vip} " in line)
                assert "tentative" not in line
                assert "nodad" in line
        finally:
            addresses.close()


def test_a_failed_request_in_a_batch_is_raised_after_the_others_were_done(tmp_path):
    with Cluster(tmp_path, nodes=1) as cluster:
        ns = cluster.ns(1)
        good = [
            ipaddress.ip_interface("198.51.100.1/32"),
            ipaddress.ip_interface("198.51.100.3/32"),
        ]
        # The kernel refuses an IPv6 multicast address on an interface (EADDRNOTAVAIL).
        bad = ipaddress.ip_interface("ff02::77/128")
        addresses = NetlinkAddresses()
        try:
            with pytest.raises(NetlinkError):
                in_netns(ns, lambda: addresses.add("eth0", [good[0], bad, good[1]]))
            shown = ip_addresses(ns)
            assert "198.51.100.1/32" in shown
            assert "198.51.100.3/32" in shown
        finally:
            addresses.close()
