"""Viewsets of the REST API: declarative, writes through ``cluster.services``."""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from drf_spectacular.views import SpectacularSwaggerView
from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cluster import access, hub, notify, services
from cluster.api.filters import (
    AliasFilterSet,
    EventFilterSet,
    HealthCheckFilterSet,
    NodeFilterSet,
    TransitionFilterSet,
)
from cluster.api.serializers import (
    AliasSerializer,
    ClusterEventSerializer,
    HealthCheckSerializer,
    NodeSerializer,
    NotificationChannelSerializer,
    StatusSerializer,
    TransitionSerializer,
)
from cluster.models import (
    ClusterEvent,
    HealthCheck,
    IPAlias,
    Node,
    NotificationChannel,
    Transition,
)


class AliasViewSet(viewsets.ModelViewSet[IPAlias]):
    """IP aliases (CARP virtual hosts) with their addresses and per-node priorities."""

    serializer_class = AliasSerializer
    filterset_class = AliasFilterSet
    search_fields = ["description", "interface", "addresses__ip", "priorities__node__name"]
    ordering_fields = ["vhid", "interface", "updated_at"]

    def get_queryset(self) -> QuerySet[IPAlias]:
        return IPAlias.objects.order_by("interface", "vhid")

    def list(self, request: Request, *args: object, **kwargs: object) -> Response:
        # The page's addresses and priorities in two queries (services.alias_views).
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        aliases = list(page if page is not None else queryset)
        context = {**self.get_serializer_context(), "alias_views": services.alias_views(aliases)}
        data = self.get_serializer(aliases, many=True, context=context).data
        return self.get_paginated_response(data) if page is not None else Response(data)

    def perform_destroy(self, instance: IPAlias) -> None:
        services.delete_alias(self.request.user, instance)


FORCE = OpenApiParameter(
    "force",
    OpenApiTypes.BOOL,
    description="Delete the node even if aliases use it (their priorities go with it).",
)


class NodeViewSet(viewsets.ModelViewSet[Node]):
    """The cluster's nodes (at most nine)."""

    serializer_class = NodeSerializer
    filterset_class = NodeFilterSet
    search_fields = ["name", "address", "interface"]
    ordering_fields = ["ordinal", "name"]

    def get_queryset(self) -> QuerySet[Node]:
        return Node.objects.order_by("ordinal")

    @extend_schema(parameters=[FORCE])
    def destroy(self, request: Request, *args: object, **kwargs: object) -> Response:
        force = services.parse_flag(request.query_params.get("force", "")) is True
        services.delete_node(request.user, self.get_object(), force=force)
        return Response(status=204)


class StatusView(APIView):
    """The live matrix: every alias x node with tier, derived advskew and the
    engine's state, expected and actual owner, and alerts (``cluster.live``).

    Always 200: when Redis cannot be reached, ``available`` is false and every
    cell's state is ``unknown``. Read from the process's status hub, which
    computes it once per change for every reader (cluster/hub.py).
    """

    @extend_schema(responses=StatusSerializer)
    def get(self, request: Request) -> Response:
        return Response(hub.current_data())


class TransitionViewSet(viewsets.ReadOnlyModelViewSet[Transition]):
    """State changes of the virtual hosts as the engines reported them, newest first."""

    serializer_class = TransitionSerializer
    filterset_class = TransitionFilterSet
    ordering_fields = ["at"]

    def get_queryset(self) -> QuerySet[Transition]:
        return Transition.objects.select_related("node").order_by("-at", "-id")


class ClusterEventViewSet(viewsets.ReadOnlyModelViewSet[ClusterEvent]):
    """Cluster events (owner changed, split brain, no master, node silent, check
    failing, drift, flapping), each stored once however many notifiers saw it;
    newest first. ``?kind=`` (repeatable) and ``?since=`` filter them."""

    serializer_class = ClusterEventSerializer
    filterset_class = EventFilterSet
    ordering_fields = ["at"]

    def get_queryset(self) -> QuerySet[ClusterEvent]:
        return ClusterEvent.objects.order_by("-at", "-id")


class NotificationChannelViewSet(viewsets.ModelViewSet[NotificationChannel]):
    """Where events are sent: e-mail recipients or a signed webhook."""

    serializer_class = NotificationChannelSerializer
    search_fields = ["name", "url"]
    ordering_fields = ["name"]

    def get_queryset(self) -> QuerySet[NotificationChannel]:
        return NotificationChannel.objects.order_by("name")

    def perform_destroy(self, instance: NotificationChannel) -> None:
        notify.delete_channel(self.request.user, instance)


_swagger = SpectacularSwaggerView.as_view(url_name="api-schema")


def api_docs(request: HttpRequest) -> HttpResponseBase:
    """Swagger UI, reached from the console's menu.

    A browser without a session is sent to the login page and back, rather
    than shown DRF's bare "401 Unauthorized"; a user without a role gets the
    console's 403 page. A request with an ``Authorization`` header is left to
    the API's own authentication. Once on the page, "Authorize" with
    ``Token <key>`` makes the "Try it out" calls with that token.
    """
    if "HTTP_AUTHORIZATION" not in request.META:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not access.can_view(request.user):
            raise PermissionDenied("Your account has no role in this cluster.")
    return _swagger(request)


# --------------------------------------------------------------------------
# Health checks (issue 10)


class HealthCheckViewSet(viewsets.ModelViewSet[HealthCheck]):
    """Health checks: what each node checks on itself (its mail service, a port, a
    URL, free disk space, a command); a failing one demotes the node by its weight."""

    serializer_class = HealthCheckSerializer
    filterset_class = HealthCheckFilterSet
    search_fields = ["name", "host", "path"]
    ordering_fields = ["name", "kind", "updated_at"]

    def get_queryset(self) -> QuerySet[HealthCheck]:
        return services.checks_with_nodes().order_by("name")

    def perform_destroy(self, instance: HealthCheck) -> None:
        services.delete_check(self.request.user, instance)
