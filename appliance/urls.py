"""URLs of the appliance: the admin, the REST API and its docs, then the pages."""

from __future__ import annotations

from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

from cluster.admin import own_password_change
from cluster.api.views import api_docs
from cluster.metrics import metrics_view

urlpatterns = [
    # Ahead of the admin's own page of that URL: the change goes through the services.
    path(
        "admin/password_change/",
        admin.site.admin_view(own_password_change),
        name="own-password-change",
    ),
    path("admin/", admin.site.urls),
    path("api/v1/", include("cluster.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", api_docs, name="api-docs"),
    # Prometheus's scrape (cluster/metrics.py): a bearer token or an API token.
    path("metrics", metrics_view, name="metrics"),
    # Browsers ask for /favicon.ico on pages without an icon link (the admin).
    path("favicon.ico", RedirectView.as_view(url=static("console/favicon.svg"))),
    path("", include("cluster.urls")),
]

# Django's 403 page, logged in one line rather than with a traceback; and under
# the API a URL that matches no route is answered in the API's JSON.
handler403 = "cluster.api.exceptions.permission_denied"
handler404 = "cluster.api.exceptions.page_not_found"
