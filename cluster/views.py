"""The console's pages: thin views over ``cluster.services``.

A view reads with the ORM, writes only through a service, and shows a
service's ``ValidationError`` on its form. ``change_required`` guards every
view that can change something: the support role gets 403 from it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import wraps
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseForbidden,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from redis.exceptions import RedisError

from cluster import access, choices, hub, live, services, statekeys
from cluster.checks import CheckStatus
from cluster.forms import (
    AliasForm,
    HealthCheckForm,
    NodeForm,
    add_service_errors,
    error_items,
    node_initial,
)
from cluster.models import AuditEntry, HealthCheck, IPAlias, Node

View = Callable[..., HttpResponse]
Saved = TypeVar("Saved", IPAlias, Node, HealthCheck)
ServiceForm = AliasForm | NodeForm | HealthCheckForm
AUDIT_PAGE_SIZE = 50


def _guard(allowed: Callable[[Any], bool], refusal: str) -> Callable[[View], View]:
    """A decorator: log in first, then 403 unless ``allowed(user)``."""

    def decorate(view: View) -> View:
        @wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not allowed(request.user):
                raise PermissionDenied(refusal)
            return view(request, *args, **kwargs)

        return login_required(guarded)

    return decorate


#: Pages that only read: either role.
view_required = _guard(access.can_view, "Your account has no role in this cluster.")
#: Pages that change something: administrators only; support gets 403.
change_required = _guard(access.can_change, "Your role cannot change the configuration.")


@dataclass(frozen=True)
class AliasRow:
    """One row of ``services.alias_matrix`` with its live status (None when Redis
    had nothing to say about it)."""

    alias: IPAlias
    addresses: list[str]
    cells: list[services.PriorityView | None]
    status: live.AliasStatus | None = None

    @property
    def live_cells(self) -> list[tuple[services.PriorityView | None, live.Cell | None]]:
        """(tier, live cell) per node, for the cluster page's matrix."""
        if self.status is None:
            return [(cell, None) for cell in self.cells]
        return list(zip(self.cells, self.status.cells, strict=True))


def hub_status() -> live.Status | None:
    """The newest status of this process's status hub (cluster/hub.py: computed
    once per change for every page and stream), one computed after this
    process's own last desired change; None when no hub runs here (the test
    client, a management command) or it has none in time."""
    update = hub.current_update()
    return update.status if update is not None else None


def page_status(nodes: Sequence[Node], matrix: Sequence[services.MatrixRow]) -> live.Status:
    """The live status for a page that lists ``nodes`` and ``matrix``: the hub's,
    when it speaks of the same nodes in the same order (each alias's cells are
    one per node) and of every alias listed; else computed here from the page's
    own read of the join (no hub, or a node or alias written by another process
    that the hub has not seen yet: its ``desired`` message is on its way)."""
    status = hub_status()
    if status is not None:
        same_nodes = [n.name for n in status.nodes] == [n.name for n in nodes]
        known = {a.id for a in status.aliases}
        if same_nodes and all(row.alias.pk in known for row in matrix):
            return status
    return live.compute_status(nodes, matrix)


def alias_rows(nodes: Sequence[Node]) -> tuple[live.Status, list[AliasRow]]:
    """The live status and every alias's row, in the page's order, from one read of
    the alias x node join; each row joined to its alias's status by id."""
    matrix = services.alias_matrix(nodes)
    status = page_status(nodes, matrix)
    by_id = {found.id: found for found in status.aliases}
    rows = [
        AliasRow(row.alias, row.addresses, row.cells, by_id.get(row.alias.pk)) for row in matrix
    ]
    return status, rows


def submit(request: HttpRequest, form: ServiceForm, write: Callable[[Any], Saved]) -> Saved | None:
    """On a valid POST, hand the form's data to ``write`` (a service call) and
    return what it saved; on a ``ValidationError``, put its messages on the
    form and return None, as for a GET or a form that did not parse."""
    if request.method != "POST" or not form.is_valid():
        return None
    try:
        return write(form.service_data())
    except ValidationError as error:
        add_service_errors(form, error)
        return None


@view_required
def home(request: HttpRequest) -> HttpResponse:
    return redirect("console:alias-list")


@view_required
def alias_list(request: HttpRequest) -> HttpResponse:
    nodes = list(Node.objects.all())
    can_change = access.can_change(request.user)
    context = {
        "page_title": "IP ALIAS addresses",
        "nav": "ip-alias",
        "can_change": can_change,
        # Rows link to <list_url><pk>/edit/ and .../delete/ (see urls.py):
        # reversing two URLs per row was a tenth of the page's time.
        "list_url": reverse("console:alias-list"),
        "nodes": nodes,
        "rows": alias_rows(nodes)[1],
        "colspan": len(nodes) + 7 + can_change,
    }
    return render(request, "console/alias_list.html", context)


@change_required
def alias_add(request: HttpRequest) -> HttpResponse:
    nodes = list(Node.objects.all())
    form = AliasForm(request.POST or None, nodes=nodes)
    saved = submit(request, form, lambda data: services.create_alias(request.user, data))
    if saved is not None:
        messages.success(request, f"Added {saved.label}.")
        return redirect("console:alias-list")
    return render_alias_form(request, form, None)


@change_required
def alias_edit(request: HttpRequest, pk: int) -> HttpResponse:
    alias = get_object_or_404(IPAlias, pk=pk)
    nodes = list(Node.objects.all())
    initial = AliasForm.initial_from(services.alias_form_data(alias), nodes)
    form = AliasForm(request.POST or None, nodes=nodes, editing=True, initial=initial)
    saved = submit(request, form, lambda data: services.update_alias(request.user, alias, data))
    if saved is not None:
        messages.success(request, f"Saved {saved.label}.")
        return redirect("console:alias-list")
    return render_alias_form(request, form, alias)


def render_alias_form(request: HttpRequest, form: AliasForm, alias: IPAlias | None) -> HttpResponse:
    password = form["password"]
    if form.errors and password.data and not password.errors:
        # The other values come back as typed; the password never does.
        password.help_text = (
            f"Type the password again: it is never sent back to the page. {password.help_text}"
        )
    title = f"Edit IP alias {alias.label}" if alias else "Add IP alias"
    context = {"page_title": title, "nav": "ip-alias", "form": form, "alias": alias}
    return render(request, "console/alias_form.html", context)


@change_required
@require_http_methods(["GET", "POST"])
def alias_delete(request: HttpRequest, pk: int) -> HttpResponse:
    alias = get_object_or_404(IPAlias, pk=pk)
    if request.method == "POST":
        label = alias.label
        services.delete_alias(request.user, alias)
        messages.success(request, f"Deleted {label}.")
        return redirect("console:alias-list")
    return render_confirm_delete(
        request,
        nav="ip-alias",
        page_title="Delete IP alias",
        crumbs=["Advanced view", "IP ALIAS addresses"],
        question=f"Delete the IP alias {alias.label}?",
        consequence=(
            "Every node gives up its addresses ("
            + ", ".join(address.address for address in alias.addresses.all())
            + ") and stops advertising this VHID."
        ),
        cancel_url=reverse("console:alias-list"),
    )


def render_confirm_delete(request: HttpRequest, **context: Any) -> HttpResponse:
    context.setdefault("page_title", context["question"].rstrip("?"))
    return render(request, "console/confirm_delete.html", context)


@dataclass(frozen=True)
class StatusRow:
    """One VIP on the status page: its matrix row, its timeline, and the nodes
    its timeline's bar shows (its legend: the bar's spans carry no text)."""

    row: AliasRow
    timeline: live.Timeline | None
    legend: list[str]


def status_rows(rows: Sequence[AliasRow], history: dict[int, live.Timeline]) -> list[StatusRow]:
    found = []
    for row in rows:
        timeline = history.get(row.alias.pk)
        spans = timeline.spans if timeline else []
        found.append(StatusRow(row, timeline, list(dict.fromkeys(s.node for s in spans))))
    return found


@view_required
def cluster_overview(request: HttpRequest) -> HttpResponse:
    nodes = list(Node.objects.all())
    status, rows = alias_rows(nodes)
    history = live.timelines([row.status for row in rows if row.status is not None])
    context = {
        "page_title": "Cluster",
        "nav": "cluster",
        "nodes": nodes,
        "status": status,
        "node_status": status.nodes,
        "rows": status_rows(rows, history),
        # VIP, expected owner, actual MASTER, alert, then one column per node.
        "colspan": len(nodes) + 4,
        "demo": settings.DEMO_MODE and access.can_change(request.user),
        "reason_labels": dict(choices.TransitionReason.choices),
        "timeline_entries": live.TIMELINE_ENTRIES,
    }
    return render(request, "console/cluster.html", context)


async def cluster_events(request: HttpRequest) -> HttpResponseBase:
    """The live status as server-sent events (``hub.event_stream``).

    Session-authenticated like the pages, but answers 403 rather than a
    redirect to the login page: an EventSource cannot follow one usefully.
    """
    user = await request.auser()
    if not await sync_to_async(access.can_view)(user):
        return HttpResponseForbidden("Log in with a role in this cluster.")
    response = StreamingHttpResponse(
        hub.event_stream(settings.REDIS_URL), content_type="text/event-stream"
    )
    # identity: GZipMiddleware (or a proxy) buffered every event (NOTES.md);
    # X-Accel-Buffering: nginx would buffer it too.
    response["Content-Encoding"] = "identity"
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


DEMO_ACTIONS = {
    "fail": (
        "{node} failed: its worker was killed hard, as a crash would. The other nodes "
        "take over its VIPs within the master-down interval (about 3 x advbase)."
    ),
    "restore": (
        "{node} restored: its worker starts again and, with preempt on, takes back "
        "the VIPs where it has the highest priority."
    ),
    "mail-stop": (
        "{node}'s mail service was stopped (killed); the box and its worker stay up. "
        "Its smtp health check fails after fall x interval, and the node is demoted: "
        "the next node takes over its VIPs."
    ),
    "mail-start": (
        "{node}'s mail service was started; once its smtp health check passes rise "
        "times, the demotion is cleared and, with preempt on, it takes its VIPs back."
    ),
}


@change_required
@require_POST
def node_demo_action(request: HttpRequest, name: str, action: str) -> HttpResponse:
    """Demo mode's "Fail node" / "Restore node" / "Stop mail service" / "Start mail
    service": a request to the demo supervisor
    (cluster/lab/) on ``statekeys.DEMO_CONTROL_CHANNEL``; it does the killing."""
    if not settings.DEMO_MODE or action not in DEMO_ACTIONS:
        raise Http404("Only the demo cluster can fail and restore nodes.")
    node = get_object_or_404(Node, name=name)
    done = False
    try:
        receivers = statekeys.request_demo_action(
            settings.REDIS_URL, action, node.name, timeout=live.REDIS_TIMEOUT
        )
    except (RedisError, OSError) as exc:
        text = f"Nothing was done: Redis cannot be reached ({exc})."
    else:
        if receivers == 0:
            text = f"Nothing was done to {node.name}: the demo supervisor is not running."
        else:
            done = True
            text = DEMO_ACTIONS[action].format(node=node.name)
    # The status page's script posts with fetch() and shows the answer in place,
    # so the live matrix keeps running; a plain form post (no script) redirects.
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"done": done, "message": text}, status=200 if done else 503)
    (messages.success if done else messages.error)(request, text)
    return redirect("console:cluster")


@view_required
def node_list(request: HttpRequest) -> HttpResponse:
    nodes = Node.objects.annotate(alias_count=Count("priorities"))
    heartbeats = {node.name: node for node in hub.current_status().nodes}
    context = {
        "page_title": "Cluster nodes",
        "nav": "nodes",
        "nodes": [(node, heartbeats.get(node.name)) for node in nodes],
        "max_nodes": choices.MAX_NODES,
    }
    return render(request, "console/node_list.html", context)


@change_required
def node_add(request: HttpRequest) -> HttpResponse:
    form = NodeForm(request.POST or None, initial={"ordinal": next_free_ordinal()})
    saved = submit(request, form, lambda data: services.create_node(request.user, data))
    if saved is not None:
        messages.success(request, f"Added node {saved.name}.")
        return redirect("console:node-list")
    return render_node_form(request, form, None)


@change_required
def node_edit(request: HttpRequest, pk: int) -> HttpResponse:
    node = get_object_or_404(Node, pk=pk)
    form = NodeForm(request.POST or None, initial=node_initial(node))
    saved = submit(request, form, lambda data: services.update_node(request.user, node, data))
    if saved is not None:
        messages.success(request, f"Saved node {saved.name}.")
        return redirect("console:node-list")
    return render_node_form(request, form, node)


def next_free_ordinal() -> int | None:
    used = set(Node.objects.values_list("ordinal", flat=True))
    free = [n for n in range(choices.ORDINAL_MIN, choices.ORDINAL_MAX + 1) if n not in used]
    return free[0] if free else None


def render_node_form(request: HttpRequest, form: NodeForm, node: Node | None) -> HttpResponse:
    title = f"Edit node {node.name}" if node else "Add cluster node"
    context = {"page_title": title, "nav": "nodes", "form": form, "node": node}
    return render(request, "console/node_form.html", context)


@change_required
@require_http_methods(["GET", "POST"])
def node_delete(request: HttpRequest, pk: int) -> HttpResponse:
    node = get_object_or_404(Node, pk=pk)
    errors: list[str] = []
    if request.method == "POST":
        try:
            services.delete_node(request.user, node, force=request.POST.get("force") == "1")
        except ValidationError as error:
            errors = [message for _key, found in error_items(error) for message in found]
        else:
            messages.success(request, f"Deleted node {node.name}.")
            return redirect("console:node-list")
    used_by = IPAlias.objects.filter(priorities__node=node).distinct()
    return render_confirm_delete(
        request,
        nav="nodes",
        page_title="Delete cluster node",
        crumbs=["Cluster nodes"],
        question=f"Delete the node {node.name}?",
        consequence=(
            f"{node.name} ({node.address}) leaves the cluster and is removed from every IP "
            "alias it is a member of. Where it was Primary, the remaining member with the "
            "lowest advskew that is not in maintenance becomes Primary (the lowest advskew "
            "of all when every remaining member is in maintenance); an alias left with no "
            "member is disabled."
        ),
        used_by=used_by,
        errors=errors,
        cancel_url=reverse("console:node-list"),
    )


@view_required
def audit_log(request: HttpRequest) -> HttpResponse:
    paginator = Paginator(AuditEntry.objects.all(), AUDIT_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    context = {"page_title": "Audit log", "nav": "audit", "page": page}
    return render(request, "console/audit_log.html", context)


# --------------------------------------------------------------------------
# Health checks (issue 10): System → Cluster → Health checks.

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveCheck:
    """One node's result of one check, as its heartbeat reports it (None: nothing
    reported, shown as "—")."""

    node: str
    status: CheckStatus | None = None

    @property
    def state(self) -> str:
        """passing, failing, pending (no result yet) or unknown (nothing reported)."""
        if self.status is None:
            return "unknown"
        if self.status.passing is None:
            return "pending"
        return "passing" if self.status.passing else "failing"

    @property
    def text(self) -> str:
        status = self.status
        if status is None:
            return "—"
        if status.passing is None:
            words = "no result yet"
        elif status.passing:
            words = "passing"
        else:
            words = f"failing {status.count}×"
            if status.message:
                words += f" ({status.message})"
        return f"{words} · boot gating" if status.gating else words


@dataclass(frozen=True)
class CheckRow:
    """A check with the nodes that run it, in ordinal order, and each one's result."""

    check: HealthCheck
    live: list[LiveCheck]


def live_check_statuses(node_names: Sequence[str]) -> Mapping[str, Mapping[str, CheckStatus]]:
    """Node name → check name → the status its heartbeat reports.

    The process's status hub's newest status when one runs (a node that is not
    reporting, or whose heartbeat is unreadable, reports nothing); otherwise read
    through ``live.check_statuses(node_names)``, one round trip to Redis; when
    that fails, nothing: a page with live parts degrades, it never fails.
    """
    status = hub_status()
    if status is not None:
        wanted = set(node_names)
        return {
            node.name: {c.name: CheckStatus.from_data(asdict(c)) for c in node.checks}
            for node in status.nodes
            if node.name in wanted and node.reporting and not node.unreadable
        }
    try:
        found = live.check_statuses(node_names)
    except Exception:
        logger.warning("health checks page: live check statuses unavailable", exc_info=True)
        return {}
    return found if isinstance(found, Mapping) else {}


def check_rows(nodes: Sequence[Node]) -> list[CheckRow]:
    statuses = live_check_statuses([node.name for node in nodes])
    rows = []
    for check in services.checks_with_nodes().order_by("name"):
        if check.scope == choices.CheckScope.ALL:
            names = [node.name for node in nodes]
        else:
            names = services.check_form_data(check)["nodes"]
        cells = []
        for name in names:
            status = (statuses.get(name) or {}).get(check.name)
            cells.append(LiveCheck(name, status if isinstance(status, CheckStatus) else None))
        rows.append(CheckRow(check, cells))
    return rows


@view_required
def check_list(request: HttpRequest) -> HttpResponse:
    nodes = list(Node.objects.all())
    context = {
        "page_title": "Health checks",
        "nav": "health-checks",
        "rows": check_rows(nodes),
        "nodes": nodes,
        "max_checks": choices.CHECKS_MAX,
        "list_url": reverse("console:check-list"),
    }
    return render(request, "console/health_check_list.html", context)


@change_required
def check_add(request: HttpRequest) -> HttpResponse:
    form = HealthCheckForm(request.POST or None, nodes=list(Node.objects.all()))
    saved = submit(request, form, lambda data: services.create_check(request.user, data))
    if saved is not None:
        messages.success(request, f"Added health check {saved.name}.")
        return redirect("console:check-list")
    return render_check_form(request, form, None)


@change_required
def check_edit(request: HttpRequest, pk: int) -> HttpResponse:
    check = get_object_or_404(services.checks_with_nodes(), pk=pk)
    initial = HealthCheckForm.initial_from(services.check_form_data(check))
    form = HealthCheckForm(request.POST or None, nodes=list(Node.objects.all()), initial=initial)
    saved = submit(request, form, lambda data: services.update_check(request.user, check, data))
    if saved is not None:
        messages.success(request, f"Saved health check {saved.name}.")
        return redirect("console:check-list")
    return render_check_form(request, form, check)


def render_check_form(
    request: HttpRequest, form: HealthCheckForm, check: HealthCheck | None
) -> HttpResponse:
    title = f"Edit health check {check.name}" if check else "Add health check"
    context = {"page_title": title, "nav": "health-checks", "form": form, "check": check}
    return render(request, "console/health_check_form.html", context)


@change_required
@require_http_methods(["GET", "POST"])
def check_delete(request: HttpRequest, pk: int) -> HttpResponse:
    check = get_object_or_404(services.checks_with_nodes(), pk=pk)
    if request.method == "POST":
        services.delete_check(request.user, check)
        messages.success(request, f"Deleted health check {check.name}.")
        return redirect("console:check-list")
    names = ", ".join(sorted(services.check_node_names(check))) or "no node"
    return render_confirm_delete(
        request,
        nav="health-checks",
        page_title="Delete health check",
        crumbs=["Cluster", "Health checks"],
        question=f"Delete the health check {check.name}?",
        consequence=(
            f"The nodes that run it ({names}) stop running it, and a demotion it holds "
            f"({check.source}) is lifted."
        ),
        cancel_url=reverse("console:check-list"),
    )
