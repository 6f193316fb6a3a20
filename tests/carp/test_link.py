"""The raw-socket link's receive path over a stand-in socket (no root, no real socket)."""

from __future__ import annotations

import collections
import ipaddress
import struct

from cluster.carp.link import RECEIVE_BATCH, IPv4Link, LinkCounters


class FloodedSocket:
    """A socket that always has one more packet: a flood at least as fast as we read."""

    def __init__(self, packet: bytes, budget: int = 100_000) -> None:
        self.packet = packet
        self.reads = 0
        self.budget = budget

    def recvmsg(self, _size: int, _ancsize: int):
        self.reads += 1
        if self.reads > self.budget:
            raise AssertionError("receive() kept reading a socket that is never empty")
        return self.packet, [], 0, ("192.0.2.13", 0)


def flooded_link(sock: FloodedSocket) -> IPv4Link:
    link = IPv4Link.__new__(IPv4Link)  # no raw socket: the stand-in is all it reads
    link.interface = "eth0"
    link.source = ipaddress.IPv4Address("192.0.2.11")
    link.ifindex = 2
    link.counters = LinkCounters()
    link._pending = collections.deque()
    link._sock = sock  # type: ignore[assignment]
    return link


def ip_packet(payload: bytes, ttl: int = 255) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, ttl, 112, 0,
        bytes([192, 0, 2, 13]), bytes([224, 0, 0, 18]),
    )  # fmt: skip
    return header + payload


def test_receive_returns_under_a_flood_that_never_empties_the_socket():
    sock = FloodedSocket(ip_packet(b"\x00" * 10))
    link = flooded_link(sock)
    packet = link.receive()
    assert packet is not None
    assert packet.payload == b"\x00" * 10
    assert (str(packet.source), packet.ttl) == ("192.0.2.13", 255)
    # One bounded batch was read, so the runner's loop gets back to its deadlines.
    assert sock.reads == RECEIVE_BATCH
    for _ in range(RECEIVE_BATCH - 1):
        assert link.receive() is not None
    assert sock.reads == RECEIVE_BATCH
