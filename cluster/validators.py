"""Field rules of the cluster's models, each with a message built from the rule.

The model fields carry these validators, and ``cluster.services`` calls the
same functions, so a form, the REST API and the admin show the same words.
Rules that look at other rows (uniqueness, one Primary per alias) live in
``cluster.services``.
"""

from __future__ import annotations

import ipaddress
import re

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible

from cluster import choices

NODE_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
# Linux refuses '/', ':' and whitespace in interface names, and "." and "..".
INTERFACE_RE = re.compile(r"^[A-Za-z0-9_.-]+$")

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


@deconstructible
class RangeValidator:
    """``low <= value <= high``, with a message that names ``label``."""

    def __init__(self, label: str, low: int, high: int) -> None:
        self.label, self.low, self.high = label, low, high

    def __call__(self, value: int) -> None:
        if not self.low <= value <= self.high:
            raise ValidationError(
                f"{self.label} must be between {self.low} and {self.high}.", code="range"
            )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RangeValidator) and (self.label, self.low, self.high) == (
            other.label,
            other.low,
            other.high,
        )

    def __hash__(self) -> int:
        return hash((self.label, self.low, self.high))


validate_vhid = RangeValidator("VHID", choices.VHID_MIN, choices.VHID_MAX)
validate_advbase = RangeValidator("Advbase", choices.ADVBASE_MIN, choices.ADVBASE_MAX)
validate_ordinal = RangeValidator("Ordinal", choices.ORDINAL_MIN, choices.ORDINAL_MAX)


def validate_node_name(value: str) -> None:
    limit = choices.NODE_NAME_MAX_LENGTH
    if not (0 < len(value) <= limit and NODE_NAME_RE.match(value)):
        raise ValidationError(
            f"Node name must be 1 to {limit} lowercase letters, digits or hyphens, "
            "starting and ending with a letter or digit.",
            code="invalid",
        )


def validate_interface(value: str) -> None:
    limit = choices.INTERFACE_MAX_LENGTH
    if not (0 < len(value) <= limit and INTERFACE_RE.match(value)) or value in {".", ".."}:
        raise ValidationError(
            f"Interface must be a Linux interface name: 1 to {limit} letters, digits, "
            "'.', '-' or '_'.",
            code="invalid",
        )


def validate_password_length(value: str) -> None:
    size = len(value.encode("utf-8"))
    if size > choices.PASSWORD_MAX_BYTES:
        raise ValidationError(
            f"Password must be at most {choices.PASSWORD_MAX_BYTES} bytes (got {size}).",
            code="max_bytes",
        )
    if "\x00" in value:
        # carp(4) and ucarp treat the passphrase as a C string.
        raise ValidationError("Password must not contain a NUL character.", code="nul")


def validate_description(value: str) -> None:
    limit = choices.DESCRIPTION_MAX_LENGTH
    if len(value) > limit:
        raise ValidationError(
            f"Description must be at most {limit} characters (got {len(value)}).",
            code="max_length",
        )


def _reject_zone(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, text: str, role: str) -> None:
    """Refuse an IPv6 zone (``fe80::1%eth0``): the database would store the
    address without it, and the interface is a field of its own anyway."""
    zone = getattr(ip, "scope_id", None)
    if zone:
        raise ValidationError(
            f"{text}: an address with a zone (%{zone}) cannot be {role}.", code="zone"
        )


def _reject_special(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, text: str) -> None:
    if ip.is_unspecified or ip.is_loopback or ip.is_multicast:
        raise ValidationError(f"{text} is not a unicast host address.", code="not_unicast")
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        # ::ffff:a.b.c.d is an IPv4 address in disguise: it would slip past the
        # "already used" checks, which compare the IPv4 text.
        raise ValidationError(
            f"{text} is an IPv4-mapped IPv6 address; write the IPv4 address {mapped} instead.",
            code="ipv4_mapped",
        )


def parse_host_address(value: str) -> str:
    """Check a node's own address (no prefix) and return it in canonical form."""
    text = str(value).strip()
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise ValidationError(
            f"'{text}' is not a valid IPv4 or IPv6 address.", code="invalid"
        ) from None
    _reject_zone(ip, text, "a node's own address")
    _reject_special(ip, text)
    return str(ip)


def parse_alias_address(value: str) -> IPInterface:
    """Check an alias address written with its prefix and return it parsed.

    IPv4: the network and broadcast addresses of the prefix are refused, except
    on /31 (RFC 3021 point-to-point links use both) and /32 (a lone host).
    IPv6: there is no broadcast; the all-zeros host (the Subnet-Router anycast
    address, RFC 4291 2.6.1) is refused except on /127 (RFC 6164) and /128.
    A zone (``fe80::1%eth0``) is refused: the alias's interface says where.
    """
    text = str(value).strip()
    if "/" not in text:
        raise ValidationError(
            f"{text} needs a prefix length, e.g. 192.0.2.100/24 or 2001:db8::100/64.",
            code="no_prefix",
        )
    try:
        iface: IPInterface = ipaddress.ip_interface(text)
    except ValueError:
        raise ValidationError(
            f"'{text}' is not a valid IPv4 or IPv6 address with prefix.", code="invalid"
        ) from None
    # iface.ip drops the zone; the interface itself keeps it.
    _reject_zone(iface, text, "a virtual address")
    ip, network = iface.ip, iface.network
    _reject_special(ip, text)
    if network.prefixlen == 0:
        # The kernel would add a connected route to everything (a default
        # route) through the VIP's interface.
        raise ValidationError(
            f"{text} has prefix length 0, which covers every address; write the prefix "
            "of the VIP's subnet, e.g. /24 or /64.",
            code="prefix_zero",
        )
    if isinstance(network, ipaddress.IPv4Network):
        if network.prefixlen <= 30:
            if ip == network.network_address:
                raise ValidationError(
                    f"{text} is the network address of its prefix.", code="network"
                )
            if ip == network.broadcast_address:
                raise ValidationError(
                    f"{text} is the broadcast address of its prefix.", code="broadcast"
                )
    elif network.prefixlen <= 126 and ip == network.network_address:
        raise ValidationError(
            f"{text} is the subnet-router anycast address of its prefix.", code="network"
        )
    return iface
