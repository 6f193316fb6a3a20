"""The contract between the nodes (writers) and the web (reader): Redis and the broker.

The node host of each node publishes its live state here (cluster/node/state.py);
the status page, the IP ALIAS page, ``GET /api/v1/status/`` and the event
stream read it (cluster/live.py). Nothing else may invent a key or a message:
both sides write and parse them through the dataclasses of this module, so a
field is spelt, typed and checked in one place. No Django here, so the node
host, the demo lab and the benchmarks can use it as they are.

Parsing is strict about what is there and lenient about what is missing: a
field an older engine did not write takes its default, while a value that does
not parse (``"nan"``, a time past year 9999, a state no engine has) raises
`Unreadable`, naming the field. Readers show that as unreadable state from the
node; it never reaches a view as an exception.

Keys (every value is a string; times are wall-clock epoch seconds as floats):

``carp:hb:<node>`` (string, JSON `Heartbeat`, TTL ``HEARTBEAT_TTL``)
    The node's heartbeat, refreshed every ``HEARTBEAT_INTERVAL``: its pid,
    start time, the configuration it runs (version and source: ``"database"``,
    ``"local"`` when started from the copy on disk, ``"none"``), its demotion
    source by source, the aliases it had to leave out and why, each health
    check's status (`cluster.checks.CheckStatus`: passing, consecutive count,
    last message, times, the demotion it causes, whether it still gates the
    boot), its packet drop and port error counters, and the name of the Redis
    connection it holds open (``client``, `node_client_name`). Its absence means
    "node not reporting"; so does a ``client`` that ``CLIENT LIST`` no longer shows:
    the kernel closed a killed worker's sockets, long before the key's TTL runs out.

``carp:vhs:<node>`` (set)
    The ``"<interface>:<vhid>"`` members the node runs now.

``carp:vh:<node>:<interface>:<vhid>`` (hash, `VhostState`)
    One virtual host on one node: its state, what it advertises (advbase,
    advskew, demote), the current master's address as seen in adverts, its
    addresses, its last transition (from, to, reason, demotion source, time) and
    its advert counters.

Pub/sub channel ``carp:events``: one JSON object per message, with ``"kind"``:
`VhostMessage` (``"vhost"``: the hash after it changed, plus ``at``),
`TransitionMessage` (``"transition"``; its ``at`` is the engine's wall-clock
time of the transition itself: the latency benchmark measures from it),
`HeartbeatMessage` (``"heartbeat"``, at most one per ``HEARTBEAT_INTERVAL``),
`NodeMessage` (``"node"``: ``"started"`` or ``"stopped"``), `DesiredMessage`
(``"desired"``: the web changed the desired state; the status hubs recompute) and
`ClusterEventMessage` (``"cluster_event"``: a notifier stored a cluster event, as
``/api/v1/events/`` shows it under ``"event"``; the status pages list it, no hub
recomputes for it).

Channel ``carp:demo:control`` (demo mode only): ``{"action": "fail" | "restore" |
"mail-stop" | "mail-start", "node": name, "at"}``, from the status page's buttons
or ``make demo-fail`` (and friends) to the demo supervisor (cluster/lab/).

The broker: the apply task is sent by name (``APPLY_TASK``) to the queue of
its node (`apply_queue`), which only that node's worker consumes.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

from cluster.carp.types import DemotionSource, State
from cluster.checks import CheckStatus

PREFIX = "carp"
EVENTS_CHANNEL = f"{PREFIX}:events"
DEMO_CONTROL_CHANNEL = f"{PREFIX}:demo:control"

HEARTBEAT_INTERVAL = 1.0  # seconds between two heartbeats of a node
HEARTBEAT_TTL = 4  # seconds: three missed heartbeats and the node is "not reporting"
CLIENT_NAME_PREFIX = f"{PREFIX}-node:"  # a node's Redis connection: CLIENT SETNAME

# The apply task (cluster/dispatch.py sends it, cluster/node/tasks.py runs it).
APPLY_TASK = "cluster.apply_node_config"
APPLY_QUEUE_PREFIX = f"{PREFIX}."

# A time later than this (the end of year 9999) is not a time: datetime cannot hold it.
_LATEST = 253_402_300_799.0


def apply_queue(node: str) -> str:
    """The queue only ``node``'s worker consumes (``celery worker -Q carp.<node>``)."""
    return f"{APPLY_QUEUE_PREFIX}{node}"


def node_from_queue(queue: str) -> str | None:
    """The node a ``carp.<node>`` queue belongs to, or None for another queue."""
    if queue.startswith(APPLY_QUEUE_PREFIX) and len(queue) > len(APPLY_QUEUE_PREFIX):
        return queue[len(APPLY_QUEUE_PREFIX) :]
    return None


class Unreadable(ValueError):
    """A live-state value that does not parse; ``field`` names it."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


# ---- one parser per kind of field ---------------------------------------------------
def _missing(value: Any) -> bool:
    return value is None or value == ""


def _int(data: Mapping[str, Any], key: str, default: int = 0, *, low: int = 0) -> int:
    value: Any = data.get(key)
    if _missing(value):
        return default
    try:
        if isinstance(value, bool | float):
            raise ValueError
        number = int(value)
    except (TypeError, ValueError):
        raise Unreadable(key, f"not a whole number: {str(value)[:40]!r}") from None
    if number < low or number > 2**63:
        raise Unreadable(key, f"out of range: {number}")
    return number


def _time(data: Mapping[str, Any], key: str) -> float | None:
    """An epoch time, or None when absent; NaN, infinities and times past year 9999 raise."""
    value: Any = data.get(key)
    if _missing(value):
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise Unreadable(key, f"not a time: {str(value)[:40]!r}") from None
    if not math.isfinite(number) or not 0 <= number <= _LATEST:
        raise Unreadable(key, f"not a time: {str(value)[:40]!r}")
    return number


def _seconds(data: Mapping[str, Any], key: str) -> float | None:
    """A duration in seconds (at most a day), or None when absent."""
    value: Any = data.get(key)
    if _missing(value):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Unreadable(key, f"not a duration: {str(value)[:40]!r}")
    try:
        number = float(value)
    except ValueError:
        raise Unreadable(key, f"not a duration: {str(value)[:40]!r}") from None
    if not math.isfinite(number) or not 0 <= number <= 86_400:
        raise Unreadable(key, f"not a duration: {str(value)[:40]!r}")
    return number


def _str(data: Mapping[str, Any], key: str, default: str = "") -> str:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, str | int):
        raise Unreadable(key, f"not text: {str(value)[:40]!r}")
    return str(value)


def _state(data: Mapping[str, Any], key: str, *, required: bool = False) -> State | None:
    value = data.get(key)
    if _missing(value):
        if required:
            raise Unreadable(key, "missing")
        return None
    try:
        return State(str(value).upper())
    except ValueError:
        raise Unreadable(key, f"not a CARP state: {str(value)[:40]!r}") from None


def _counters(data: Mapping[str, Any], key: str) -> dict[str, int]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Unreadable(key, "not an object of counters")
    return {str(name): _int(value, name) for name in value}


def _json_object(raw: str | bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise Unreadable(what, "not JSON") from None
    if not isinstance(data, dict):
        raise Unreadable(what, "not a JSON object")
    return data


def _fmt_time(value: float | None) -> str:
    return repr(value) if value is not None else ""


# ---- the heartbeat ------------------------------------------------------------------
@dataclass(frozen=True)
class ConfigProblem:
    """An alias the node had to leave out of what it runs, and why (in words)."""

    vhid: int
    interface: str
    cause: str

    @classmethod
    def parse(cls, data: Any) -> Self:
        if not isinstance(data, dict):
            raise Unreadable("problems", "not an object")
        return cls(_int(data, "vhid"), _str(data, "interface"), _str(data, "cause"))


def _demotion(data: Any) -> DemotionSource:
    if not isinstance(data, dict):
        raise Unreadable("demotion", "not an object")
    try:
        return DemotionSource(_str(data, "source"), _int(data, "level"), _str(data, "reason"))
    except Unreadable:
        raise
    except ValueError as exc:
        raise Unreadable("demotion", str(exc)) from None


def _check(data: Any) -> CheckStatus:
    """One health check's status in a heartbeat (cluster/checks.py), field by field."""
    if not isinstance(data, dict):
        raise Unreadable("checks", "not an object")
    passing = data.get("passing")
    gating = data.get("gating", False)
    if passing is not None and not isinstance(passing, bool):
        raise Unreadable("checks", f"passing is not true, false or null: {str(passing)[:40]!r}")
    if not isinstance(gating, bool):
        raise Unreadable("checks", f"gating is not true or false: {str(gating)[:40]!r}")
    name = _str(data, "name")
    if not name:
        raise Unreadable("checks", "a check without a name")
    try:
        return CheckStatus(
            name=name,
            kind=_str(data, "kind"),
            passing=passing,
            count=_int(data, "count"),
            message=_str(data, "message"),
            last_at=_time(data, "last_at"),
            changed_at=_time(data, "changed_at"),
            demotion=_int(data, "demotion"),
            gating=gating,
        )
    except Unreadable as exc:
        raise Unreadable("checks", f"{exc.field}: {exc.detail}") from None


@dataclass(frozen=True)
class Heartbeat:
    """``carp:hb:<node>``: a node's heartbeat."""

    node: str
    at: float
    pid: int = 0
    config_version: str = ""
    config_source: str = "none"
    demotion: tuple[DemotionSource, ...] = ()
    problems: tuple[ConfigProblem, ...] = ()
    # Each health check the node runs: its last result and the demotion it causes.
    checks: tuple[CheckStatus, ...] = ()
    drops: dict[str, int] = field(default_factory=dict)
    port_errors: dict[str, int] = field(default_factory=dict)
    client: str = ""  # the name of the connection the node holds open ("" none named)

    @property
    def demotion_total(self) -> int:
        return sum(d.level for d in self.demotion)

    def encode(self) -> str:
        return json.dumps(
            {
                "node": self.node,
                "at": self.at,
                "pid": self.pid,
                "config_version": self.config_version,
                "config_source": self.config_source,
                "demotion": [
                    {"source": d.source, "level": d.level, "reason": d.reason}
                    for d in self.demotion
                ],
                "problems": [
                    {"vhid": p.vhid, "interface": p.interface, "cause": p.cause}
                    for p in self.problems
                ],
                "checks": [
                    {
                        "name": c.name,
                        "kind": c.kind,
                        "passing": c.passing,
                        "count": c.count,
                        "message": c.message,
                        "last_at": c.last_at,
                        "changed_at": c.changed_at,
                        "demotion": c.demotion,
                        "gating": c.gating,
                    }
                    for c in self.checks
                ],
                "drops": self.drops,
                "port_errors": self.port_errors,
                "client": self.client,
            },
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, raw: str | bytes) -> Self:
        """Raises `Unreadable` naming the first field that does not parse."""
        data = _json_object(raw, "heartbeat")
        at = _time(data, "at")
        if at is None:
            raise Unreadable("at", "missing")
        demotion = data.get("demotion") or []
        problems = data.get("problems") or []
        checks = data.get("checks") or []
        if not isinstance(checks, list):
            raise Unreadable("checks", "not a list")
        if not isinstance(demotion, list):
            raise Unreadable("demotion", "not a list")
        if not isinstance(problems, list):
            raise Unreadable("problems", "not a list")
        return cls(
            node=_str(data, "node"),
            at=at,
            pid=_int(data, "pid"),
            config_version=_str(data, "config_version"),
            config_source=_str(data, "config_source", "none"),
            demotion=tuple(_demotion(d) for d in demotion),
            problems=tuple(ConfigProblem.parse(p) for p in problems),
            checks=tuple(_check(c) for c in checks),
            drops=_counters(data, "drops"),
            port_errors=_counters(data, "port_errors"),
            client=_str(data, "client"),
        )


# ---- one virtual host -----------------------------------------------------------------
@dataclass(frozen=True)
class VhostState:
    """``carp:vh:<node>:<interface>:<vhid>``: one virtual host on one node."""

    node: str
    interface: str
    vhid: int
    state: State
    advbase: int = 0
    advskew: int | None = None  # as advertised, demotion included
    demote: int = 0
    master: str = ""  # the current master's address as seen in adverts; "" unknown
    addresses: tuple[str, ...] = ()
    last_from: State | None = None
    last_to: State | None = None
    last_reason: str = ""
    last_source: str = ""  # the demotion source behind the last transition, if any
    last_at: float | None = None
    adverts_sent: int = 0
    adverts_received: int = 0
    updated_at: float | None = None

    FIELDS: ClassVar[tuple[str, ...]] = (
        "node", "interface", "vhid", "state", "advbase", "advskew", "demote", "master",
        "addresses", "last_from", "last_to", "last_reason", "last_source", "last_at",
        "adverts_sent", "adverts_received", "updated_at",
    )  # fmt: skip

    def to_hash(self) -> dict[str, str]:
        return {
            "node": self.node,
            "interface": self.interface,
            "vhid": str(self.vhid),
            "state": str(self.state),
            "advbase": str(self.advbase),
            "advskew": str(self.advskew) if self.advskew is not None else "",
            "demote": str(self.demote),
            "master": self.master,
            "addresses": ",".join(self.addresses),
            "last_from": str(self.last_from) if self.last_from is not None else "",
            "last_to": str(self.last_to) if self.last_to is not None else "",
            "last_reason": self.last_reason,
            "last_source": self.last_source,
            "last_at": _fmt_time(self.last_at),
            "adverts_sent": str(self.adverts_sent),
            "adverts_received": str(self.adverts_received),
            "updated_at": _fmt_time(self.updated_at),
        }

    @classmethod
    def from_hash(cls, values: Mapping[str, Any]) -> Self:
        """Raises `Unreadable` naming the first field that does not parse."""
        state = _state(values, "state", required=True)
        if state is None:  # required=True raised already; for the type checker
            raise Unreadable("state", "missing")
        addresses = _str(values, "addresses")
        advskew = values.get("advskew")
        return cls(
            node=_str(values, "node"),
            interface=_str(values, "interface"),
            vhid=_int(values, "vhid"),
            state=state,
            advbase=_int(values, "advbase"),
            advskew=None if _missing(advskew) else _int(values, "advskew"),
            demote=_int(values, "demote"),
            master=_str(values, "master"),
            addresses=tuple(a for a in addresses.split(",") if a),
            last_from=_state(values, "last_from"),
            last_to=_state(values, "last_to"),
            last_reason=_str(values, "last_reason"),
            last_source=_str(values, "last_source"),
            last_at=_time(values, "last_at"),
            adverts_sent=_int(values, "adverts_sent"),
            adverts_received=_int(values, "adverts_received"),
            updated_at=_time(values, "updated_at"),
        )


# ---- messages on carp:events ----------------------------------------------------------
@dataclass(frozen=True)
class VhostMessage:
    """``vhost``: a virtual host's hash after it changed; ``at``: when the engine saw it."""

    vhost: VhostState
    at: float
    kind: ClassVar[str] = "vhost"

    def fields(self) -> dict[str, Any]:
        return {**self.vhost.to_hash(), "vhid": self.vhost.vhid, "at": self.at}

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Self:
        return cls(VhostState.from_hash(data), _time(data, "at") or 0.0)


@dataclass(frozen=True)
class TransitionMessage:
    """``transition``: ``node`` took ``vhid`` on ``interface`` from one state to another."""

    node: str
    interface: str
    vhid: int
    from_state: State
    to_state: State
    reason: str
    at: float
    source: str = ""
    # A takeover: seconds since the last advert of the master it replaced (the
    # failover time of the metrics); absent otherwise.
    silence: float | None = None
    kind: ClassVar[str] = "transition"

    def fields(self) -> dict[str, Any]:
        fields = {
            "node": self.node,
            "interface": self.interface,
            "vhid": self.vhid,
            "from": str(self.from_state),
            "to": str(self.to_state),
            "reason": self.reason,
            "source": self.source,
            "at": self.at,
        }
        if self.silence is not None:
            fields["silence"] = self.silence
        return fields

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Self:
        old, new = _state(data, "from", required=True), _state(data, "to", required=True)
        if old is None or new is None:  # required=True raised already; for the type checker
            raise Unreadable("from", "missing")
        return cls(
            node=_str(data, "node"),
            interface=_str(data, "interface"),
            vhid=_int(data, "vhid"),
            from_state=old,
            to_state=new,
            reason=_str(data, "reason"),
            at=_time(data, "at") or 0.0,
            source=_str(data, "source"),
            silence=_seconds(data, "silence"),
        )


@dataclass(frozen=True)
class HeartbeatMessage:
    """``heartbeat``: ``node`` rewrote its heartbeat (at most once a second)."""

    node: str
    at: float
    kind: ClassVar[str] = "heartbeat"

    def fields(self) -> dict[str, Any]:
        return {"node": self.node, "at": self.at}

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Self:
        return cls(_str(data, "node"), _time(data, "at") or 0.0)


@dataclass(frozen=True)
class NodeMessage:
    """``node``: ``node``'s engine ``"started"`` or ``"stopped"``."""

    node: str
    status: str
    at: float
    kind: ClassVar[str] = "node"

    def fields(self) -> dict[str, Any]:
        return {"node": self.node, "status": self.status, "at": self.at}

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Self:
        return cls(_str(data, "node"), _str(data, "status"), _time(data, "at") or 0.0)


@dataclass(frozen=True)
class DesiredMessage:
    """``desired``: a change of the desired state was committed (cluster/dispatch.py)."""

    at: float
    kind: ClassVar[str] = "desired"

    def fields(self) -> dict[str, Any]:
        return {"at": self.at}

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Self:
        return cls(_time(data, "at") or 0.0)


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    return None if _missing(data.get(key)) else _int(data, key)


def _iso_time(data: Mapping[str, Any], key: str) -> str:
    """An ISO 8601 time, kept as the text it came as (the API's form)."""
    value = _str(data, key)
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise Unreadable(key, f"not an ISO 8601 time: {value[:40]!r}") from None
    return value


@dataclass(frozen=True)
class ClusterEventMessage:
    """``cluster_event``: a notifier stored a cluster event (``cluster.models.ClusterEvent``).

    ``public()`` is the event as ``GET /api/v1/events/`` shows it (the notifier
    fills it from that serializer); on the channel it is nested under ``event``,
    since the event's own ``kind`` is not the message's. The status hubs do not
    recompute for it: the status page's stream forwards it (``event: cluster_event``).
    """

    id: int
    event_kind: str
    message: str
    at: str  # ISO 8601, as the API writes it
    vhid: int | None = None
    interface: str = ""
    node: str = ""
    old_owner: str = ""
    new_owner: str = ""
    cause: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    dedup_key: str = ""
    kind: ClassVar[str] = "cluster_event"

    def public(self) -> dict[str, Any]:
        found = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        found["kind"] = found.pop("event_kind")
        return found

    def fields(self) -> dict[str, Any]:
        return {"event": self.public()}

    @classmethod
    def from_public(cls, event: Mapping[str, Any]) -> Self:
        """From the API's form of the event; raises `Unreadable` naming the field."""
        if _missing(event.get("id")):
            raise Unreadable("id", "missing")
        identity = _int(event, "id", low=1)
        detail = event.get("detail") or {}
        if not isinstance(detail, dict):
            raise Unreadable("detail", "not an object")
        return cls(
            id=identity,
            event_kind=_str(event, "kind"),
            message=_str(event, "message"),
            at=_iso_time(event, "at"),
            vhid=_opt_int(event, "vhid"),
            interface=_str(event, "interface"),
            node=_str(event, "node"),
            old_owner=_str(event, "old_owner"),
            new_owner=_str(event, "new_owner"),
            cause=_str(event, "cause"),
            detail=dict(detail),
            dedup_key=_str(event, "dedup_key"),
        )

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Self:
        event = data.get("event")
        if not isinstance(event, dict):
            raise Unreadable("event", "not an object")
        return cls.from_public(event)


Message = (
    VhostMessage
    | TransitionMessage
    | HeartbeatMessage
    | NodeMessage
    | DesiredMessage
    | ClusterEventMessage
)
_MESSAGES: dict[str, type[Message]] = {
    m.kind: m
    for m in (
        VhostMessage,
        TransitionMessage,
        HeartbeatMessage,
        NodeMessage,
        DesiredMessage,
        ClusterEventMessage,
    )
}


def encode_message(message: Message) -> str:
    return json.dumps(
        {"kind": message.kind, **message.fields()}, separators=(",", ":"), sort_keys=True
    )


def decode_message(raw: str | bytes) -> Message:
    """The message; raises ``ValueError`` (`Unreadable`) when it is not one of ours."""
    data = _json_object(raw, "message")
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in _MESSAGES:
        raise Unreadable("kind", f"not a carp:events message: {str(kind)[:40]!r}")
    return _MESSAGES[kind].parse(data)


def message_dict(message: Message) -> dict[str, Any]:
    """The message as the browser gets it (the same JSON as on the channel)."""
    return {"kind": message.kind, **message.fields()}


def heartbeat_key(node: str) -> str:
    return f"{PREFIX}:hb:{node}"


def node_vhosts_key(node: str) -> str:
    return f"{PREFIX}:vhs:{node}"


def vhost_member(interface: str, vhid: int) -> str:
    return f"{interface}:{vhid}"


def parse_vhost_member(member: str) -> tuple[str, int]:
    interface, _, vhid = member.rpartition(":")
    return interface, int(vhid)


def vhost_key(node: str, interface: str, vhid: int) -> str:
    return f"{PREFIX}:vh:{node}:{interface}:{vhid}"


UNIX_SCHEMES = ("redis+socket", "unix")


def is_unix_socket(url: str) -> bool:
    return urlsplit(url).scheme in UNIX_SCHEMES


def redis_py_url(url: str) -> str:
    """The appliance's ``REDIS_URL`` in a form redis-py's ``from_url`` reads.

    ``REDIS_URL`` is also Celery's broker URL, so it may use kombu's
    ``redis+socket:///path/redis.sock`` form (NOTES.md: inside a node's network
    namespace Redis is reached through a Unix socket); redis-py spells the same
    thing ``unix:///path/redis.sock``.
    """
    scheme, sep, rest = url.partition("://")
    return f"unix{sep}{rest}" if scheme == "redis+socket" else url


def node_client_name(node: str) -> str:
    """The name a node's state publisher gives its Redis connection (CLIENT SETNAME)."""
    return f"{CLIENT_NAME_PREFIX}{node}"


def node_connections(reply: Any) -> frozenset[str] | None:
    """The nodes' named connections (`node_client_name`) in a CLIENT LIST reply;
    None when it is not a list (the command was refused). The status (cluster/live.py)
    and the status hub (cluster/hub.py) both read a node's liveness from it."""
    if not isinstance(reply, list):
        return None
    return frozenset(
        str(c["name"])
        for c in reply
        if isinstance(c, dict) and str(c.get("name", "")).startswith(CLIENT_NAME_PREFIX)
    )


def sync_client(
    url: str, timeout: float = 1.0, retries: int = 0, client_name: str | None = None
) -> Any:
    """A redis-py client with short timeouts: callers must never hang on Redis.

    ``retries``: how often redis-py retries a failed command. Its own default
    (three times with exponential backoff) held a page up for about 4 s and the
    engine's drainer for seconds when Redis was down; every caller here retries
    at its own pace anyway (the next heartbeat tick, the next page view), so the
    default is none.

    ``client_name``: set with CLIENT SETNAME on every connection, reconnections
    included (redis-py does it on connect).
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        redis_py_url(url),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
        retry=Retry(NoBackoff(), retries),
        client_name=client_name,
    )


def async_client(url: str, timeout: float = 1.0, retries: int = 0) -> Any:
    """The asyncio twin of :func:`sync_client` (for the event stream; no read
    timeout, since a pub/sub listener waits for messages)."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return aioredis.Redis.from_url(
        redis_py_url(url),
        socket_connect_timeout=timeout,
        decode_responses=True,
        retry=Retry(NoBackoff(), retries),
    )


def request_demo_action(url: str, action: str, node: str, timeout: float = 1.0) -> int:
    """Publish a "fail", "restore", "mail-stop" or "mail-start" request for ``node`` on
    ``DEMO_CONTROL_CHANNEL``
    (the status page's buttons and ``make demo-fail`` alike); returns how many
    supervisors heard it (0: no demo is running). Redis errors propagate."""
    import time

    client = sync_client(url, timeout=timeout)
    try:
        request = {"action": action, "node": node, "at": time.time()}
        return int(client.publish(DEMO_CONTROL_CHANNEL, json.dumps(request)))
    finally:
        client.close()
