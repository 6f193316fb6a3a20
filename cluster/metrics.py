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
import hmac
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
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


class ClusterCollector(Collector):
    """The cluster's metrics, built at each scrape (see the module doc)."""

    def describe(self) -> Iterator[Metric]:
        return iter(())  # registering must not read the database or Redis

    def collect(self) -> Iterator[Metric]:
        from cluster import hub

        status = hub.current_status()
        names = [node.name for node in status.nodes]
        snapshot = _snapshot(names) if status.available else None
        yield from _status_metrics(status)
        if snapshot is not None:
            yield from _counter_metrics(snapshot)
        yield from _transition_metrics()
        events = CounterMetricFamily(
            "carp_events", "Cluster events detected, by kind.", labels=["kind"]
        )
        for kind, count in sorted(event_counts().items()):
            events.add_metric([kind], count)
        yield events
        computations = CounterMetricFamily(
            "carp_status_computations",
            "Computations of the live status by this process's status hub.",
        )
        shared = hub.shared()
        computations.add_metric([], shared.computations if shared is not None else 0)
        yield computations


REGISTRY.register(ClusterCollector())


def render() -> bytes:
    """The exposition text of a scrape (runs the database and Redis reads)."""
    return generate_latest(REGISTRY)


def _snapshot(names: list[str]) -> Any:
    try:
        return live._read_redis(names)
    except (RedisError, OSError) as exc:
        log.warning("metrics: live state unavailable: %s", exc)
        return None


def _gauge(name: str, doc: str, labels: Iterable[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


VIP_LABELS = ("vhid", "interface", "node")


def _status_metrics(status: live.Status) -> Iterator[Metric]:
    available = _gauge("carp_live_state_available", "1 when Redis could be read.", [])
    available.add_metric([], 1 if status.available else 0)
    yield available

    up = _gauge("carp_node_up", "1 while the node's heartbeat is fresh (reporting).", ["node"])
    maintenance = _gauge("carp_node_maintenance", "1 while the node is in maintenance.", ["node"])
    demotion = _gauge(
        "carp_node_demotion",
        "The advskew a demotion source adds to every virtual host of the node.",
        ["node", "source"],
    )
    seen = _gauge(
        "carp_node_last_seen_timestamp_seconds", "The node's last heartbeat (epoch).", ["node"]
    )
    for node in status.nodes:
        up.add_metric([node.name], 1 if node.reporting else 0)
        maintenance.add_metric([node.name], 1 if node.maintenance else 0)
        for entry in node.demotion.sources:
            demotion.add_metric([node.name, entry.source], entry.level)
        if node.last_seen is not None:
            seen.add_metric([node.name], node.last_seen)
    yield from (up, maintenance, demotion, seen)

    state = _gauge(
        "carp_vip_state", "1 for the cell's current state (label state).", [*VIP_LABELS, "state"]
    )
    is_master = _gauge("carp_vip_is_master", "1 while the node holds the VIP.", VIP_LABELS)
    configured = _gauge(
        "carp_vip_advskew_configured",
        "The advskew derived from the node's tier (desired state, before demotion).",
        VIP_LABELS,
    )
    effective = _gauge(
        "carp_vip_advskew_effective",
        "The advskew the engine advertises on the wire, demotion included.",
        VIP_LABELS,
    )
    masters = _gauge(
        "carp_vip_masters", "How many nodes hold the VIP (2 or more: split brain).", VIP_LABELS[:2]
    )
    owner_ok = _gauge(
        "carp_vip_expected_owner_is_master",
        "1 when the expected owner (and only it) holds the VIP; 0 for a wrong owner.",
        VIP_LABELS[:2],
    )
    for alias in status.aliases:
        key = [str(alias.vhid), alias.interface]
        masters.add_metric(key, len(alias.masters))
        owner_ok.add_metric(key, 0 if alias.mismatch else 1)
        for cell in alias.cells:
            labels = [*key, cell.node]
            state.add_metric([*labels, cell.state], 1)
            is_master.add_metric(labels, 1 if cell.node in alias.masters else 0)
            if cell.advskew is not None:
                configured.add_metric(labels, cell.advskew)
            if cell.advertised_advskew is not None:
                effective.add_metric(labels, cell.advertised_advskew)
    yield from (state, is_master, configured, effective, masters, owner_ok)

    alerts = _gauge("carp_alerts", "The console's current alerts, by kind.", ["kind"])
    counts = dict.fromkeys(live.ALERT_KINDS, 0)
    for alert in status.alerts:
        counts[alert.kind] = counts.get(alert.kind, 0) + 1
    for kind, count in counts.items():
        alerts.add_metric([kind], count)
    yield alerts


def _counter_metrics(snapshot: Any) -> Iterator[Metric]:
    sent = CounterMetricFamily(
        "carp_adverts_sent", "Adverts the node sent for the virtual host.", labels=VIP_LABELS
    )
    received = CounterMetricFamily(
        "carp_adverts_received",
        "Valid adverts the node received for the virtual host.",
        labels=VIP_LABELS,
    )
    for node, hosts in sorted(snapshot.vhosts.items()):
        for (interface, vhid), values in sorted(hosts.items()):
            if isinstance(values, statekeys.VhostState):
                labels = [str(vhid), interface, node]
                sent.add_metric(labels, values.adverts_sent)
                received.add_metric(labels, values.adverts_received)
    yield from (sent, received)

    dropped = CounterMetricFamily(
        "carp_adverts_dropped", "Packets the node dropped, by reason.", labels=["node", "reason"]
    )
    errors = CounterMetricFamily(
        "carp_port_errors", "Failed operations of the engine's ports.", labels=["node", "port"]
    )
    check_passing = _gauge(
        "carp_check_passing",
        "1 when the health check passes, 0 when it fails (absent before its first result).",
        ["node", "check", "kind"],
    )
    check_demotion = _gauge(
        "carp_check_demotion", "The advskew the failing check adds.", ["node", "check", "kind"]
    )
    for node, beat in sorted(snapshot.heartbeats.items()):
        if not isinstance(beat, statekeys.Heartbeat):
            continue
        for reason, count in sorted(beat.drops.items()):
            dropped.add_metric([node, reason], count)
        for port, count in sorted(beat.port_errors.items()):
            errors.add_metric([node, port], count)
        for check in _checks(beat):
            labels = [node, check.name, check.kind]
            if check.passing is not None:
                check_passing.add_metric(labels, 1 if check.passing else 0)
            check_demotion.add_metric(labels, check.demotion)
    yield from (dropped, errors, check_passing, check_demotion)


def _transition_metrics() -> Iterator[Metric]:
    transitions = CounterMetricFamily(
        "carp_transitions",
        "State changes of the virtual hosts in the transition history, by reason.",
        labels=["node", "to_state", "reason"],
    )
    names = dict(Node.objects.values_list("pk", "name"))
    rows = (
        Transition.objects.order_by()
        .values_list("node_id", "to_state", "reason")
        .annotate(n=Count("pk"))
    )
    for node_id, to_state, reason, count in rows:
        transitions.add_metric([names.get(node_id, str(node_id)), to_state, reason], count)
    yield transitions


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
