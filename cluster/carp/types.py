"""The CARP engine's vocabulary: states, reasons, configuration, adverts, events and actions.

Everything here is a frozen value (stdlib only). The state machine (`fsm.py`)
consumes the *events* and returns *actions*; the runner performs the actions
through the ports (`ports.py`). Every action carries its vhid so that the
runner can execute a list gathered from many virtual hosts.

Events:  Start, Stop, AdvertReceived, Timeout, LinkDown, LinkUp, SetDemotion, Reconfigure
Actions: SendAdvert, AddAddresses, RemoveAddresses, SendGratuitous, Transitioned
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

# CARP.md "The advertisement": version 2, type 1 (advertisement), authlen 7.
CARP_VERSION = 2
CARP_TYPE_ADVERTISEMENT = 1
CARP_AUTHLEN = 7
# CARP.md "Timers and priority": advskew 0..254; 255/255 is the bow-out advert.
MAX_ADVSKEW = 254
BOW_OUT_ADVBASE = 255
BOW_OUT_ADVSKEW = 255
# CARP.md "The HMAC": BSD ifconfig and ucarp accept at most 19 passphrase bytes.
MAX_PASSWORD_BYTES = 19


class State(enum.StrEnum):
    """The three CARP states of one virtual host, spelt as the BSDs and ucarp print them.

    The one spelling everywhere: the engine, Redis, the database's transition
    history (``cluster.choices.CarpState`` is built from this), the API and the pages.
    """

    INIT = "INIT"
    BACKUP = "BACKUP"
    MASTER = "MASTER"


class Reason(enum.StrEnum):
    """Why a virtual host changed state; carried by `Transitioned` and kept in the history.

    BACKUP -> MASTER: MASTER_DOWN (timeout), PREEMPTED (we preempted a slower
    master), BOW_OUT (the master sent the 255/255 advert or one so slow it
    will time out). MASTER -> BACKUP: HIGHER_PRIORITY_SEEN, or the reason of
    the demotion source that demoted us (`demotion_reason`). To INIT: SHUTDOWN,
    LINK_DOWN. INIT -> BACKUP: STARTUP, LINK_UP.
    """

    STARTUP = "startup"
    MASTER_DOWN = "master_down"
    PREEMPTED = "preempted"
    BOW_OUT = "bow_out"
    HIGHER_PRIORITY_SEEN = "higher_priority_seen"
    DEMOTED = "demoted"
    MAINTENANCE = "maintenance"
    HEALTH_CHECK = "health_check"
    SHUTDOWN = "shutdown"
    LINK_DOWN = "link_down"
    LINK_UP = "link_up"


# Demotion sources (DESIGN.md "Demotion is a sum of named sources"): a node's
# demotion is the sum of one level per source, as FreeBSD's demotion counter sums
# what each subsystem adds. A source is named by its kind, and by what it is about
# after a colon when there can be several: ``link:eth0``, ``health:smtp-25``.
SOURCE_MAINTENANCE = "maintenance"
SOURCE_OPERATOR = "operator"
SOURCE_LINK = "link"
SOURCE_HEALTH = "health"
_SOURCE_REASONS = {
    SOURCE_MAINTENANCE: Reason.MAINTENANCE,
    SOURCE_OPERATOR: Reason.DEMOTED,
    SOURCE_LINK: Reason.LINK_DOWN,
    SOURCE_HEALTH: Reason.HEALTH_CHECK,
}


def demotion_reason(source: str) -> Reason:
    """The transition reason a demotion from ``source`` causes (raises ValueError
    for a source of no known kind)."""
    kind, _, _ = source.partition(":")
    try:
        return _SOURCE_REASONS[kind]
    except KeyError:
        raise ValueError(f"not a demotion source: {source!r}") from None


@dataclass(frozen=True, slots=True)
class DemotionSource:
    """One named contribution to the node's demotion: its level and, in words, why."""

    source: str
    level: int
    reason: str = ""

    def __post_init__(self) -> None:
        demotion_reason(self.source)
        if self.level < 0:
            raise ValueError(f"demotion level cannot be negative: {self.level}")


class ConfigError(ValueError):
    """A `VirtualHostConfig` value is out of range."""


@dataclass(frozen=True, slots=True)
class VirtualHostConfig:
    """One CARP virtual host (vhid) on one interface, as this node runs it.

    `src_ip` is this node's own address on `interface`: the address its adverts
    come from, used for ucarp's tie-break (equal intervals: the lower source
    address stays MASTER). Without it the machine yields on every tie, as the
    BSDs do. `addresses` are the virtual addresses with their prefix; all of
    them enter the HMAC (CARP.md).
    """

    vhid: int
    interface: str
    # Never in a repr, so no log line or traceback that prints a config shows it.
    password: bytes = field(repr=False)
    addresses: tuple[IPInterface, ...]
    advbase: int = 1
    advskew: int = 0
    preempt: bool = True
    src_ip: IPAddress | None = None
    # Adverts are accepted only from these sources (the other members' own
    # addresses); empty: from anyone, as ucarp and the BSDs do. With `peers`, an
    # advert whose counter was already accepted from its sender is a replay:
    # `strict_counters` (peers that count up from a clock-derived start, as our own
    # nodes do) refuses any counter not above the last one accepted; otherwise only
    # the sender's recent counters are refused (ucarp sends random ones).
    peers: frozenset[IPAddress] = frozenset()
    strict_counters: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.vhid <= 255:
            raise ConfigError(f"vhid must be 1..255, not {self.vhid}")
        if not 0 <= self.advbase <= 255:
            raise ConfigError(f"advbase must be 0..255, not {self.advbase}")
        if not 0 <= self.advskew <= MAX_ADVSKEW:
            raise ConfigError(f"advskew must be 0..{MAX_ADVSKEW}, not {self.advskew}")
        if self.advbase == 0 and self.advskew == 0:
            # An advert interval of zero would advertise in a busy loop.
            raise ConfigError("advbase and advskew cannot both be 0")
        if not isinstance(self.password, bytes):
            raise ConfigError("password must be bytes")
        if len(self.password) > MAX_PASSWORD_BYTES:
            raise ConfigError(f"password is at most {MAX_PASSWORD_BYTES} bytes")
        if not self.addresses:
            raise ConfigError("a virtual host needs at least one address")
        ips = [a.ip for a in self.addresses]
        if len(set(ips)) != len(ips):
            raise ConfigError("duplicate virtual address")
        if not self.interface:
            raise ConfigError("interface is required")

    @property
    def ips(self) -> tuple[IPAddress, ...]:
        """The virtual addresses without their prefix."""
        return tuple(a.ip for a in self.addresses)


@dataclass(frozen=True, slots=True)
class Advertisement:
    """The fields of one CARP advertisement (the 36-byte header, CARP.md).

    `digest` is the 20-byte HMAC-SHA1 as carried. `demote` is OpenBSD's demote
    counter (byte 4). The checksum is not kept: it is derived from the rest.
    """

    vhid: int
    advbase: int
    advskew: int
    counter: int
    digest: bytes
    demote: int = 0
    authlen: int = CARP_AUTHLEN
    version: int = CARP_VERSION
    type: int = CARP_TYPE_ADVERTISEMENT

    @property
    def interval(self) -> float:
        """The sender's advert interval in seconds; smaller is better (CARP.md)."""
        return self.advbase + self.advskew / 256

    @property
    def is_bow_out(self) -> bool:
        """True for the 255/255 advert a master sends when it stops (OpenBSD)."""
        return self.advbase == BOW_OUT_ADVBASE and self.advskew == BOW_OUT_ADVSKEW


@dataclass(frozen=True, slots=True)
class ReceivedPacket:
    """A protocol-112 packet as a `PacketLink` hands it over: the CARP payload plus IP facts.

    `ttl` is the IPv4 TTL or the IPv6 hop limit; the runner drops anything but
    255 (CARP.md) and packets whose source is the node's own address.
    """

    payload: bytes
    source: IPAddress
    ttl: int
    interface: str
    # When the kernel received it, on the runner's monotonic clock (SO_TIMESTAMPNS);
    # None when unknown (the runner then takes the time it read the packet).
    at: float | None = None


# ---- events (fed to VirtualHost.handle) ----


@dataclass(frozen=True, slots=True)
class Start:
    """Begin running: INIT -> BACKUP, the first master appears after one master-down interval."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop gracefully: a MASTER sends the bow-out advert and removes its addresses; -> INIT.

    ``bow_out=False`` stops without the bow-out advert: the virtual host is going
    away on every node (its alias disabled or deleted), so no backup must take it
    over; they stop it themselves as they apply the same change.
    """

    bow_out: bool = True


@dataclass(frozen=True, slots=True)
class AdvertReceived:
    """A decoded advert that passed every check (TTL, checksum, HMAC, vhid) and its IP source."""

    advert: Advertisement
    source: IPAddress


@dataclass(frozen=True, slots=True)
class Timeout:
    """The runner's wake-up: fire whatever deadline has passed (harmless if none has)."""


@dataclass(frozen=True, slots=True)
class LinkDown:
    """The interface lost carrier or went down."""


@dataclass(frozen=True, slots=True)
class LinkUp:
    """The interface is usable again."""


@dataclass(frozen=True, slots=True)
class SetDemotion:
    """Set this node's total demotion (0 = none) and the source that caused it.

    `reason` and `source` go into the transition if the demoted master then
    steps down (Reason.DEMOTED, MAINTENANCE, HEALTH_CHECK or LINK_DOWN; a
    source such as ``maintenance`` or ``health:smtp-25``).
    """

    level: int
    reason: Reason = Reason.DEMOTED
    source: str = ""


@dataclass(frozen=True, slots=True)
class Reconfigure:
    """Replace the configuration in place (same vhid); a MASTER converges its addresses."""

    config: VirtualHostConfig


Event = Start | Stop | AdvertReceived | Timeout | LinkDown | LinkUp | SetDemotion | Reconfigure


# ---- actions (returned by VirtualHost.handle, performed by the runner) ----


@dataclass(frozen=True, slots=True)
class SendAdvert:
    """Send one advert with these fields; the runner adds its counter, HMAC and checksum."""

    vhid: int
    advbase: int
    advskew: int
    demote: int = 0


@dataclass(frozen=True, slots=True)
class AddAddresses:
    """Put these virtual addresses on the interface (idempotent)."""

    vhid: int
    addresses: tuple[IPInterface, ...]


@dataclass(frozen=True, slots=True)
class RemoveAddresses:
    """Take these virtual addresses off the interface (idempotent)."""

    vhid: int
    addresses: tuple[IPInterface, ...]


@dataclass(frozen=True, slots=True)
class SendGratuitous:
    """Announce these addresses: gratuitous ARP (IPv4), unsolicited NA (IPv6)."""

    vhid: int
    addresses: tuple[IPInterface, ...]


@dataclass(frozen=True, slots=True)
class Transitioned:
    """The virtual host went from `old` to `new` for `reason` (log it, publish it);
    `source` names the demotion source when a demotion caused it. `silence`:
    for a takeover (BACKUP -> MASTER), the seconds since the last advert heard
    from the master it replaces (None when none was heard); the failover time
    the metrics report. Not compared: it is a measurement, not the transition."""

    vhid: int
    old: State
    new: State
    reason: Reason
    source: str = ""
    silence: float | None = field(default=None, compare=False)


Action = SendAdvert | AddAddresses | RemoveAddresses | SendGratuitous | Transitioned
