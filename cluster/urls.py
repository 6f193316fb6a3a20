"""The console's pages; the project's root URLconf includes them at ``/``."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path, re_path, reverse_lazy

from cluster import views, views_notify

app_name = "console"

urlpatterns = [
    path("", views.home, name="home"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="registration/login.html",
            redirect_authenticated_user=True,
            next_page=reverse_lazy("console:alias-list"),
        ),
        name="login",
    ),
    path(
        "logout/",
        auth_views.LogoutView.as_view(next_page=reverse_lazy("console:login")),
        name="logout",
    ),
    path("system/advanced/ip-alias/", views.alias_list, name="alias-list"),
    path("system/advanced/ip-alias/add/", views.alias_add, name="alias-add"),
    path("system/advanced/ip-alias/<int:pk>/edit/", views.alias_edit, name="alias-edit"),
    path("system/advanced/ip-alias/<int:pk>/delete/", views.alias_delete, name="alias-delete"),
    path("system/cluster/", views.cluster_overview, name="cluster"),
    path("system/cluster/events/", views.cluster_events, name="cluster-events"),
    path("system/cluster/nodes/", views.node_list, name="node-list"),
    path("system/cluster/nodes/add/", views.node_add, name="node-add"),
    path("system/cluster/nodes/<int:pk>/edit/", views.node_edit, name="node-edit"),
    path("system/cluster/nodes/<int:pk>/delete/", views.node_delete, name="node-delete"),
    # Demo mode only (404 otherwise): "fail", "restore", "mail-stop" or "mail-start", POST.
    re_path(
        r"^system/cluster/nodes/(?P<name>[-a-z0-9]+)/(?P<action>fail|restore|mail-stop|mail-start)$",
        views.node_demo_action,
        name="node-demo",
    ),
    path(
        "system/cluster/notifications/",
        views_notify.channel_list,
        name="notification-list",
    ),
    path(
        "system/cluster/notifications/add/",
        views_notify.channel_add,
        name="notification-add",
    ),
    path(
        "system/cluster/notifications/<int:pk>/edit/",
        views_notify.channel_edit,
        name="notification-edit",
    ),
    path(
        "system/cluster/notifications/<int:pk>/delete/",
        views_notify.channel_delete,
        name="notification-delete",
    ),
    path(
        "system/cluster/notifications/<int:pk>/test/",
        views_notify.channel_test,
        name="notification-test",
    ),
    path("system/audit/", views.audit_log, name="audit-log"),
    # Health checks (issue 10)
    path("system/cluster/health-checks/", views.check_list, name="check-list"),
    path("system/cluster/health-checks/add/", views.check_add, name="check-add"),
    path("system/cluster/health-checks/<int:pk>/edit/", views.check_edit, name="check-edit"),
    path("system/cluster/health-checks/<int:pk>/delete/", views.check_delete, name="check-delete"),
]
