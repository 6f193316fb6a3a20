"""Retention of cluster events and notification deliveries: ``prune(now)``.

What goes, in batches of ``BATCH`` rows (each batch its own short transaction, so
that a large backlog never holds the database's lock for long: on SQLite the
notifier's own ``store_events`` waits for it):

- a delivery created more than ``DELIVERY_RETENTION_DAYS`` ago that is done (sent,
  or failed for good), with its attempt log. A pending or sending delivery stays
  whatever its age: its event has still to reach the channel (a disabled
  channel's deliveries wait for it), and its log says why it has not yet.
- an event from more than ``EVENT_RETENTION_DAYS`` ago with no delivery left
  (deliveries are created with their event, so with the default 30 against 90
  days the done ones have gone by then) that is not the newest of its subject.
  The newest is what detection compares with (``notify.load_memory``) and what
  the subject's next event is numbered after (``(subject, seq)`` is unique):
  without it a detector would see the subject's older condition, or its baseline,
  and store the same condition again, or number an event with a ``seq`` an event
  had before. A test event has a subject of its own that nothing continues, so it
  goes like any other.
- ``EventBaseline`` rows never: there is one per subject (unique), so they do not
  grow with time, and a subject with no event left is compared with its baseline.

``manage.py prune_events [--dry-run]`` runs it on demand; the notifier every
``PRUNE_EVERY`` seconds (`Schedule`).
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from cluster.choices import DeliveryStatus, EventKind
from cluster.models import ClusterEvent, Delivery, DeliveryAttempt

log = logging.getLogger(__name__)

BATCH = 500  # rows a delete statement
PRUNE_EVERY = 3600.0  # seconds between two prunes by one notifier
UNDELIVERED = (DeliveryStatus.PENDING, DeliveryStatus.SENDING)


@dataclass(frozen=True)
class Pruned:
    """How many rows went (or, in a dry run, would go)."""

    events: int = 0
    deliveries: int = 0
    attempts: int = 0

    def __str__(self) -> str:
        return (
            f"{self.events} event(s), {self.deliveries} delivery(ies),"
            f" {self.attempts} delivery attempt(s)"
        )


def _old_deliveries(cutoff: datetime.datetime) -> QuerySet[Delivery]:
    return Delivery.objects.filter(created_at__lt=cutoff).exclude(status__in=UNDELIVERED)


def _old_events(cutoff: datetime.datetime, delivery_cutoff: datetime.datetime) -> QuerySet[Any]:
    newer = ClusterEvent.objects.filter(subject=OuterRef("subject"), seq__gt=OuterRef("seq"))
    # A delivery that stays (undelivered, or within its own retention) keeps its event.
    staying = Delivery.objects.filter(event=OuterRef("pk")).filter(
        Q(status__in=UNDELIVERED) | Q(created_at__gte=delivery_cutoff)
    )
    return ClusterEvent.objects.filter(
        Q(kind=EventKind.TEST) | Exists(newer), ~Exists(staying), at__lt=cutoff
    )


def _in_batches(rows: QuerySet[Any], batch: int) -> dict[str, int]:
    """Delete ``rows`` ``batch`` at a time; the count per model label (Django's
    ``delete()`` count, cascades included). Each batch re-checks the condition in
    its own delete, so a row that stopped matching since it was listed stays."""
    deleted: dict[str, int] = {}
    while True:
        ids = list(rows.order_by("pk").values_list("pk", flat=True)[:batch])
        if not ids:
            return deleted
        with transaction.atomic():
            total, per_model = rows.filter(pk__in=ids).delete()
        for label, count in per_model.items():
            deleted[label] = deleted.get(label, 0) + count
        if total == 0 or len(ids) < batch:
            return deleted


def prune(
    now: datetime.datetime,
    *,
    event_days: int | None = None,
    delivery_days: int | None = None,
    dry_run: bool = False,
    batch: int = BATCH,
) -> Pruned:
    """Delete the events and deliveries past their retention (module docstring);
    with ``dry_run`` only count them. The days default to the settings."""
    if event_days is None:
        event_days = int(settings.EVENT_RETENTION_DAYS)
    if delivery_days is None:
        delivery_days = int(settings.DELIVERY_RETENTION_DAYS)
    event_cutoff = now - datetime.timedelta(days=event_days)
    delivery_cutoff = now - datetime.timedelta(days=delivery_days)
    deliveries = _old_deliveries(delivery_cutoff)
    events = _old_events(event_cutoff, delivery_cutoff)
    if dry_run:
        return Pruned(
            events=events.count(),
            deliveries=deliveries.count(),
            attempts=DeliveryAttempt.objects.filter(delivery__in=deliveries).count(),
        )
    # Deliveries first: an event goes only once none of its deliveries is left.
    gone = _in_batches(deliveries, batch)
    gone_events = _in_batches(events, batch)
    for label, count in gone_events.items():
        gone[label] = gone.get(label, 0) + count
    pruned = Pruned(
        events=gone.get(ClusterEvent._meta.label, 0),
        deliveries=gone.get(Delivery._meta.label, 0),
        attempts=gone.get(DeliveryAttempt._meta.label, 0),
    )
    if pruned != Pruned():
        log.info(
            "pruned %s (events older than %d days, deliveries older than %d days)",
            pruned, event_days, delivery_days,
        )  # fmt: skip
    return pruned


class Schedule:
    """Prune at most once every ``every`` seconds: the notifier's delivery loop
    asks at each round, which costs a clock read. The first ask prunes (a notifier
    restarted more often than hourly still prunes)."""

    def __init__(
        self, every: float = PRUNE_EVERY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.every = every
        self.clock = clock
        self.last: float | None = None

    def run(self) -> Pruned | None:
        """Prune if it is due; what went, or None when it was not due or failed."""
        now = self.clock()
        if self.last is not None and now - self.last < self.every:
            return None
        self.last = now  # a failure too waits for the next turn, not the next round
        try:
            return prune(timezone.now())
        except Exception:  # the database away: the next turn tries again
            log.exception("pruning old events and deliveries failed")
            return None
