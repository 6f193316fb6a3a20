"""The takeover frames, checked against scapy's independent parser (no root, no socket)."""

from __future__ import annotations

import ipaddress

from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether

from cluster.carp.arp import gratuitous_arp, unsolicited_na

MAC = bytes.fromhex("020000000a0b")


def test_gratuitous_arp_announces_the_vip_as_sender_and_target_to_broadcast() -> None:
    frame = Ether(gratuitous_arp(MAC, ipaddress.IPv4Address("192.0.2.100")))
    assert frame.dst == "ff:ff:ff:ff:ff:ff"
    assert frame.src == "02:00:00:00:0a:0b"
    arp = frame[ARP]
    assert arp.op == 1
    assert arp.psrc == arp.pdst == "192.0.2.100"
    assert arp.hwsrc == "02:00:00:00:0a:0b"


def test_gratuitous_arp_is_padded_to_the_ethernet_minimum() -> None:
    assert len(gratuitous_arp(MAC, ipaddress.IPv4Address("192.0.2.100"))) == 60


def test_unsolicited_na_overrides_caches_and_its_checksum_verifies() -> None:
    raw = unsolicited_na(MAC, ipaddress.IPv6Address("2001:db8::100"))
    frame = Ether(raw)
    assert frame.dst == "33:33:00:00:00:01"
    ip6 = frame[IPv6]
    assert (ip6.src, ip6.dst, ip6.hlim) == ("2001:db8::100", "ff02::1", 255)
    na = frame[ICMPv6ND_NA]
    assert (na.R, na.S, na.O) == (0, 0, 1)
    assert na.tgt == "2001:db8::100"
    assert frame[ICMPv6NDOptDstLLAddr].lladdr == "02:00:00:00:0a:0b"
    # scapy recomputes the checksum over the pseudo-header when it is unset.
    sent = na.cksum
    del na.cksum
    assert Ether(bytes(frame))[ICMPv6ND_NA].cksum == sent
