"""The API's one permission rule, taken from ``cluster.access``."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from cluster import access


class IsAdministratorOrReadOnly(BasePermission):
    """Administrators may do everything; support may only read; others nothing."""

    message = "Your role may not change the cluster."

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return access.can_view(request.user)
        return access.can_change(request.user)
