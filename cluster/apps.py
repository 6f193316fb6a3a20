from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks


class ClusterConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "cluster"
    verbose_name = "Cluster"

    def ready(self) -> None:
        checks.register(check_development_secrets, checks.Tags.security)
        # Connects the audit of each login lockout to axes's signal.
        # The events', channels' and deliveries' admin (it builds on cluster.admin).
        from cluster import (
            admin_notify,  # noqa: F401
            lockout,  # noqa: F401
        )


def check_development_secrets(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Say so when alias passwords are encrypted with the development key."""
    if settings.CLUSTER_SECRET_KEY_IS_DEVELOPMENT:
        return [
            checks.Warning(
                "CLUSTER_SECRET_KEY is not set: alias passwords are encrypted with a key "
                "derived from SECRET_KEY (development only).",
                hint="Set CLUSTER_SECRET_KEY (at least 32 characters) in the environment.",
                id="cluster.W001",
            )
        ]
    return []
