from __future__ import annotations

from rest_framework.routers import DefaultRouter

from cluster.api import views

app_name = "api"

router = DefaultRouter()
router.register("nodes", views.NodeViewSet, basename="node")
router.register("aliases", views.AliasViewSet, basename="ipalias")

urlpatterns = router.urls
