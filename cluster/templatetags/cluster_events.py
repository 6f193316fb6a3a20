"""``{% recent_events %}``: the cluster events the status page lists (_events.html).

A tag rather than a view's context, so that the status page's template only
includes ``console/_events.html`` and its view need not know about events.
"""

from __future__ import annotations

from django import template

from cluster.choices import EventKind
from cluster.models import ClusterEvent

register = template.Library()

RECENT = 20


@register.simple_tag
def recent_events(limit: int = RECENT) -> list[ClusterEvent]:
    """The newest cluster events, test notifications left out."""
    return list(ClusterEvent.objects.exclude(kind=EventKind.TEST).order_by("-at", "-id")[:limit])
