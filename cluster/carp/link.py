"""Raw IP sockets that carry CARP adverts (IP protocol 112), IPv4 and IPv6.

The socket recipe is CARP.md's "Building the raw socket", checked on the wire
against Debian's ucarp:

* IPv4: ``socket(AF_INET, SOCK_RAW, 112)``, multicast TTL 255, multicast
  interface = the node's address, multicast loop off, membership of 224.0.0.18
  on the node's interface. Never ``bind()`` to the unicast address: a bound raw
  socket only receives packets addressed to it and would hear no adverts.
* IPv6: ``socket(AF_INET6, SOCK_RAW, 112)`` to ff02::12 with hop limit 255,
  joined on the interface index; the received hop limit comes from
  ``IPV6_RECVHOPLIMIT`` because an IPv6 raw socket does not see the IP header.

A raw socket sees protocol 112 from every interface in the namespace, so
packets are filtered to the configured interface (``SO_BINDTODEVICE`` in the
kernel, and the ``IP_PKTINFO``/``IPV6_PKTINFO`` index checked again here) and
our own adverts are dropped by source address. The TTL / hop limit is *returned*
rather than checked here, so that the runner counts ``bad_ttl`` with the other
reasons a packet is refused.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import ipaddress
import socket
import struct
import time
from dataclasses import dataclass

from cluster.carp.types import IPAddress, ReceivedPacket
from cluster.carp.wire import CARP_GROUP_V4, CARP_GROUP_V6, CARP_TTL

IPPROTO_CARP = 112

# Linux constants that the socket module does not export on every build.
_SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
_IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
_IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
_IPV6_RECVHOPLIMIT = getattr(socket, "IPV6_RECVHOPLIMIT", 51)
_IPV6_HOPLIMIT = getattr(socket, "IPV6_HOPLIMIT", 52)
# The kernel's receive time of each packet, as a struct timespec (CLOCK_REALTIME).
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("qq")
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
RECEIVE_BUFFER = 8 * 1024 * 1024  # bytes: about ten seconds of 255 vhosts' adverts

_Ancillary = list[tuple[int, int, bytes]]
_SockAddr = tuple[str, int] | tuple[str, int, int, int]

# Big enough for any advert plus IP options; CARP adverts are 20 + 36 bytes.
_RECV_SIZE = 2048
_ANC_SIZE = socket.CMSG_SPACE(64) * 2
# recvmsg calls per `receive` refill: small, so that a flood cannot hold the loop.
RECEIVE_BATCH = 64


@dataclass(slots=True)
class LinkCounters:
    """Packets the link itself dropped before the runner saw them."""

    received: int = 0
    sent: int = 0
    own: int = 0  # our own advert (multicast loop is off, so this should stay 0)
    other_interface: int = 0
    truncated_ip: int = 0


class RawLink:
    """Common part of the IPv4 and IPv6 links: a non-blocking raw socket."""

    family: socket.AddressFamily
    group: IPAddress

    def __init__(self, interface: str, source: IPAddress) -> None:
        self.interface = interface
        self.source = source
        self.ifindex = socket.if_nametoindex(interface)
        self.counters = LinkCounters()
        self._pending: collections.deque[ReceivedPacket] = collections.deque()
        self._sock = socket.socket(self.family, socket.SOCK_RAW, IPPROTO_CARP)
        try:
            self._sock.setblocking(False)
            # Kernel-side interface filter; the pktinfo check below is the belt to these braces.
            self._sock.setsockopt(socket.SOL_SOCKET, _SO_BINDTODEVICE, interface.encode() + b"\0")
            # Events in the order they happened (DESIGN.md): the runner orders adverts
            # and its own deadlines by the time the kernel received each packet, not
            # by when a busy process got round to reading it.
            self._sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            # Room for seconds of adverts: a node busy taking over or giving back
            # hundreds of VIPs reads late, and an advert the kernel drops for want of
            # buffer is a master that looks dead (255 vhosts: 255 adverts a second).
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, RECEIVE_BUFFER)
            except PermissionError:  # without CAP_NET_ADMIN: up to net.core.rmem_max
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            self._configure()
        except BaseException:
            self._sock.close()
            raise

    def _configure(self) -> None:
        raise NotImplementedError

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def send(self, vhid: int, payload: bytes) -> None:
        """Send one advert to the CARP multicast group on our interface."""
        self._sock.sendto(payload, self._destination())
        self.counters.sent += 1

    def _destination(self) -> tuple[str, int] | tuple[str, int, int, int]:
        raise NotImplementedError

    def receive(self) -> ReceivedPacket | None:
        """One waiting packet from our interface that is not ours, or None (never blocks)."""
        if not self._pending:
            self._pending.extend(self.drain(RECEIVE_BATCH))
        return self._pending.popleft() if self._pending else None

    def drain(self, limit: int | None = None) -> list[ReceivedPacket]:
        """The packets waiting on the socket, at most ``limit`` reads (never blocks).

        Bounded for `receive`: under a flood that arrives at least as fast as we
        read, an unbounded drain never finds the socket empty and never returns,
        so the loop would send no adverts and the backup would take over.
        """
        packets: list[ReceivedPacket] = []
        reads = 0
        # The kernel stamps packets on the wall clock; the runner's clock is monotonic.
        offset = time.monotonic() - time.time()
        while limit is None or reads < limit:
            reads += 1
            try:
                data, ancdata, _flags, address = self._sock.recvmsg(_RECV_SIZE, _ANC_SIZE)
            except (BlockingIOError, InterruptedError):
                return packets
            except OSError as exc:
                # An ICMP error queued on the socket (e.g. after the link went away) is
                # reported once by recvmsg; it says nothing about the next packet.
                if exc.errno in (errno.ENETDOWN, errno.ENXIO, errno.EHOSTUNREACH):
                    continue
                raise
            self.counters.received += 1
            packet = self._parse(data, ancdata, address)
            if packet is not None:
                packets.append(_stamped(packet, ancdata, offset))
        return packets

    def _parse(self, data: bytes, ancdata: _Ancillary, address: _SockAddr) -> ReceivedPacket | None:
        raise NotImplementedError

    def __enter__(self) -> RawLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stamped(packet: ReceivedPacket, ancdata: _Ancillary, offset: float) -> ReceivedPacket:
    """``packet`` with its kernel receive time on the monotonic clock (``offset`` =
    monotonic - wall clock), when the kernel gave one."""
    for level, kind, value in ancdata:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(value) >= 16:
            seconds, nanoseconds = _TIMESPEC.unpack_from(value)
            return dataclasses.replace(packet, at=seconds + nanoseconds / 1e9 + offset)
    return packet


class IPv4Link(RawLink):
    """CARP over IPv4: 224.0.0.18, TTL 255 (CARP.md)."""

    family = socket.AF_INET
    group = CARP_GROUP_V4

    def _configure(self) -> None:
        s = self._sock
        if not isinstance(self.source, ipaddress.IPv4Address):
            raise ValueError(f"IPv4 link needs an IPv4 source address, not {self.source}")
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, CARP_TTL)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        # The source address of our adverts comes from IP_MULTICAST_IF (CARP.md: no bind()).
        # struct ip_mreqn {imr_multiaddr, imr_address, imr_ifindex}
        s.setsockopt(
            socket.IPPROTO_IP,
            socket.IP_MULTICAST_IF,
            struct.pack("4s4si", b"\0" * 4, self.source.packed, self.ifindex),
        )
        s.setsockopt(
            socket.IPPROTO_IP,
            socket.IP_ADD_MEMBERSHIP,
            struct.pack("4s4si", self.group.packed, self.source.packed, self.ifindex),
        )
        s.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)

    def _destination(self) -> tuple[str, int]:
        return (str(self.group), 0)

    def _parse(self, data: bytes, ancdata: _Ancillary, address: _SockAddr) -> ReceivedPacket | None:
        for level, kind, value in ancdata:
            # struct in_pktinfo {int ipi_ifindex; in_addr ipi_spec_dst; in_addr ipi_addr}
            if level == socket.IPPROTO_IP and kind == _IP_PKTINFO and len(value) >= 4:
                (ifindex,) = struct.unpack_from("i", value)
                if ifindex != self.ifindex:
                    self.counters.other_interface += 1
                    return None
        # An IPv4 raw socket hands us the IP header: TTL at byte 8, source at 12..15.
        if len(data) < 20:
            self.counters.truncated_ip += 1
            return None
        header_length = (data[0] & 0x0F) * 4
        if header_length < 20 or len(data) < header_length:
            self.counters.truncated_ip += 1
            return None
        source = ipaddress.IPv4Address(data[12:16])
        if source == self.source:
            self.counters.own += 1
            return None
        return ReceivedPacket(data[header_length:], source, data[8], self.interface)


class IPv6Link(RawLink):
    """CARP over IPv6: ff02::12, hop limit 255 (CARP.md)."""

    family = socket.AF_INET6
    group = CARP_GROUP_V6

    def __init__(
        self, interface: str, source: IPAddress, own: frozenset[IPAddress] = frozenset()
    ) -> None:
        # The kernel picks our link-local address as the source of link-scope multicast,
        # so "our own adverts" means any address of ours, not only the configured one.
        self.own = frozenset({source, *own})
        super().__init__(interface, source)

    def _configure(self) -> None:
        s = self._sock
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, CARP_TTL)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.ifindex)
        # struct ipv6_mreq {in6_addr ipv6mr_multiaddr; unsigned int ipv6mr_interface}
        s.setsockopt(
            socket.IPPROTO_IPV6,
            socket.IPV6_JOIN_GROUP,
            struct.pack("16sI", self.group.packed, self.ifindex),
        )
        s.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVHOPLIMIT, 1)
        s.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVPKTINFO, 1)

    def _destination(self) -> tuple[str, int, int, int]:
        return (str(self.group), 0, 0, self.ifindex)

    def send(self, vhid: int, payload: bytes) -> None:
        """Send from the configured address, not the link-local one the kernel would pick.

        The tie-break on equal intervals compares source addresses (CARP.md), so the
        address peers see must be the one our state machine compares with.
        """
        pktinfo = struct.pack("16sI", self.source.packed, self.ifindex)
        self._sock.sendmsg(
            [payload], [(socket.IPPROTO_IPV6, _IPV6_PKTINFO, pktinfo)], 0, self._destination()
        )
        self.counters.sent += 1

    def _parse(self, data: bytes, ancdata: _Ancillary, address: _SockAddr) -> ReceivedPacket | None:
        hop_limit = -1  # never 255: a packet without the ancillary datum is refused
        for level, kind, value in ancdata:
            if level != socket.IPPROTO_IPV6:
                continue
            if kind == _IPV6_HOPLIMIT and len(value) >= 4:
                (hop_limit,) = struct.unpack_from("i", value)
            elif kind == _IPV6_PKTINFO and len(value) >= 20:
                # struct in6_pktinfo {in6_addr ipi6_addr; unsigned int ipi6_ifindex}
                (ifindex,) = struct.unpack_from("I", value, 16)
                if ifindex != self.ifindex:
                    self.counters.other_interface += 1
                    return None
        # The source of a link-local sender comes back as "fe80::1%eth0": drop the zone.
        source = ipaddress.IPv6Address(str(address[0]).split("%", 1)[0])
        if source in self.own:
            self.counters.own += 1
            return None
        return ReceivedPacket(data, source, hop_limit, self.interface)


def open_link(interface: str, source: IPAddress) -> RawLink:
    """The link for the family of ``source``."""
    if isinstance(source, ipaddress.IPv4Address):
        return IPv4Link(interface, source)
    return IPv6Link(interface, source, own=interface_addresses_v6(interface))


def interface_addresses_v6(interface: str) -> frozenset[IPAddress]:
    """Our IPv6 addresses on ``interface`` (link-local included), from /proc/net/if_inet6."""
    found: set[IPAddress] = set()
    try:
        with open("/proc/net/if_inet6") as table:
            for line in table:
                fields = line.split()
                if len(fields) >= 6 and fields[5] == interface:
                    found.add(ipaddress.IPv6Address(bytes.fromhex(fields[0])))
    except OSError:
        pass
    return frozenset(found)
