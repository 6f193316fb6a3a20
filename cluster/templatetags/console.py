"""Template helpers for the console: the user's role and what they may do."""

from __future__ import annotations

import functools
import json
from typing import Any

from django import template
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from cluster import access
from cluster.choices import Priority
from cluster.services import PriorityView

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


@register.filter
@functools.cache
def tier_badge(cell: PriorityView | None) -> SafeString:
    """A node's tier for one alias with its derived advskew, or a dash; the
    titles give its advert interval and master-down time.

    A cached filter rather than an included template: the IP ALIAS page shows
    up to 255 x 9 of these, but there are only a few dozen different ones per
    advbase in use, and an include per cell doubled the page's render time.
    """
    if cell is None:
        return mark_safe('<span class="tier tier-none" title="not a member">—</span>')
    return format_html(
        '<span class="tier tier-{}" title="{}">{}</span><span class="skew" '
        'title="advskew on the wire; {}">skew {}</span>',
        cell.priority,
        cell.timing,
        Priority(cell.priority).label,
        cell.timing,
        cell.advskew,
    )


TIER_LETTERS = {Priority.PRIMARY: "P", Priority.SECONDARY: "S", Priority.BACKUP: "B"}


@register.filter
@functools.cache
def tier_chip(cell: PriorityView | None) -> SafeString:
    """``tier_badge`` in a nine-node column's width: "P 0" (the tier's letter and
    the derived advskew), the full words in the title; "—" for a non-member."""
    if cell is None:
        return mark_safe('<span class="chip chip-none" title="not a member">—</span>')
    tier = Priority(cell.priority)
    return format_html(
        '<span class="chip chip-{}" title="{}, advskew {} on the wire; {}">{}&thinsp;{}</span>',
        cell.priority,
        tier.label,
        cell.advskew,
        cell.timing,
        TIER_LETTERS[tier],
        cell.advskew,
    )
