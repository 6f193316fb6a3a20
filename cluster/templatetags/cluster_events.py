"""``{% events_panel %}``: what the status page's cluster events panel shows (_events.html).

A tag rather than a view's context, so that the status page's template only
includes ``console/_events.html`` and its view need not know about events. The
page's script (static/console/live.js) adds the events the stream announces
(``cluster_event``) to the same table, drawn from the same labels and flags.
"""

from __future__ import annotations

from typing import Any

from django import template

from cluster.choices import EventKind
from cluster.models import ClusterEvent

register = template.Library()

RECENT = 20

# The kinds that say something is wrong (flagged); the others say it is over.
WARNING_KINDS = frozenset(
    {
        EventKind.SPLIT_BRAIN,
        EventKind.NO_MASTER,
        EventKind.NODE_NOT_REPORTING,
        EventKind.CHECK_FAILING,
        EventKind.CONFIG_DRIFT,
        EventKind.FLAPPING,
    }
)


def recent_events(limit: int = RECENT) -> list[ClusterEvent]:
    """The newest cluster events, test notifications left out."""
    return list(ClusterEvent.objects.exclude(kind=EventKind.TEST).order_by("-at", "-id")[:limit])


@register.filter
def event_flag(kind: str) -> str:
    """The CSS class of a kind's flag."""
    return "flag-warn" if kind in WARNING_KINDS else "flag-off"


@register.simple_tag
def events_panel(limit: int = RECENT) -> dict[str, Any]:
    """The newest events, how many the panel holds, and each kind's label and flag
    (for the script, which draws an announced event's row as the template does)."""
    kinds = {
        str(kind): {"label": str(label), "flag": event_flag(kind)}
        for kind, label in EventKind.choices
        if kind != EventKind.TEST
    }
    return {"events": recent_events(limit), "limit": limit, "kinds": kinds}
