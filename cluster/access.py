"""Who may do what: the one place every page, API view and admin class asks.

Two roles. An *administrator* (a superuser, or a member of the group
``administrator``) changes everything. *Support* (a member of the group
``support``) reads everything and changes nothing. Any other user, even a
logged-in one, has no access to the cluster.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, Group

from cluster.choices import Role

ADMINISTRATOR_GROUP = Role.ADMINISTRATOR.value
SUPPORT_GROUP = Role.SUPPORT.value

# Anything request.user may be; typed loosely as callers pass Django and DRF users.
UserLike = Any

_CACHE_ATTR = "_cluster_role"


def role(user: UserLike) -> Role | None:
    """The user's role, or None. Cached on the user object for the request."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    if not getattr(user, "is_active", True):
        return None
    if hasattr(user, _CACHE_ATTR):
        cached: Role | None = getattr(user, _CACHE_ATTR)
        return cached
    found: Role | None
    if getattr(user, "is_superuser", False):
        found = Role.ADMINISTRATOR
    else:
        names = set(user.groups.values_list("name", flat=True))
        if ADMINISTRATOR_GROUP in names:
            found = Role.ADMINISTRATOR
        elif SUPPORT_GROUP in names:
            found = Role.SUPPORT
        else:
            found = None
    setattr(user, _CACHE_ATTR, found)
    return found


def role_name(user: UserLike) -> str:
    """The role as shown on every page: "Administrator", "Support" or ""."""
    found = role(user)
    return found.label if found is not None else ""


def can_view(user: UserLike) -> bool:
    return role(user) is not None


def can_change(user: UserLike) -> bool:
    return role(user) == Role.ADMINISTRATOR


def forget_role(user: UserLike) -> None:
    """Drop the role cached on ``user`` (after its groups or flags changed)."""
    if hasattr(user, _CACHE_ATTR):
        delattr(user, _CACHE_ATTR)


def set_role(user: AbstractBaseUser, new_role: Role | None) -> None:
    """Give ``user`` exactly ``new_role`` (None: no role) and admin-site access to match.

    Both roles use the admin site (support read-only), which needs ``is_staff``; a
    user without a role loses it, unless a superuser. Called by the services, which
    audit the change, and by tests and the demo to set up users.
    """
    groups = user.groups  # type: ignore[attr-defined]
    groups.remove(*Group.objects.filter(name__in=[ADMINISTRATOR_GROUP, SUPPORT_GROUP]))
    if new_role is not None:
        group, _ = Group.objects.get_or_create(name=new_role.value)
        groups.add(group)
    user.is_staff = new_role is not None or bool(getattr(user, "is_superuser", False))  # type: ignore[attr-defined]
    user.save(update_fields=["is_staff"])
    forget_role(user)


def make_administrator(user: AbstractBaseUser) -> None:
    """Give ``user`` the administrator role (and admin-site access)."""
    set_role(user, Role.ADMINISTRATOR)


def make_support(user: AbstractBaseUser) -> None:
    """Give ``user`` the read-only support role (and read-only admin-site access)."""
    set_role(user, Role.SUPPORT)
