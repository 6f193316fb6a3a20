from __future__ import annotations

from django.urls import path
from rest_framework.routers import DefaultRouter

from cluster.api import auth, views

app_name = "api"

router = DefaultRouter()
router.register("nodes", views.NodeViewSet, basename="node")
router.register("aliases", views.AliasViewSet, basename="ipalias")
router.register("transitions", views.TransitionViewSet, basename="transition")
# Health checks (issue 10)
router.register("health-checks", views.HealthCheckViewSet, basename="healthcheck")
router.register("events", views.ClusterEventViewSet, basename="clusterevent")
router.register(
    "notification-channels", views.NotificationChannelViewSet, basename="notificationchannel"
)

urlpatterns = [
    # POST username and password, get a new token (shown this once): how automation
    # obtains the `Authorization: Token …` header without the admin.
    path("auth/token/", auth.ObtainTokenView.as_view(), name="token"),
    path("status/", views.StatusView.as_view(), name="status"),
    *router.urls,
]
