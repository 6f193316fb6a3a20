"""Template helpers for the console: the user's role and what they may do."""

from __future__ import annotations

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
