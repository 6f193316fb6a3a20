"""Prometheus metrics of the cluster, from the live state (``/metrics``).

What a scrape reads, and where from:

- the live status (who is MASTER, the expected owner, alerts, who reports):
  the process's status hub (cluster/hub.py), which computed it at the last
  change; nothing is recomputed for a scrape unless no hub runs here;
- the counters the engines publish (adverts sent and received per virtual
  host, packet drops and port errors per node) and the health checks: read
  from Redis at the scrape, so that they are current (the status is not
  recomputed when only a counter moved);
- transitions by reason: counted in the database's transition history
  (pruned after ``CLUSTER_TRANSITION_RETENTION_DAYS``: a counter that drops is
  a reset to Prometheus);
- the failover-duration histogram: observed by this process's hub from each
  takeover's ``silence`` (the seconds from the replaced master's last advert
  to the new MASTER, measured by the engine that took over), so it starts empty
  when the web process starts, as any process-local histogram does.

Names follow Prometheus's conventions: the ``carp_`` prefix, ``_total`` on
counters, base units (seconds), one metric per meaning with labels
``vhid``/``interface``/``node``. A cell's state is ``carp_vip_state`` with a
``state`` label, 1 for the current state only (one series per cell rather than
one per state: 255 aliases x 9 nodes stay a small scrape).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hmac
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from redis.exceptions import RedisError
from rest_framework.exceptions import AuthenticationFailed

from cluster import access, live, statekeys
from cluster.carp.types import State
from cluster.checks import CheckStatus
from cluster.models import Node, Transition

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# From a master's last advert to the new MASTER: a master-down interval is
# 3 x advbase (+ advskew/256); sub-second mode (advbase 0) fails over in tens of ms.
FAILOVER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 3.5, 4.0, 5.0, 7.5, 10.0, 30.0)

REGISTRY = CollectorRegistry(auto_describe=False)
FAILOVER_SECONDS = Histogram(
    "carp_failover_duration_seconds",
    "Seconds from the replaced master's last advert to the new MASTER, per takeover "
    "seen by this process (its engine's measurement).",
    ["reason"],
    buckets=FAILOVER_BUCKETS,
    registry=REGISTRY,
)


def observe_message(message: statekeys.Message) -> None:
    """The status hub's listener: each takeover's failover time into the histogram."""
    if (
        isinstance(message, statekeys.TransitionMessage)
        and message.to_state == State.MASTER
        and message.silence is not None
    ):
        FAILOVER_SECONDS.labels(message.reason).observe(message.silence)


def _checks(beat: statekeys.Heartbeat) -> list[CheckStatus]:
    from cluster.hub import metrics_checks

    return metrics_checks(beat)


def event_counts() -> dict[str, int]:
    """Cluster events by kind.

    HOOK (issue 11, item 3): the stored events of the event detector
    (``cluster.models.ClusterEvent``, branch h11-notify), once it is merged:
    ``{kind: count}``. Until then, none.
    """
    from cluster import models

    model: Any = getattr(models, "ClusterEvent", None)
    if model is None:
        return {}
    rows = model.objects.values_list("kind").annotate(n=Count("pk"))
    return {str(kind): int(n) for kind, n in rows}


@dataclass
class Family:
    """One metric family, written straight to the text format (0.0.4).

    prometheus_client's families and writer validate and escape every label of
    every sample: at 255 aliases x 9 nodes (some 14,000 samples) a scrape spent
    most of its time there. Here a cell's label text is made once for all its
    samples, and label values are escaped (cached) as the format asks.
    """

    name: str  # as the samples are named: counters end in _total
    kind: str
    doc: str
    lines: list[str] = field(default_factory=list)

    def add(self, labels: str, value: float) -> None:
        number = _number(value)
        self.lines.append(
            f"{self.name}{{{labels}}} {number}" if labels else f"{self.name} {number}"
        )

    def text(self) -> str:
        doc = self.doc.replace("\\", r"\\").replace("\n", r"\n")
        head = f"# HELP {self.name} {doc}\n# TYPE {self.name} {self.kind}\n"
        return head + "".join(line + "\n" for line in self.lines)


def gauge(name: str, doc: str) -> Family:
    return Family(name, "gauge", doc)


def counter(name: str, doc: str) -> Family:
    return Family(f"{name}_total", "counter", doc)


def labels(**values: object) -> str:
    return ",".join(f'{key}="{_escape(str(value))}"' for key, value in values.items())


def collect() -> list[Family]:
    """Every family of a scrape (see the module doc for where each comes from)."""
    from cluster import hub

    status = hub.current_status()
    names = [node.name for node in status.nodes]
    snapshot = _snapshot(names) if status.available else None
    families = _status_metrics(status)
    if snapshot is not None:
        families.extend(_counter_metrics(snapshot))
    families.append(_transition_metrics())
    events = counter("carp_events", "Cluster events detected, by kind.")
    for kind, count in sorted(event_counts().items()):
        events.add(labels(kind=kind), count)
    computations = counter(
        "carp_status_computations", "Computations of the live status by this process's hub."
    )
    shared = hub.shared()
    computations.add("", shared.computations if shared is not None else 0)
    return [*families, events, computations]


def render() -> bytes:
    """The exposition text of a scrape (runs the database and Redis reads)."""
    text = "".join(family.text() for family in collect())
    return (text + generate_latest(REGISTRY).decode()).encode()


@dataclass
class Counters:
    """What a scrape reads from Redis itself: each node's heartbeat, and the two
    advert counters of each virtual host (parsing 2,295 whole hashes cost most
    of a scrape: a script hands back each node's counters as one text)."""

    heartbeats: dict[str, statekeys.Heartbeat | statekeys.Unreadable]
    adverts: dict[tuple[str, str, int], tuple[int, int]]


def _snapshot(names: list[str]) -> Counters | None:
    try:
        return _read_counters(names)
    except (RedisError, OSError) as exc:
        log.warning("metrics: live state unavailable: %s", exc)
        return None


# One node's advert counters in one reply: "<interface>:<vhid> <sent> <received>"
# per line. It reads keys it is not given (the set's members name them), which a
# single Redis allows; the appliance runs no Redis Cluster.
_COUNTERS_SCRIPT = """
local out = {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.call('HMGET', ARGV[1] .. member, 'adverts_sent', 'adverts_received')
  out[#out + 1] = member .. ' ' .. (v[1] or '0') .. ' ' .. (v[2] or '0')
end
return table.concat(out, '\\n')
"""


def _read_counters(names: list[str]) -> Counters:
    client = live.redis_client(settings.REDIS_URL)
    try:
        script = client.register_script(_COUNTERS_SCRIPT)
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.get(statekeys.heartbeat_key(name))
            prefix = statekeys.vhost_key(name, "", 0)[: -len(":0")]  # carp:vh:<node>:
            script(keys=[statekeys.node_vhosts_key(name)], args=[prefix], client=pipe)
        replies = pipe.execute()
        heartbeats: dict[str, statekeys.Heartbeat | statekeys.Unreadable] = {}
        adverts: dict[tuple[str, str, int], tuple[int, int]] = {}
        for index, name in enumerate(names):
            raw, text = replies[2 * index], replies[2 * index + 1]
            if raw:
                try:
                    heartbeats[name] = statekeys.Heartbeat.decode(raw)
                except statekeys.Unreadable as exc:
                    heartbeats[name] = exc
            for line in (text or "").splitlines():
                member, _, counts = line.partition(" ")
                try:
                    interface, vhid = statekeys.parse_vhost_member(member)
                    sent, received = (int(n) for n in counts.split())
                except ValueError:
                    continue  # unreadable: its cell says so (live.py); no counter
                adverts[(name, interface, vhid)] = (sent, received)
        return Counters(heartbeats, adverts)
    finally:
        client.close()


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isfinite(value):
        return repr(float(value))
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


@functools.lru_cache(maxsize=4096)
def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _status_metrics(status: live.Status) -> list[Family]:
    available = gauge("carp_live_state_available", "1 when Redis could be read.")
    available.add("", 1 if status.available else 0)
    up = gauge("carp_node_up", "1 while the node's heartbeat is fresh (reporting).")
    maintenance = gauge("carp_node_maintenance", "1 while the node is in maintenance.")
    demotion = gauge(
        "carp_node_demotion", "The advskew a demotion source adds to the node's virtual hosts."
    )
    seen = gauge("carp_node_last_seen_timestamp_seconds", "The node's last heartbeat (epoch).")
    for node in status.nodes:
        name = labels(node=node.name)
        up.add(name, 1 if node.reporting else 0)
        maintenance.add(name, 1 if node.maintenance else 0)
        for entry in node.demotion.sources:
            demotion.add(labels(node=node.name, source=entry.source), entry.level)
        if node.last_seen is not None:
            seen.add(name, node.last_seen)

    state = gauge("carp_vip_state", "1 for the cell's current state (label state).")
    is_master = gauge("carp_vip_is_master", "1 while the node holds the VIP.")
    configured = gauge(
        "carp_vip_advskew_configured",
        "The advskew derived from the node's tier (desired state, before demotion).",
    )
    effective = gauge(
        "carp_vip_advskew_effective",
        "The advskew the engine advertises on the wire, demotion included.",
    )
    masters = gauge("carp_vip_masters", "How many nodes hold the VIP (2 or more: split brain).")
    owner_ok = gauge(
        "carp_vip_expected_owner_is_master",
        "1 when the expected owner (and only it) holds the VIP; 0 for a wrong owner.",
    )
    for alias in status.aliases:
        vip = labels(vhid=alias.vhid, interface=alias.interface)
        masters.add(vip, len(alias.masters))
        owner_ok.add(vip, 0 if alias.mismatch else 1)
        for cell in alias.cells:
            where = f'{vip},node="{_escape(cell.node)}"'
            state.add(f'{where},state="{_escape(cell.state)}"', 1)
            is_master.add(where, 1 if cell.node in alias.masters else 0)
            if cell.advskew is not None:
                configured.add(where, cell.advskew)
            if cell.advertised_advskew is not None:
                effective.add(where, cell.advertised_advskew)

    alerts = gauge("carp_alerts", "The console's current alerts, by kind.")
    counts = dict.fromkeys(live.ALERT_KINDS, 0)
    for alert in status.alerts:
        counts[alert.kind] = counts.get(alert.kind, 0) + 1
    for kind, count in counts.items():
        alerts.add(labels(kind=kind), count)
    return [available, up, maintenance, demotion, seen, state, is_master, configured,
            effective, masters, owner_ok, alerts]  # fmt: skip


def _counter_metrics(snapshot: Counters) -> list[Family]:
    sent = counter("carp_adverts_sent", "Adverts the node sent for the virtual host.")
    received = counter("carp_adverts_received", "Valid adverts the node received for it.")
    for (node, interface, vhid), (sent_count, received_count) in sorted(snapshot.adverts.items()):
        where = labels(vhid=vhid, interface=interface, node=node)
        sent.add(where, sent_count)
        received.add(where, received_count)
    dropped = counter("carp_adverts_dropped", "Packets the node dropped, by reason.")
    errors = counter("carp_port_errors", "Failed operations of the engine's ports.")
    passing = gauge(
        "carp_check_passing",
        "1 when the health check passes, 0 when it fails (absent before its first result).",
    )
    check_demotion = gauge("carp_check_demotion", "The advskew the failing check adds.")
    for node, beat in sorted(snapshot.heartbeats.items()):
        if not isinstance(beat, statekeys.Heartbeat):
            continue
        for reason, count in sorted(beat.drops.items()):
            dropped.add(labels(node=node, reason=reason), count)
        for port, count in sorted(beat.port_errors.items()):
            errors.add(labels(node=node, port=port), count)
        for check in _checks(beat):
            where = labels(node=node, check=check.name, kind=check.kind)
            if check.passing is not None:
                passing.add(where, 1 if check.passing else 0)
            check_demotion.add(where, check.demotion)
    return [sent, received, dropped, errors, passing, check_demotion]


def _transition_metrics() -> Family:
    transitions = counter(
        "carp_transitions",
        "State changes of the virtual hosts in the transition history, by reason.",
    )
    names = dict(Node.objects.values_list("pk", "name"))
    rows = (
        Transition.objects.order_by()
        .values_list("node_id", "to_state", "reason")
        .annotate(n=Count("pk"))
    )
    for node_id, to_state, reason, count in sorted(rows):
        node = names.get(node_id, str(node_id))
        transitions.add(labels(node=node, to_state=to_state, reason=reason), count)
    return transitions


# ---- the view -------------------------------------------------------------------------
# Scrapes are rendered here, one at a time, never on the server's thread for
# synchronous views (which every page and API call shares).
_EXECUTOR = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics")


async def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: never public. ``Authorization: Bearer <METRICS_BEARER_TOKEN>``
    (a scraper's token from the environment), or ``Authorization: Token <key>``:
    an API token of an administrator or support (403 for a user without a role);
    401 without either."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        if not _bearer_ok(credentials.strip()):
            return _unauthorized("The bearer token is not the scrape token.")
    elif scheme.lower() == "token":
        user = await sync_to_async(_token_user)(request)
        if user is None:
            return _unauthorized("The API token is not valid.")
        if not await sync_to_async(access.can_view)(user):
            return HttpResponse(
                "Your account has no role in this cluster.\n", status=403, content_type="text/plain"
            )
    else:
        return _unauthorized("Send a scrape bearer token or an API token.")
    body = await asyncio.get_running_loop().run_in_executor(_EXECUTOR, _render_scrape)
    return HttpResponse(body, content_type=CONTENT_TYPE)


def _bearer_ok(offered: str) -> bool:
    expected: str = settings.METRICS_BEARER_TOKEN or ""
    # Compared in constant time, and never equal when none is configured.
    return bool(expected) and hmac.compare_digest(offered.encode(), expected.encode())


def _token_user(request: HttpRequest) -> Any:
    from cluster.api.authentication import TokenAuthentication

    try:
        found = TokenAuthentication().authenticate(request)
    except AuthenticationFailed:
        return None
    return found[0] if found else None


def _unauthorized(text: str) -> HttpResponse:
    response = HttpResponse(text + "\n", status=401, content_type="text/plain")
    response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


def _render_scrape() -> bytes:
    close_old_connections()
    try:
        return render()
    finally:
        close_old_connections()
