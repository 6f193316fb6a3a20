"""Template helpers for the console: the user's role and what they may do."""

from __future__ import annotations

import json
from typing import Any

from django import template
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser

from cluster import access

register = template.Library()


@register.filter
def role_name(user: AbstractBaseUser | AnonymousUser) -> str:
    """The role shown in the header: administrator or support."""
    return access.role_name(user)


@register.filter
def can_change(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Whether the page shows controls that change the configuration."""
    return access.can_change(user)


@register.filter
def audit_value(value: Any) -> str:
    """One value of an audit snapshot, readable: lists one per line, priorities
    as "node1 primary (skew 0)", a missing value as a dash."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return "\n".join(audit_value(item) for item in value) or "—"
    if isinstance(value, dict) and {"node", "priority"} <= value.keys():
        skew = f" (skew {value['advskew']})" if "advskew" in value else ""
        return f"{value['node']} {value['priority']}{skew}"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)
