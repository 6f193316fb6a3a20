"""Field rules of the cluster's models, each with a message built from the rule.

The model fields carry these validators, and ``cluster.services`` calls the
same functions, so a form, the REST API and the admin show the same words.
Rules that look at other rows (uniqueness, one Primary per alias) live in
``cluster.services``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sized

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
    if "\x00" in value:
        # PostgreSQL refuses NUL in text, and the page and the admin could never
        # show or send it back.
        raise ValidationError("Description must not contain a NUL character.", code="nul")


def validate_address_count(addresses: Sized) -> None:
    """An alias's list of addresses is at most ``ADDRESSES_PER_ALIAS_MAX`` long;
    checked before any address is parsed, so a huge list costs nothing."""
    limit, count = choices.ADDRESSES_PER_ALIAS_MAX, len(addresses)
    if count > limit:
        raise ValidationError(
            f"An alias has at most {limit} addresses (got {count}).", code="too_many"
        )


def _reject_zone(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, text: str, role: str) -> None:
    """Refuse an IPv6 zone (``fe80::1%eth0``): the database would store the
    address without it, and the interface is a field of its own anyway."""
    zone = getattr(ip, "scope_id", None)
    if zone:
        raise ValidationError(
            f"{text}: an address with a zone (%{zone}) cannot be {role}.", code="zone"
        )


LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
# RFC 1112 4 (class E): hosts neither send from nor accept these addresses.
RESERVED_V4 = ipaddress.IPv4Network("240.0.0.0/4")
# RFC 1122 3.2.1.3: "this host on this network", only ever a source while booting.
THIS_NETWORK_V4 = ipaddress.IPv4Network("0.0.0.0/8")
LINK_LOCAL_V4 = ipaddress.IPv4Network("169.254.0.0/16")
LINK_LOCAL_V6 = ipaddress.IPv6Network("fe80::/10")


def _reject_special(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, text: str) -> None:
    """Refuse what can never be a VIP nor a node's own address, one message per case.

    Link-local addresses (169.254.0.0/16 and fe80::/10) are refused in both
    families: an address is stored without its interface, so a link-local one
    would be ambiguous across interfaces and unique only by chance across
    nodes; the kernel manages them itself (fe80:: is on every IPv6 interface
    already), and clients of the gateway reach it on routable addresses.
    """
    if ip.is_unspecified or ip.is_loopback or ip.is_multicast:
        raise ValidationError(f"{text} is not a unicast host address.", code="not_unicast")
    if ip == LIMITED_BROADCAST:
        raise ValidationError(
            f"{text} is the limited broadcast address (255.255.255.255).", code="broadcast"
        )
    if ip in RESERVED_V4:
        raise ValidationError(
            f"{text} is in 240.0.0.0/4, which is reserved and never a host's address.",
            code="reserved",
        )
    if ip in THIS_NETWORK_V4:
        raise ValidationError(
            f'{text} is in 0.0.0.0/8 ("this network"), which is never a host\'s address.',
            code="this_network",
        )
    if ip in LINK_LOCAL_V4 or ip in LINK_LOCAL_V6:
        network = LINK_LOCAL_V4 if ip.version == 4 else LINK_LOCAL_V6
        raise ValidationError(
            f"{text} is a link-local address ({network}); use a routable address.",
            code="link_local",
        )
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


# --------------------------------------------------------------------------
# Health checks (issue 10). Rules that look at several fields (timeout shorter
# than the interval, what each kind needs) live in cluster.services.

CHECK_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?$")
# RFC 1123 2.1: a host name label is letters, digits and hyphens, 1 to 63 long,
# neither starting nor ending with a hyphen.
HOST_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")

validate_rise = RangeValidator("Rise", choices.CHECK_COUNT_MIN, choices.CHECK_COUNT_MAX)
validate_fall = RangeValidator("Fall", choices.CHECK_COUNT_MIN, choices.CHECK_COUNT_MAX)
validate_weight = RangeValidator("Weight", choices.CHECK_WEIGHT_MIN, choices.CHECK_WEIGHT_MAX)
validate_port = RangeValidator("Port", choices.PORT_MIN, choices.PORT_MAX)
validate_expect_status = RangeValidator(
    "Expected status", choices.HTTP_STATUS_MIN, choices.HTTP_STATUS_MAX
)
validate_min_free_percent = RangeValidator(
    "Minimum free percent", choices.FREE_PERCENT_MIN, choices.FREE_PERCENT_MAX
)


def validate_interval_ms(value: int) -> None:
    low, high = choices.CHECK_INTERVAL_MS_MIN, choices.CHECK_INTERVAL_MS_MAX
    if not low <= value <= high:
        raise ValidationError(
            f"Interval must be between {low} and {high} ms (an hour).", code="range"
        )


def validate_timeout_ms(value: int) -> None:
    low = choices.CHECK_TIMEOUT_MS_MIN
    if value < low:
        raise ValidationError(f"Timeout must be at least {low} ms.", code="range")


def validate_check_name(value: str) -> None:
    limit = choices.CHECK_NAME_MAX_LENGTH
    if not (0 < len(value) <= limit and CHECK_NAME_RE.match(value)):
        raise ValidationError(
            f"Check name must be 1 to {limit} lowercase letters, digits, '-' or '_', "
            "starting and ending with a letter or digit (it names the demotion source "
            "health:<name>).",
            code="invalid",
        )


def parse_check_host(value: str) -> str:
    """A check's target host: an IP address (canonical form) or a DNS host name
    (lowercased, without a trailing dot). Loopback is allowed: a node checking
    its own mail service on 127.0.0.1 is the common case."""
    text = value.strip()
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        _reject_zone(ip, text, "a check's host")
        if ip.is_unspecified or ip.is_multicast or ip == LIMITED_BROADCAST:
            raise ValidationError(f"{text} is not a unicast host address.", code="not_unicast")
        return str(ip)
    name = text.rstrip(".").lower()
    labels = name.split(".")
    if (
        not name
        or len(name) > choices.CHECK_HOST_MAX_LENGTH
        or not all(HOST_LABEL_RE.match(label) for label in labels)
        # RFC 3696 2: a top-level label is never all digits; "192.0.2.300" is a typo.
        or labels[-1].isdigit()
    ):
        raise ValidationError(
            f"'{text}' is neither an IP address nor a host name (letters, digits, "
            "hyphens and dots).",
            code="invalid",
        )
    return name
