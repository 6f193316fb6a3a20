"""The live status: the engines' state in Redis joined to the desired state.

The engines write Redis (``cluster.statekeys`` is the contract); this module
only reads it. ``compute_status()`` is the one place that decides what a cell
shows, who should be master, who is, and what is wrong; the cluster page, the
IP ALIAS page, the nodes page, ``GET /api/v1/status/`` and the event stream
all render its ``as_dict()`` or its objects, so they never disagree.

Redis that cannot be reached is a state, not an error: the status then says
``available: false`` and every cell ``unknown``, and the expected owner falls
back to the configuration alone (members not in maintenance). A value that does
not parse (``cluster.statekeys`` parses every field, once) is a state too: the
node's cells say "unreadable state from <node>", it is logged once, and no view
ever sees an exception from it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from redis.exceptions import RedisError, ResponseError

from cluster import services, statekeys
from cluster.carp.types import State
from cluster.checks import CheckStatus
from cluster.choices import TransitionReason
from cluster.models import IPAlias, Node, Transition

log = logging.getLogger(__name__)

# A cell's live state: the engine's own three (one spelling: cluster.carp.types.State),
# or why there is none.
MASTER = State.MASTER.value
BACKUP = State.BACKUP.value
INIT = State.INIT.value
NOT_REPORTING = "not reporting"  # its heartbeat expired, or the connection it names closed
NOT_RUNNING = "not running"  # the node reports, but does not run this virtual host
NOT_MEMBER = "not a member"  # the alias does not list the node (and it runs nothing of it)
UNKNOWN = "unknown"  # Redis cannot be reached, or the engine wrote no state yet
UNREADABLE = "unreadable"  # what the node wrote does not parse (cell.detail says why)
STATES = (MASTER, BACKUP, INIT, NOT_REPORTING, NOT_RUNNING, NOT_MEMBER, UNKNOWN, UNREADABLE)

SPLIT_BRAIN = "split_brain"
NO_MASTER = "no_master"
NODE_NOT_REPORTING = "not_reporting"
ALIAS_LEFT_OUT = "alias_left_out"  # a node cannot run an alias (its password, say)
ALERT_KINDS = (SPLIT_BRAIN, NO_MASTER, NODE_NOT_REPORTING, ALIAS_LEFT_OUT)
WRONG_OWNER = "wrong_owner"  # a row's alert only: the MASTER is not the expected owner
# What a row's alert column says (AliasStatus.alert is one of these keys, or "").
ROW_ALERT_WORDS = {
    SPLIT_BRAIN: "split brain",
    NO_MASTER: "no MASTER",
    WRONG_OWNER: "not the expected owner",
}

# How a heartbeat's config_source reads on the pages (bridge.Engine sets it).
CONFIG_SOURCE_WORDS = {
    "database": "configuration from the database",
    "local": "configuration from its local copy (database unreachable)",
    "none": "waiting for its configuration",
}

# Reading the state must never hold a page up: a dead Redis costs at most this.
REDIS_TIMEOUT = 0.5


def redis_client(url: str) -> Any:
    """A client for one page view: no retries (statekeys), a short timeout."""
    return statekeys.sync_client(url, timeout=REDIS_TIMEOUT)


def async_redis_client(url: str) -> Any:
    """The event stream's client (see ``redis_client``)."""
    return statekeys.async_client(url, timeout=REDIS_TIMEOUT)


@dataclass(frozen=True)
class DemotionEntry:
    """One demotion source of a node, as its heartbeat says."""

    source: str
    level: int
    reason: str


@dataclass(frozen=True)
class Demotion:
    """A node's demotion: the total it adds to its advskew, and source by source."""

    total: int = 0
    sources: list[DemotionEntry] = field(default_factory=list)

    @property
    def words(self) -> str:
        """ "demoted by 240: maintenance", or "" when not demoted."""
        if not self.total:
            return ""
        reasons = ", ".join(s.reason or s.source for s in self.sources)
        return f"demoted by {self.total}: {reasons}"


@dataclass(frozen=True)
class CheckEntry:
    """One health check on one node, as its heartbeat says (cluster.checks.CheckStatus):
    passing (None: no result yet), how many results in a row, the last message, when
    it ran and when it last changed, the demotion it causes, and whether it still
    holds the node demoted at boot."""

    name: str
    kind: str
    passing: bool | None
    count: int
    message: str
    last_at: float | None
    changed_at: float | None
    demotion: int
    gating: bool


def _checks(heartbeat: statekeys.Heartbeat) -> list[CheckEntry]:
    return [
        CheckEntry(c.name, c.kind, c.passing, c.count, c.message, c.last_at, c.changed_at,
                   c.demotion, c.gating)
        for c in heartbeat.checks
    ]  # fmt: skip


@dataclass(frozen=True)
class NodeStatus:
    """One node's heartbeat, as its engine last wrote it."""

    name: str
    ordinal: int
    maintenance: bool
    reporting: bool
    last_seen: float | None
    config_source: str
    config_version: str | None
    summary: str
    demotion: Demotion = field(default_factory=Demotion)
    unreadable: str = ""  # why what the node wrote cannot be read ("" when it can)
    checks: list[CheckEntry] = field(default_factory=list)


@dataclass(frozen=True)
class Cell:
    """One node's part in one alias: configured tier and advskew (None when the
    node is not a member), and what its engine says about the virtual host."""

    node: str
    tier: str | None
    advskew: int | None
    state: str
    advertised_advskew: int | None = None
    last_reason: str = ""
    last_at: float | None = None
    last_source: str = ""
    detail: str = ""  # why the state is UNREADABLE
    # A MASTER claim that is out of date (its node's last report is older than
    # another member's taking over): shown, but never counted as a MASTER.
    stale: bool = False


@dataclass(frozen=True)
class AliasStatus:
    id: int
    vhid: int
    interface: str
    addresses: list[str]
    enabled: bool
    description: str
    cells: list[Cell]
    expected_owner: str | None
    masters: list[str]
    mismatch: bool
    summary: str
    alert: str = ""  # the row's worst problem: a key of ROW_ALERT_WORDS, or ""
    alert_text: str = ""  # ROW_ALERT_WORDS[alert]


@dataclass(frozen=True)
class Alert:
    kind: str
    message: str
    node: str | None = None
    vhid: int | None = None
    interface: str | None = None


@dataclass(frozen=True)
class Status:
    available: bool
    error: str
    generated_at: float
    nodes: list[NodeStatus]
    aliases: list[AliasStatus]
    alerts: list[Alert] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The JSON body of ``GET /api/v1/status/`` and of the stream's status event."""
        return asdict(self)


@dataclass
class _Snapshot:
    """What Redis holds for the nodes, read in two round trips and parsed once
    (`statekeys.Unreadable` in place of what does not parse)."""

    heartbeats: dict[str, statekeys.Heartbeat | statekeys.Unreadable]
    vhosts: dict[str, dict[tuple[str, int], statekeys.VhostState | statekeys.Unreadable]]
    # The names of the connections open now (CLIENT LIST); None when Redis would
    # not say (an ACL without CLIENT): then only the heartbeat's TTL tells.
    clients: frozenset[str] | None = None


_LOGGED_UNREADABLE: set[tuple[str, str]] = set()
_LOGGED_LIMIT = 1024  # keys remembered; a flood of new ones must not grow this for ever


def _log_unreadable(node: str, what: str, error: statekeys.Unreadable) -> None:
    """Log unreadable state once per node and key, not once per page view."""
    key = (node, what)
    if key in _LOGGED_UNREADABLE:
        return
    if len(_LOGGED_UNREADABLE) < _LOGGED_LIMIT:
        _LOGGED_UNREADABLE.add(key)
    log.warning("unreadable live state from %s (%s): %s", node, what, error)


def _read_redis(node_names: Sequence[str], client: Any = None) -> _Snapshot:
    """``client``: a kept one (the status hub's), left open; by default one of
    its own for this reading, closed after it."""
    own = client is None
    if own:
        client = redis_client(settings.REDIS_URL)
    try:
        pipe = client.pipeline(transaction=False)
        for name in node_names:
            pipe.get(statekeys.heartbeat_key(name))
            pipe.smembers(statekeys.node_vhosts_key(name))
        # Only ordinary connections: the pages' pub/sub streams (one per open page)
        # are of type pubsub and need not be listed.
        pipe.client_list(_type="normal")
        replies = pipe.execute(raise_on_error=False)
        for reply in replies[:-1]:
            if isinstance(reply, Exception):
                raise reply
        clients = _client_names(replies[-1])
        heartbeats: dict[str, statekeys.Heartbeat | statekeys.Unreadable] = {}
        members: list[tuple[str, str, int]] = []
        for index, name in enumerate(node_names):
            raw, running = replies[2 * index], replies[2 * index + 1]
            if raw:
                try:
                    heartbeats[name] = statekeys.Heartbeat.decode(raw)
                except statekeys.Unreadable as exc:
                    _log_unreadable(name, "heartbeat", exc)
                    heartbeats[name] = exc
            for member in sorted(running):
                try:
                    interface, vhid = statekeys.parse_vhost_member(member)
                except ValueError:
                    _log_unreadable(name, f"member {member[:40]!r}", statekeys.Unreadable(
                        "member", "not <interface>:<vhid>"))  # fmt: skip
                    continue
                members.append((name, interface, vhid))
        pipe = client.pipeline(transaction=False)
        for name, interface, vhid in members:
            pipe.hgetall(statekeys.vhost_key(name, interface, vhid))
        vhosts: dict[str, dict[tuple[str, int], statekeys.VhostState | statekeys.Unreadable]]
        vhosts = {n: {} for n in node_names}
        for (name, interface, vhid), values in zip(members, pipe.execute(), strict=True):
            try:
                vhosts[name][(interface, vhid)] = statekeys.VhostState.from_hash(values)
            except statekeys.Unreadable as exc:
                _log_unreadable(name, f"vhid {vhid} on {interface}", exc)
                vhosts[name][(interface, vhid)] = exc
        return _Snapshot(heartbeats, vhosts, clients)
    finally:
        if own:
            client.close()


def _client_names(reply: Any) -> frozenset[str] | None:
    """The nodes' named connections in a CLIENT LIST reply; None when it was
    refused. A failure to reach Redis is raised: the snapshot cannot be read."""
    if isinstance(reply, Exception) and not isinstance(reply, ResponseError):
        raise reply
    return statekeys.node_connections(reply)


def _connection_gone(heartbeat: statekeys.Heartbeat, snapshot: _Snapshot) -> bool:
    """The node named its connection, and Redis no longer has it: the process is
    gone (a crash or a kill closes its sockets at once), whatever its heartbeat's
    TTL says. A node that vanished without closing them (its network namespace
    removed, its link down) keeps its connection until Redis notices; the TTL
    catches that one."""
    return bool(heartbeat.client) and (
        snapshot.clients is not None and heartbeat.client not in snapshot.clients
    )


def _clock(epoch: float) -> str:
    try:
        return timezone.localtime(datetime.fromtimestamp(epoch, tz=UTC)).strftime("%H:%M:%S")
    except (OverflowError, ValueError, OSError):
        return "?"  # statekeys bounds every time; a time zone at the edge must not fail a page


def _demotion(heartbeat: statekeys.Heartbeat) -> Demotion:
    return Demotion(
        heartbeat.demotion_total,
        [DemotionEntry(d.source, d.level, d.reason) for d in heartbeat.demotion],
    )


def _node_status(node: Node, snapshot: _Snapshot | None) -> NodeStatus:
    def status(reporting: bool, last_seen: float | None, summary: str, **kw: Any) -> NodeStatus:
        return NodeStatus(
            node.name, node.ordinal, node.maintenance, reporting, last_seen, summary=summary, **kw
        )

    if snapshot is None:
        return status(False, None, "live state unavailable", config_source="", config_version=None)
    heartbeat = snapshot.heartbeats.get(node.name)
    if isinstance(heartbeat, statekeys.Unreadable):
        # It reports (the key is there), but what it says cannot be read: say so,
        # and treat its claims as unknown rather than guess.
        words = f"unreadable state from {node.name} ({heartbeat})"
        return status(
            True, None, words, config_source="", config_version=None, unreadable=str(heartbeat)
        )
    if heartbeat is not None and _connection_gone(heartbeat, snapshot):
        words = f"not reporting · its connection closed · last seen {_clock(heartbeat.at)}"
        return status(False, heartbeat.at, words, config_source="", config_version=None)
    if heartbeat is not None:
        source = heartbeat.config_source
        summary = "reporting"
        if source:
            summary += f" · {CONFIG_SOURCE_WORDS.get(source, 'configuration from ' + source)}"
        demotion = _demotion(heartbeat)
        if demotion.total:
            summary += f" · {demotion.words}"
        # The engine's version is a digest (cluster/node/apply.config_version), in the
        # API and on the nodes page; the matrix's header has no room for it.
        return status(
            True,
            heartbeat.at,
            summary,
            config_source=source,
            config_version=heartbeat.config_version or None,
            demotion=demotion,
            checks=_checks(heartbeat),
        )
    # The heartbeat has expired: the newest write to its virtual hosts is the
    # best "last seen" left (stable from now on, so it is fine in the summary).
    updates = [
        v.updated_at
        for v in snapshot.vhosts[node.name].values()
        if isinstance(v, statekeys.VhostState) and v.updated_at is not None
    ]
    last_seen = max(updates) if updates else None
    summary = "not reporting" + (f" · last seen {_clock(last_seen)}" if last_seen else "")
    return status(False, last_seen, summary, config_source="", config_version=None)


def _cell(
    node: NodeStatus,
    priority: services.PriorityView | None,
    alias: IPAlias,
    snapshot: _Snapshot | None,
) -> Cell:
    tier = priority.priority if priority else None
    advskew = priority.advskew if priority else None
    if snapshot is None:
        return Cell(node.name, tier, advskew, UNKNOWN)
    if node.unreadable:
        return Cell(node.name, tier, advskew, UNREADABLE, detail=_unreadable_words(node.name))
    if not node.reporting:
        return Cell(node.name, tier, advskew, NOT_REPORTING)
    values = snapshot.vhosts[node.name].get((alias.interface, alias.vhid))
    if values is None:
        return Cell(node.name, tier, advskew, NOT_RUNNING if tier else NOT_MEMBER)
    if isinstance(values, statekeys.Unreadable):
        return Cell(node.name, tier, advskew, UNREADABLE, detail=_unreadable_words(node.name))
    return Cell(
        node.name,
        tier,
        advskew,
        str(values.state),
        values.advskew,
        values.last_reason,
        values.last_at,
        values.last_source,
    )


def _unreadable_words(node: str) -> str:
    return f"unreadable state from {node}"


def expected_owner(
    alias: IPAlias, cells: Sequence[Cell], nodes: Mapping[str, NodeStatus], live: bool
) -> str | None:
    """The member that should be MASTER: the lowest advskew among the members
    that are up (reporting, when the live state is known, and not in
    maintenance); none while the alias is disabled. A demoted member competes
    with what it advertises: its advskew plus its demotion, at most 240 (CARP.md),
    so a Primary demoted by a link down is not expected to keep the VIP."""
    if not alias.enabled:
        return None

    def advertised(cell: Cell) -> int:
        assert cell.advskew is not None
        demotion = nodes[cell.node].demotion.total if live else 0
        return min(cell.advskew + demotion, 240) if demotion else cell.advskew

    up = [
        (advertised(cell), cell.advskew, cell.node)
        for cell in cells
        if cell.advskew is not None
        and not nodes[cell.node].maintenance
        and (nodes[cell.node].reporting or not live)
    ]
    return min(up)[2] if up else None


def _summary(
    alias: IPAlias, masters: Sequence[str], live: bool, unreadable: Sequence[str] = ()
) -> str:
    """The IP ALIAS page's "Live state" text."""
    if not live:
        return "live state unavailable"
    if len(masters) > 1:
        return f"MASTER on {', '.join(masters)} (split brain)"
    if masters:
        return f"MASTER on {masters[0]}"
    if unreadable and alias.enabled:
        # One of them may hold it: saying "no MASTER" would be a guess.
        return f"unknown ({_unreadable_words(', '.join(unreadable))})"
    return "no MASTER" if alias.enabled else "disabled"


def _alias_alerts(
    alias: IPAlias, cells: Sequence[Cell], masters: Sequence[str], nodes: Mapping[str, NodeStatus]
) -> list[Alert]:
    label = f"VHID {alias.vhid} on {alias.interface}"
    if len(masters) > 1:
        message = f"Split brain: {label} is MASTER on {' and '.join(masters)}."
        return [Alert(SPLIT_BRAIN, message, vhid=alias.vhid, interface=alias.interface)]
    reporting_member = any(c.tier is not None and nodes[c.node].reporting for c in cells)
    unreadable = any(c.state == UNREADABLE for c in cells)
    if alias.enabled and reporting_member and not masters and not unreadable:
        message = f"No master: no node holds {label}."
        return [Alert(NO_MASTER, message, vhid=alias.vhid, interface=alias.interface)]
    return []


def _stale_claims(cells: Sequence[Cell], nodes: Mapping[str, NodeStatus]) -> set[str]:
    """The nodes whose MASTER claim is out of date next to another member's.

    A box that dies keeps its last state in Redis until its connection is seen
    closed or, when it vanished without closing it, until its heartbeat expires
    (``HEARTBEAT_TTL``): longer than its backup takes to time out. Its claim, from
    a node whose last report is more than a heartbeat and a half older than
    another member's becoming MASTER, is stale: shown as such, never counted, or
    every such failover would read as a split brain. Two live MASTERs both go on
    reporting, so they still are one."""
    claims = [cell for cell in cells if cell.state == MASTER]
    if len(claims) < 2:
        return set()
    late = 1.5 * statekeys.HEARTBEAT_INTERVAL
    stale = set()
    for cell in claims:
        seen = nodes[cell.node].last_seen
        took_over = [other.last_at for other in claims if other is not cell and other.last_at]
        if seen is not None and took_over and max(took_over) - seen > late:
            stale.add(cell.node)
    return stale


def _row_alert(alerts: Sequence[Alert], mismatch: bool) -> str:
    kinds = {alert.kind for alert in alerts}
    for kind in (SPLIT_BRAIN, NO_MASTER):
        if kind in kinds:
            return kind
    return WRONG_OWNER if mismatch else ""


def _not_reporting_message(status: NodeStatus) -> str:
    """The alert names the node: the banner stands apart from the matrix's columns."""
    seen = f" (last seen {_clock(status.last_seen)})" if status.last_seen else ""
    return f"Node {status.name} is not reporting{seen}."


def _left_out_alerts(snapshot: _Snapshot) -> list[Alert]:
    """An alert per alias a reporting node cannot run, naming the node, the alias and
    the cause (a node left with nothing to run must not read as merely waiting)."""
    alerts = []
    for name, heartbeat in snapshot.heartbeats.items():
        if not isinstance(heartbeat, statekeys.Heartbeat):
            continue
        for problem in heartbeat.problems:
            message = (
                f"Node {name} cannot run VHID {problem.vhid} on {problem.interface}:"
                f" {problem.cause}."
            )
            alerts.append(
                Alert(
                    ALIAS_LEFT_OUT,
                    message,
                    node=name,
                    vhid=problem.vhid,
                    interface=problem.interface,
                )
            )
    return alerts


def check_statuses(node_names: Sequence[str]) -> dict[str, dict[str, CheckStatus]]:
    """Node name -> check name -> what its heartbeat reports (the health checks page).

    One round trip for the heartbeats only. A node not reporting, or whose
    heartbeat does not parse, has no entry; Redis down gives {}: the page shows
    its checks without live results, it never fails.
    """
    try:
        client = redis_client(settings.REDIS_URL)
        try:
            raws = (
                client.mget([statekeys.heartbeat_key(n) for n in node_names]) if node_names else []
            )
        finally:
            client.close()
    except (RedisError, OSError) as exc:
        log.warning("live check results unavailable: %s", exc)
        return {}
    found: dict[str, dict[str, CheckStatus]] = {}
    for name, raw in zip(node_names, raws, strict=True):
        if not raw:
            continue
        try:
            beat = statekeys.Heartbeat.decode(raw)
        except statekeys.Unreadable as exc:
            _log_unreadable(name, "heartbeat", exc)
            continue
        found[name] = {c.name: c for c in beat.checks}
    return found


def compute_status(
    node_rows: Sequence[Node] | None = None,
    matrix: Sequence[services.MatrixRow] | None = None,
    client: Any = None,
) -> Status:
    """The live matrix now: one row per alias, one cell per node, and alerts.

    A page that renders the matrix itself passes its nodes and
    ``services.alias_matrix(nodes)`` so the join is read once. ``client``: a
    Redis client the caller keeps (the status hub's), instead of a connection
    opened for this computation (see ``_read_redis``)."""
    if node_rows is None or matrix is None:
        node_rows = list(Node.objects.all())
        matrix = services.alias_matrix(node_rows)
    snapshot: _Snapshot | None
    error = ""
    try:
        snapshot = _read_redis([node.name for node in node_rows], client)
    except (RedisError, OSError) as exc:
        log.warning("live state unavailable: %s", exc)
        snapshot, error = None, f"Redis cannot be reached: {exc}"
    live = snapshot is not None
    nodes = {node.name: _node_status(node, snapshot) for node in node_rows}
    alerts = [
        Alert(NODE_NOT_REPORTING, _not_reporting_message(status), node=status.name)
        for status in nodes.values()
        if live and not status.reporting
    ]
    if snapshot is not None:
        alerts.extend(_left_out_alerts(snapshot))
    rows = []
    for row in matrix:
        alias = row.alias
        cells = [
            _cell(nodes[n.name], priority, alias, snapshot)
            for n, priority in zip(node_rows, row.cells, strict=True)
        ]
        stale = _stale_claims(cells, nodes)
        if stale:
            cells = [replace(c, stale=True) if c.node in stale else c for c in cells]
        masters = [c.node for c in cells if c.state == MASTER and not c.stale]
        owner = expected_owner(alias, cells, nodes, live)
        unreadable = [c.node for c in cells if c.state == UNREADABLE]
        # Nothing to compare while a node that may hold the VIP cannot be read.
        known = bool(masters) or not unreadable
        mismatch = live and known and masters != ([owner] if owner else [])
        row_alerts = _alias_alerts(alias, cells, masters, nodes) if live else []
        alert = _row_alert(row_alerts, mismatch)
        rows.append(
            AliasStatus(
                id=alias.pk,
                vhid=alias.vhid,
                interface=alias.interface,
                addresses=row.addresses,
                enabled=alias.enabled,
                description=alias.description,
                cells=cells,
                expected_owner=owner,
                masters=masters,
                mismatch=mismatch,
                summary=_summary(alias, masters, live, unreadable),
                alert=alert,
                alert_text=ROW_ALERT_WORDS.get(alert, ""),
            )
        )
        alerts.extend(row_alerts)
    return Status(live, error, time.time(), list(nodes.values()), rows, alerts)


def fingerprint(status: Mapping[str, Any]) -> str:
    """``status`` without what changes every second by itself (the time it was
    made, heartbeat times): equal fingerprints mean nothing to show has changed."""
    stable = dict(status, generated_at=None)
    stable["nodes"] = [
        # A health check's time and count move at every probe; what it shows
        # (passing or not, its message, its demotion) is what makes news.
        dict(node, last_seen=None,
             checks=[dict(c, last_at=None, count=None) for c in node.get("checks", [])])
        for node in status["nodes"]
    ]  # fmt: skip
    return json.dumps(stable, sort_keys=True)


@dataclass(frozen=True)
class TimelineEntry:
    """One transition as the timeline lists it."""

    node: str
    from_state: str
    to_state: str
    reason: str
    at: datetime
    source: str = ""  # the demotion source behind it, if any

    @property
    def reason_label(self) -> str:
        labels = dict(TransitionReason.choices)
        label = str(labels.get(self.reason, self.reason))
        return f"{label} ({self.source})" if self.source else label


@dataclass(frozen=True)
class MasterSpan:
    """A node held MASTER from ``start`` to ``end`` (None: still does), with its
    place on the timeline's bar in percent of the window."""

    node: str
    start: datetime
    end: datetime | None
    left: float
    width: float


@dataclass
class Timeline:
    entries: list[TimelineEntry] = field(default_factory=list)
    spans: list[MasterSpan] = field(default_factory=list)
    bar_start: datetime | None = None  # the bar's left end; its right end is now


TIMELINE_HOURS = 24
# The bar spans from the oldest transition shown to now, but at least this long: a
# cluster that changed a few minutes ago would be a sliver on a 24-hour bar.
TIMELINE_MIN_BAR = timedelta(minutes=10)
TIMELINE_ENTRIES = 50  # per VIP, newest first; the API has the rest


def timelines(
    aliases: Sequence[AliasStatus], now: datetime | None = None, hours: int = TIMELINE_HOURS
) -> dict[int, Timeline]:
    """Per alias id: the transitions of the last ``hours`` and who was MASTER when.

    A transition names its VHID and interface rather than the alias (the
    history outlives a deleted alias), so it is matched on both; one with no
    interface matches on the VHID.
    """
    now = now or timezone.now()
    since = now - timedelta(hours=hours)
    rows = list(
        Transition.objects.filter(at__gte=since)
        .order_by("at", "id")
        .values_list(
            "node__name", "vhid", "interface", "from_state", "to_state", "reason", "source", "at"
        )
    )
    # One scale for every VIP, so that their bars line up.
    if rows:
        since = max(since, min(rows[0][-1], now - TIMELINE_MIN_BAR))
    window = max((now - since).total_seconds(), 1.0)
    by_key = {(alias.interface, alias.vhid): alias.id for alias in aliases}
    by_vhid = {alias.vhid: alias.id for alias in aliases}
    found: dict[int, Timeline] = {alias.id: Timeline(bar_start=since) for alias in aliases}
    opened: dict[tuple[int, str], datetime] = {}

    def close(pk: int, node: str, start: datetime, end: datetime | None) -> None:
        left = (start - since).total_seconds() / window * 100
        right = ((end or now) - since).total_seconds() / window * 100
        found[pk].spans.append(MasterSpan(node, start, end, round(left, 3), round(right - left, 3)))

    for node, vhid, interface, from_state, to_state, reason, source, at in rows:
        pk = by_key.get((interface, vhid)) if interface else by_vhid.get(vhid)
        if pk is None:
            continue
        found[pk].entries.append(TimelineEntry(node, from_state, to_state, reason, at, source))
        if from_state == MASTER:
            # Master since before the window when no opening transition was seen.
            close(pk, node, opened.pop((pk, node), since), at)
        elif (pk, node) in opened:
            # It stopped being MASTER with nothing recorded (killed hard, it came
            # back from INIT): its span ends here at the latest, not dropped when
            # the node becomes MASTER again.
            close(pk, node, opened.pop((pk, node)), at)
        if to_state == MASTER:
            opened[(pk, node)] = at
    for (pk, node), start in opened.items():
        close(pk, node, start, None)
    for timeline in found.values():
        timeline.entries = timeline.entries[::-1][:TIMELINE_ENTRIES]
    return found


# The event stream (cluster/views.py's cluster_events serves it).
KEEPALIVE = 15.0  # a comment this often keeps proxies from closing an idle stream
RETRY_MS = 2000  # what the browser waits before reconnecting


def sse(event: str, data: Mapping[str, Any]) -> str:
    """One server-sent event; the JSON is on one line, as ``data:`` requires."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
