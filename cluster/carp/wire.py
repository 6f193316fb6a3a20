"""Encode and decode CARP v2 advertisements: the 36-byte header, checksum, counter, HMAC.

Pure and stdlib only. Every fact here is from CARP.md "The advertisement",
checked against adverts a real ucarp sent (tests/carp/data/). scapy is not
used: its CARP HMAC helper matches no real peer (CARP.md).

Public API:
    encode(vhid, advbase, advskew, demote, counter, password, addresses) -> bytes
    decode(data, password, addresses) -> Advertisement      every check, or DecodeError
    decode_unverified(data) -> Advertisement                 every check but the HMAC
    parse(data) -> Advertisement                             only the length; for the pcap tool
    verify_hmac(advert, password, addresses) -> bool
    compute_hmac(password, vhid, addresses, counter) -> bytes
    hmac_message(vhid, addresses, counter) -> bytes
    host_ip(address) -> the address without its prefix
    checksum_ok(data) -> bool,  internet_checksum(data) -> int
    pack(advert) -> bytes                                    the fields as given, checksum filled in
    check_ttl(ttl)                                           DecodeError(BAD_TTL) unless 255
DecodeError.reason is a DecodeFailure naming the check that failed.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import struct
from collections.abc import Iterable

from cluster.carp.types import (
    CARP_AUTHLEN,
    CARP_TYPE_ADVERTISEMENT,
    CARP_VERSION,
    Advertisement,
    IPAddress,
    IPInterface,
)

__all__ = [
    "CARP_GROUP_V4",
    "CARP_GROUP_V6",
    "CARP_TTL",
    "DIGEST_LEN",
    "HEADER_LEN",
    "DecodeError",
    "DecodeFailure",
    "Signer",
    "check_ttl",
    "checksum_ok",
    "compute_hmac",
    "decode",
    "decode_unverified",
    "encode",
    "hmac_message",
    "host_ip",
    "internet_checksum",
    "pack",
    "parse",
    "verify_hmac",
]

# CARP.md table: type/version, vhid, advskew, authlen, demote, advbase, checksum,
# 64-bit counter, 20-byte HMAC-SHA1.
_HEADER = struct.Struct("!BBBBBBHQ20s")
HEADER_LEN = _HEADER.size  # 36
DIGEST_LEN = 20
_CHECKSUM_OFFSET = 6
# CARP.md: IPv4 TTL / IPv6 hop limit must be 255; anything else is dropped.
CARP_TTL = 255
# CARP.md: adverts go to these groups (IP protocol 112, shared with VRRP).
CARP_GROUP_V4 = ipaddress.IPv4Address("224.0.0.18")
CARP_GROUP_V6 = ipaddress.IPv6Address("ff02::12")
_MAX_COUNTER = 2**64 - 1


class DecodeFailure(enum.StrEnum):
    """Which check an incoming packet failed; the runner counts drops per value."""

    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    BAD_VERSION = "bad_version"
    BAD_TYPE = "bad_type"
    BAD_AUTHLEN = "bad_authlen"
    BAD_CHECKSUM = "bad_checksum"
    BAD_HMAC = "bad_hmac"
    # Checked by the caller with the IP layer and the configured vhosts:
    BAD_TTL = "bad_ttl"
    WRONG_VHID = "wrong_vhid"
    NOT_MEMBER = "not_member"  # a source outside the virtual host's peers
    REPLAY = "replay"  # a counter already accepted from that sender


class DecodeError(ValueError):
    """A packet is not a valid CARP advert for us; `reason` says which check failed."""

    def __init__(self, reason: DecodeFailure, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


AddressLike = IPAddress | IPInterface


def host_ip(address: AddressLike) -> IPAddress:
    """The address itself, without a prefix if it has one."""
    if isinstance(address, ipaddress.IPv4Interface | ipaddress.IPv6Interface):
        return address.ip
    return address


def internet_checksum(data: bytes) -> int:
    """RFC 1071 ones' complement sum; over the 36 CARP bytes only, no pseudo-header (CARP.md)."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def checksum_ok(data: bytes) -> bool:
    """True if the checksum field of this 36-byte header is right."""
    return internet_checksum(data[:HEADER_LEN]) == 0


def hmac_message(vhid: int, addresses: Iterable[AddressLike], counter: int) -> bytes:
    """The bytes CARP hashes (CARP.md "The HMAC", verified against ucarp here).

    0x02 0x01 (version, type) | vhid | IPv4 VIPs 4 bytes each, sorted ascending |
    IPv6 VIPs 16 bytes each, sorted ascending | the 8 counter bytes.
    FreeBSD 10+ hashes every address like this; ucarp hashes its one IPv4 address.
    """
    ips = [host_ip(a) for a in addresses]
    for ip in ips:
        if not isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
            # A string would be left out of the hash silently: a wrong HMAC, not an error.
            raise TypeError(f"not an IP address object: {ip!r}")
    v4 = sorted(a for a in ips if isinstance(a, ipaddress.IPv4Address))
    v6 = sorted(a for a in ips if isinstance(a, ipaddress.IPv6Address))
    return b"".join(
        [
            bytes([CARP_VERSION, CARP_TYPE_ADVERTISEMENT, vhid]),
            *(a.packed for a in v4),
            *(a.packed for a in v6),
            counter.to_bytes(8, "big"),
        ]
    )


def compute_hmac(
    password: bytes, vhid: int, addresses: Iterable[AddressLike], counter: int
) -> bytes:
    """HMAC-SHA1 keyed with the passphrase bytes as they are (no hashing, CARP.md)."""
    return hmac.digest(password, hmac_message(vhid, addresses, counter), hashlib.sha1)


class Signer:
    """The HMAC of one virtual host's adverts, with the part that does not change per
    advert (vhid and sorted addresses, `hmac_message`) built once.

    A node with 255 virtual hosts at advbase 1 signs 255 adverts a second as master
    and checks 255 as backup; rebuilding the message from the address objects each
    time was most of the cost of an advert.
    """

    __slots__ = ("_password", "_prefix", "vhid")

    def __init__(self, password: bytes, vhid: int, addresses: Iterable[AddressLike]) -> None:
        self._password = password
        self.vhid = vhid
        self._prefix = hmac_message(vhid, addresses, 0)[:-8]  # all but the counter

    def digest(self, counter: int) -> bytes:
        return hmac.digest(self._password, self._prefix + counter.to_bytes(8, "big"), "sha1")

    def verify(self, advert: Advertisement) -> bool:
        """`verify_hmac` for this virtual host's password and addresses."""
        if advert.vhid != self.vhid:
            return False
        return hmac.compare_digest(self.digest(advert.counter), advert.digest)

    def encode(self, advbase: int, advskew: int, demote: int, counter: int) -> bytes:
        """`encode` for this virtual host."""
        _check_fields(self.vhid, advbase, advskew, demote, counter)
        digest = self.digest(counter)
        return pack(Advertisement(self.vhid, advbase, advskew, counter, digest, demote=demote))


def pack(advert: Advertisement) -> bytes:
    """The 36 bytes of `advert` exactly as given (digest included), with the checksum computed."""
    raw = _HEADER.pack(
        (advert.version << 4) | advert.type,
        advert.vhid,
        advert.advskew,
        advert.authlen,
        advert.demote,
        advert.advbase,
        0,
        advert.counter,
        advert.digest,
    )
    cksum = internet_checksum(raw)
    return raw[:_CHECKSUM_OFFSET] + cksum.to_bytes(2, "big") + raw[_CHECKSUM_OFFSET + 2 :]


def encode(
    vhid: int,
    advbase: int,
    advskew: int,
    demote: int,
    counter: int,
    password: bytes,
    addresses: Iterable[AddressLike],
) -> bytes:
    """Build one advert: the 36-byte CARP header with checksum and HMAC (CARP.md).

    Raises ValueError for fields out of range (our own bug, not a peer's).
    """
    _check_fields(vhid, advbase, advskew, demote, counter)
    digest = compute_hmac(password, vhid, addresses, counter)
    return pack(Advertisement(vhid, advbase, advskew, counter, digest, demote=demote))


def _check_fields(vhid: int, advbase: int, advskew: int, demote: int, counter: int) -> None:
    for name, value in (("advbase", advbase), ("advskew", advskew), ("demote", demote)):
        if not 0 <= value <= 255:
            raise ValueError(f"{name} must be 0..255, not {value}")
    if not 1 <= vhid <= 255:
        raise ValueError(f"vhid must be 1..255, not {vhid}")
    if not 0 <= counter <= _MAX_COUNTER:
        raise ValueError("counter must fit in 64 bits")


def parse(data: bytes) -> Advertisement:
    """The header fields of `data`, checking only the length (the pcap tool shows bad ones)."""
    if len(data) < HEADER_LEN:
        raise DecodeError(DecodeFailure.TOO_SHORT, f"{len(data)} bytes, need {HEADER_LEN}")
    vt, vhid, advskew, authlen, demote, advbase, _cksum, counter, digest = _HEADER.unpack_from(data)
    return Advertisement(
        vhid=vhid,
        advbase=advbase,
        advskew=advskew,
        counter=counter,
        digest=digest,
        demote=demote,
        authlen=authlen,
        version=vt >> 4,
        type=vt & 0x0F,
    )


def decode_unverified(data: bytes) -> Advertisement:
    """Decode and check everything but the HMAC: length, version, type, authlen, checksum.

    The runner uses it to find the vhid (and so the password) before `verify_hmac`.
    """
    advert = parse(data)
    if len(data) > HEADER_LEN:
        # The advert is exactly 36 bytes (CARP.md); extra bytes would escape our checksum.
        raise DecodeError(DecodeFailure.TOO_LONG, f"{len(data)} bytes, expected {HEADER_LEN}")
    if advert.version != CARP_VERSION:
        raise DecodeError(DecodeFailure.BAD_VERSION, f"version {advert.version}")
    if advert.type != CARP_TYPE_ADVERTISEMENT:
        raise DecodeError(DecodeFailure.BAD_TYPE, f"type {advert.type}")
    if advert.authlen != CARP_AUTHLEN:
        raise DecodeError(DecodeFailure.BAD_AUTHLEN, f"authlen {advert.authlen}")
    if not checksum_ok(data):
        raise DecodeError(DecodeFailure.BAD_CHECKSUM)
    return advert


def verify_hmac(advert: Advertisement, password: bytes, addresses: Iterable[AddressLike]) -> bool:
    """True if the advert's digest is the one `password` and `addresses` give (constant time)."""
    expected = compute_hmac(password, advert.vhid, addresses, advert.counter)
    return hmac.compare_digest(expected, advert.digest)


def decode(data: bytes, password: bytes, addresses: Iterable[AddressLike]) -> Advertisement:
    """Decode an advert and check it all, HMAC included; raise DecodeError naming the failed check.

    `addresses` are the virtual addresses configured for the advert's vhid.
    """
    advert = decode_unverified(data)
    if not verify_hmac(advert, password, addresses):
        raise DecodeError(DecodeFailure.BAD_HMAC, f"vhid {advert.vhid}")
    return advert


def check_ttl(ttl: int) -> None:
    """Raise DecodeError(BAD_TTL) unless the IPv4 TTL / IPv6 hop limit is 255 (CARP.md)."""
    if ttl != CARP_TTL:
        raise DecodeError(DecodeFailure.BAD_TTL, f"ttl {ttl}")
