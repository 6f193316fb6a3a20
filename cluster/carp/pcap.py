"""Read CARP adverts out of a packet capture and say whether each one verifies.

The tool an administrator needs when a peer logs "Bad digest": give it the
capture, the password and the virtual addresses, and it shows every
protocol-112 packet with its fields, TTL, checksum and HMAC verdicts. A
capture of a segment with several clusters holds adverts of other vhids, with
other passwords and addresses: select the ones to check by vhid; the report
says which vhids the capture held.

Pure and stdlib only. Reads classic libpcap files (either byte order,
microsecond or nanosecond timestamps) and pcapng (section, interface and
enhanced/simple packet blocks), with link types Ethernet (VLAN tags
skipped), Linux cooked SLL and SLL2 (`tcpdump -i any`) and raw IP; IPv4 and
IPv6 (hop-by-hop, routing and destination options headers skipped).

Public API:
    read_packets(data: bytes) -> list[CarpPacket]        protocol-112 packets in a capture
    read_file(path) -> list[CarpPacket]
    vhid_of(packet) -> int | None                         byte 1 of the header
    select_vhids(packets, vhids) -> (selected, skipped)
    inspect(packets, password=None, addresses=()) -> list[Inspection]
    decode_file(path, password=None, addresses=(), vhids=None) -> list[Inspection]
    format_report(inspections, skipped=()) -> str         one line per packet plus a summary
PcapError is raised for a file that is not a capture we can read.
"""

from __future__ import annotations

import datetime
import enum
import ipaddress
import itertools
import struct
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cluster.carp import wire
from cluster.carp.types import Advertisement, IPAddress

__all__ = [
    "CarpPacket",
    "Inspection",
    "LinkType",
    "PcapError",
    "decode_file",
    "format_report",
    "inspect",
    "read_file",
    "read_packets",
    "select_vhids",
    "vhid_of",
]

IPPROTO_CARP = 112

_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_IPV6 = 0x86DD
_ETHERTYPE_VLAN = frozenset({0x8100, 0x88A8, 0x9100})
_IPV6_SKIPPABLE = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options

_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_PCAPNG_SHB = 0x0A0D0D0A
# A failed HMAC is retried with subsets of the addresses up to this many (2**8 tries).
_MAX_SUBSET_SEARCH = 8


class PcapError(ValueError):
    """Not a capture this module can read (bad magic, truncated header, unknown link type)."""


class LinkType(enum.IntEnum):
    """The link-layer header types we understand (tcpdump.org/linktypes.html)."""

    ETHERNET = 1
    RAW = 101
    LINUX_SLL = 113
    LINUX_SLL2 = 276


@dataclass(frozen=True, slots=True)
class CarpPacket:
    """One protocol-112 packet from a capture: where it was and what it carried."""

    frame: int  # 1-based position of the frame in the capture, as tcpdump/wireshark count
    timestamp: float  # seconds since the epoch
    source: IPAddress
    destination: IPAddress
    ttl: int  # IPv4 TTL or IPv6 hop limit
    payload: bytes


@dataclass(frozen=True, slots=True)
class Inspection:
    """The verdicts on one CarpPacket.

    `advert` is None only when the payload is too short to hold the fields.
    `error` is the first failed check: `wire.decode`'s (the HMAC only when a
    password was given), then the TTL (BAD_TTL). None: the advert is valid
    (without a password: valid but for the unchecked HMAC). `hmac_ok` is
    None when no password was given. `hint` explains a failed HMAC when it can.
    """

    packet: CarpPacket
    advert: Advertisement | None
    error: wire.DecodeFailure | None
    checksum_ok: bool
    hmac_ok: bool | None
    hint: str = ""


# ---- capture files ----


def read_file(path: str | Path) -> list[CarpPacket]:
    return read_packets(Path(path).read_bytes())


def read_packets(data: bytes) -> list[CarpPacket]:
    """Every protocol-112 IPv4/IPv6 packet in a classic pcap or pcapng capture, in order."""
    if len(data) < 4:
        raise PcapError("too short to be a capture")
    if data[:4] in _PCAP_MAGIC:
        frames = _classic_frames(data)
    elif struct.unpack_from("<I", data)[0] == _PCAPNG_SHB:
        frames = _pcapng_frames(data)
    else:
        raise PcapError(f"not a pcap or pcapng file (magic {data[:4].hex()})")
    packets = []
    for number, (timestamp, linktype, frame) in enumerate(frames, start=1):
        packet = _carp_from_frame(number, timestamp, linktype, frame)
        if packet is not None:
            packets.append(packet)
    return packets


def _classic_frames(data: bytes) -> Iterator[tuple[float, int, bytes]]:
    """libpcap format: 24-byte file header, then 16-byte record headers."""
    order, resolution = _PCAP_MAGIC[data[:4]]
    if len(data) < 24:
        raise PcapError("truncated pcap file header")
    linktype = struct.unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF
    offset = 24
    while offset + 16 <= len(data):
        seconds, fraction, caplen, _wirelen = struct.unpack_from(order + "IIII", data, offset)
        offset += 16
        frame = data[offset : offset + caplen]
        offset += caplen
        yield seconds + fraction * resolution, linktype, frame


def _pcapng_frames(data: bytes) -> Iterator[tuple[float, int, bytes]]:
    """pcapng: blocks of (type, length, body, length); byte order set by each section."""
    offset = 0
    order = "<"
    interfaces: list[tuple[int, float]] = []  # (linktype, seconds per timestamp unit)
    while offset + 12 <= len(data):
        block_type = struct.unpack_from(order + "I", data, offset)[0]
        if block_type == _PCAPNG_SHB:
            magic = data[offset + 8 : offset + 12]
            order = "<" if magic == b"\x4d\x3c\x2b\x1a" else ">"
            interfaces = []
        length = struct.unpack_from(order + "I", data, offset + 4)[0]
        if length < 12 or offset + length > len(data):
            raise PcapError(f"truncated pcapng block at byte {offset}")
        body = data[offset + 8 : offset + length - 4]
        offset += length
        if block_type == 1:  # interface description
            linktype = struct.unpack_from(order + "H", body)[0]
            interfaces.append((linktype, _pcapng_resolution(body[8:], order)))
        elif block_type == 6:  # enhanced packet
            iface, high, low, caplen = struct.unpack_from(order + "IIII", body)
            if iface >= len(interfaces):
                raise PcapError(f"packet on undeclared interface {iface}")
            linktype, unit = interfaces[iface]
            yield ((high << 32) | low) * unit, linktype, body[20 : 20 + caplen]
        elif block_type == 3 and interfaces:  # simple packet: no timestamp
            yield 0.0, interfaces[0][0], body[4:]


def _pcapng_resolution(options: bytes, order: str) -> float:
    """The if_tsresol option (code 9); microseconds by default."""
    offset = 0
    while offset + 4 <= len(options):
        code, length = struct.unpack_from(order + "HH", options, offset)
        if code == 0:
            break
        if code == 9 and length >= 1:
            value = options[offset + 4]
            return 2.0 ** -(value & 0x7F) if value & 0x80 else 10.0**-value
        offset += 4 + (length + 3) // 4 * 4
    return 1e-6


# ---- link and network layers ----


def _carp_from_frame(
    number: int, timestamp: float, linktype: int, frame: bytes
) -> CarpPacket | None:
    network = _network_layer(linktype, frame)
    if network is None:
        return None
    ethertype, packet = network
    if ethertype == _ETHERTYPE_IPV4:
        return _carp_from_ipv4(number, timestamp, packet)
    if ethertype == _ETHERTYPE_IPV6:
        return _carp_from_ipv6(number, timestamp, packet)
    return None


def _network_layer(linktype: int, frame: bytes) -> tuple[int, bytes] | None:
    """(ethertype, network-layer bytes) of a frame, or None if it carries no IP."""
    if linktype == LinkType.ETHERNET:
        if len(frame) < 14:
            return None
        offset = 12
        ethertype = int.from_bytes(frame[offset : offset + 2], "big")
        while ethertype in _ETHERTYPE_VLAN and len(frame) >= offset + 6:
            offset += 4
            ethertype = int.from_bytes(frame[offset : offset + 2], "big")
        return ethertype, frame[offset + 2 :]
    if linktype == LinkType.LINUX_SLL:
        if len(frame) < 16:
            return None
        return int.from_bytes(frame[14:16], "big"), frame[16:]
    if linktype == LinkType.LINUX_SLL2:
        if len(frame) < 20:
            return None
        return int.from_bytes(frame[0:2], "big"), frame[20:]
    if linktype == LinkType.RAW:
        if not frame:
            return None
        version = frame[0] >> 4
        return (_ETHERTYPE_IPV4 if version == 4 else _ETHERTYPE_IPV6), frame
    raise PcapError(f"link type {linktype} is not supported")


def _carp_from_ipv4(number: int, timestamp: float, packet: bytes) -> CarpPacket | None:
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    header_len = (packet[0] & 0x0F) * 4
    total_len = int.from_bytes(packet[2:4], "big")
    fragment = int.from_bytes(packet[6:8], "big")
    if packet[9] != IPPROTO_CARP or fragment & 0x3FFF or header_len < 20:
        return None  # not CARP, or a fragment (adverts are never fragmented)
    return CarpPacket(
        frame=number,
        timestamp=timestamp,
        source=ipaddress.IPv4Address(packet[12:16]),
        destination=ipaddress.IPv4Address(packet[16:20]),
        ttl=packet[8],
        payload=packet[header_len : max(total_len, header_len)],
    )


def _carp_from_ipv6(number: int, timestamp: float, packet: bytes) -> CarpPacket | None:
    if len(packet) < 40 or packet[0] >> 4 != 6:
        return None
    payload_len = int.from_bytes(packet[4:6], "big")
    next_header = packet[6]
    offset = 40
    end = 40 + payload_len
    while next_header in _IPV6_SKIPPABLE and offset + 8 <= len(packet):
        next_header, ext_len = packet[offset], (packet[offset + 1] + 1) * 8
        offset += ext_len
    if next_header != IPPROTO_CARP:
        return None
    return CarpPacket(
        frame=number,
        timestamp=timestamp,
        source=ipaddress.IPv6Address(packet[8:24]),
        destination=ipaddress.IPv6Address(packet[24:40]),
        ttl=packet[7],
        payload=packet[offset:end],
    )


# ---- selection by vhid ----


def vhid_of(packet: CarpPacket) -> int | None:
    """The vhid byte of the header, or None when the packet is too short to hold it."""
    return packet.payload[1] if len(packet.payload) >= 2 else None


def select_vhids(
    packets: Iterable[CarpPacket], vhids: Collection[int]
) -> tuple[list[CarpPacket], list[CarpPacket]]:
    """(the packets of these vhids, the others), each in capture order.

    A packet too short to carry a vhid belongs to no selection.
    """
    selected: list[CarpPacket] = []
    skipped: list[CarpPacket] = []
    for packet in packets:
        (selected if vhid_of(packet) in vhids else skipped).append(packet)
    return selected, skipped


def _of_vhids(packets: Iterable[CarpPacket]) -> str:
    """' of vhid 42', or ' of vhids 7 (10), 42 (25)' with the packets of each; '' for none.

    Packets too short to carry a vhid are counted apart.
    """
    counts = Counter(map(vhid_of, packets))
    short = counts.pop(None, 0)
    vhids = sorted(v for v in counts if v is not None)
    text = ""
    if len(vhids) == 1 and not short:
        text = f" of vhid {vhids[0]}"
    elif vhids:
        each = ", ".join(f"{v} ({counts[v]})" for v in vhids)
        text = f" of vhid{'s' if len(vhids) > 1 else ''} {each}"
    if short:
        text += f"{' and' if text else ','} {short} too short for a vhid"
    return text


# ---- verdicts ----


AddressLike = wire.AddressLike


def inspect(
    packets: Iterable[CarpPacket],
    password: bytes | None = None,
    addresses: Sequence[AddressLike] = (),
) -> list[Inspection]:
    """Check each packet as `wire.decode` would; with no password, skip only the HMAC."""
    return [_inspect_one(p, password, addresses) for p in packets]


def decode_file(
    path: str | Path,
    password: bytes | None = None,
    addresses: Sequence[AddressLike] = (),
    vhids: Collection[int] | None = None,
) -> list[Inspection]:
    """Inspect the CARP packets of a capture; only those of `vhids` unless it is None."""
    packets = read_file(path)
    if vhids is not None:
        packets, _ = select_vhids(packets, vhids)
    return inspect(packets, password, addresses)


def _inspect_one(
    packet: CarpPacket, password: bytes | None, addresses: Sequence[AddressLike]
) -> Inspection:
    try:
        advert = wire.parse(packet.payload)
    except wire.DecodeError as exc:
        return Inspection(packet, None, exc.reason, checksum_ok=False, hmac_ok=None)
    checksum_ok = wire.checksum_ok(packet.payload)
    error: wire.DecodeFailure | None = None
    try:
        wire.decode_unverified(packet.payload)
    except wire.DecodeError as exc:
        error = exc.reason
    hmac_ok: bool | None = None
    hint = ""
    if password is not None:
        hmac_ok = wire.verify_hmac(advert, password, addresses)
        if not hmac_ok:
            hint = _hmac_hint(advert, password, addresses)
            error = error or wire.DecodeFailure.BAD_HMAC
    if packet.ttl != wire.CARP_TTL:
        error = error or wire.DecodeFailure.BAD_TTL
    return Inspection(packet, advert, error, checksum_ok, hmac_ok, hint)


def _hmac_hint(advert: Advertisement, password: bytes, addresses: Sequence[AddressLike]) -> str:
    """Why a digest might not match: the peer hashes a different set of addresses.

    ucarp hashes exactly one IPv4 address; FreeBSD hashes all of the vhid's
    (CARP.md "The HMAC"). Try every smaller subset of the given addresses
    (only single addresses when there are many).
    """
    if not addresses:
        return "no virtual addresses given: the digest covers the vhid's addresses"
    sizes = range(len(addresses) - 1, 0, -1) if len(addresses) <= _MAX_SUBSET_SEARCH else [1]
    for size in sizes:
        for subset in itertools.combinations(addresses, size):
            if wire.verify_hmac(advert, password, subset):
                shown = ", ".join(str(wire.host_ip(a)) for a in subset)
                return f"verifies with only {shown}: the peer has other addresses for this vhid"
    return "wrong password, or the peer has other addresses for this vhid"


def _verdict(ok: bool | None) -> str:
    return {True: "ok", False: "BAD", None: "not checked"}[ok]


def _format_one(item: Inspection) -> str:
    packet = item.packet
    when = datetime.datetime.fromtimestamp(packet.timestamp, tz=datetime.UTC)
    head = f"#{packet.frame} {when:%H:%M:%S.%f} {packet.source} > {packet.destination}"
    ttl = f"ttl {packet.ttl}" + ("" if packet.ttl == wire.CARP_TTL else " (BAD: must be 255)")
    advert = item.advert
    if advert is None:
        return f"{head} {ttl} {len(packet.payload)} bytes: too short for CARP"
    fields = (
        f"v{advert.version} type {advert.type} vhid {advert.vhid} advbase {advert.advbase} "
        f"advskew {advert.advskew} ({advert.interval:.3f}s) demote {advert.demote} "
        f"authlen {advert.authlen} counter {advert.counter:#018x}"
    )
    if advert.is_bow_out:
        fields += " [bow-out]"
    verdicts = f"checksum {_verdict(item.checksum_ok)}, hmac {_verdict(item.hmac_ok)}"
    problems = ""
    if item.error is not None and item.error not in (
        wire.DecodeFailure.BAD_CHECKSUM,
        wire.DecodeFailure.BAD_HMAC,
        wire.DecodeFailure.BAD_TTL,
    ):
        problems = f" [{item.error.value}]"
    if item.hint:
        problems += f" ({item.hint})"
    return f"{head} {ttl} {fields}: {verdicts}{problems}"


def format_report(inspections: Sequence[Inspection], skipped: Sequence[CarpPacket] = ()) -> str:
    """One line per packet, then a summary line; what `python -m cluster.carp decode` prints.

    The summary names the vhids of the packets (with the count of each when
    there are several). `skipped` are the packets left out by a vhid selection:
    a last line counts them by vhid.
    """
    lines = [_format_one(item) for item in inspections]
    valid = sum(1 for i in inspections if i.error is None)
    checksum_ok = sum(1 for i in inspections if i.checksum_ok)
    of_vhids = _of_vhids(i.packet for i in inspections)
    summary = f"{len(inspections)} CARP packet(s){of_vhids}: {checksum_ok} checksum ok"
    checked = [i for i in inspections if i.hmac_ok is not None]
    if checked:
        hmac_ok = sum(1 for i in checked if i.hmac_ok)
        summary += f", {hmac_ok} of {len(checked)} hmac ok, {valid} fully valid"
    else:
        summary += ", hmac not checked (no password given)"
    lines.append(summary)
    if skipped:
        lines.append(f"skipped {len(skipped)} CARP packet(s){_of_vhids(skipped)} (not selected)")
    return "\n".join(lines)
