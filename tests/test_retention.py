"""Retention of events and deliveries (cluster/retention.py, manage.py prune_events),
against the database: events stored as the notifier stores them, then aged."""

from __future__ import annotations

import datetime
import io
import threading
import time
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cluster import events, notify, retention
from cluster.choices import DeliveryStatus
from cluster.models import (
    ClusterEvent,
    Delivery,
    DeliveryAttempt,
    EventBaseline,
    NotificationChannel,
)
from cluster.notifier import Notifier
from tests.test_settings import start

NOW = timezone.now()


def days_ago(days: float) -> datetime.datetime:
    return NOW - datetime.timedelta(days=days)


def stored(subject: str, condition: str, age_days: float, status: str = "sent",
           attempts: int = 1) -> ClusterEvent:  # fmt: skip
    """One event of ``subject`` stored ``age_days`` ago with its deliveries (one per
    channel) in ``status`` and ``attempts`` log lines each, all as old as the event."""
    when = days_ago(age_days)
    event = events.Event(events.NODE_NOT_REPORTING, subject, condition,
                         f"{subject} is {condition}.", when.timestamp())  # fmt: skip
    [row] = notify.store_events([event], {})
    Delivery.objects.filter(event=row).update(created_at=when, status=status, attempts=attempts)
    for delivery in Delivery.objects.filter(event=row):
        for number in range(1, attempts + 1):
            DeliveryAttempt.objects.create(delivery=delivery, number=number, notifier="t",
                                           ok=status == "sent", result="", at=when)  # fmt: skip
    return row


@pytest.fixture
def channel(alice: Any) -> NotificationChannel:
    return notify.create_channel(
        alice, {"name": "mail", "kind": "email", "recipients": ["ops@example.com"]}
    )


def left() -> list[tuple[str, int]]:
    return list(ClusterEvent.objects.order_by("subject", "seq").values_list("subject", "seq"))


def test_old_events_go_but_the_newest_of_each_subject_stays_and_detection_sees_no_change(
    channel,
):
    stored("node:node2", "down", 200)
    stored("node:node2", "up", 150)
    stored("node:node2", "down", 100)  # past retention, but the newest of its subject
    stored("node:node3", "down", 120)
    stored("node:node3", "up", 10)  # within retention
    EventBaseline.objects.create(subject="owner:eth0:1", condition="node1", at=days_ago(365))
    memory = notify.load_memory()
    pruned = retention.prune(NOW, event_days=90, delivery_days=30)
    assert (pruned.events, pruned.deliveries, pruned.attempts) == (3, 4, 4)  # 10 days: stays
    assert left() == [("node:node2", 3), ("node:node3", 2)]
    assert notify.load_memory() == memory
    assert EventBaseline.objects.filter(subject="owner:eth0:1").exists()
    # The subject's next event is numbered after its newest, as before the prune.
    again = events.Event(events.NODE_REPORTING, "node:node2", "up", "back", NOW.timestamp())
    [row] = notify.store_events([again], {})
    assert row.seq == 4


def test_an_event_with_a_pending_or_sending_delivery_stays_whatever_its_age(channel):
    waiting = stored("node:node2", "down", 400, status=DeliveryStatus.PENDING, attempts=3)
    claimed = stored("node:node2", "up", 300, status=DeliveryStatus.SENDING)
    stored("node:node2", "down", 200)
    pruned = retention.prune(NOW, event_days=90, delivery_days=30)
    assert (pruned.events, pruned.deliveries) == (0, 1)  # the newest's, sent
    assert left() == [("node:node2", 1), ("node:node2", 2), ("node:node2", 3)]
    assert Delivery.objects.filter(event__in=[waiting, claimed]).count() == 2
    assert DeliveryAttempt.objects.filter(delivery__event=waiting).count() == 3
    assert Delivery.objects.filter(status=DeliveryStatus.SENT).count() == 0  # the done one went


def test_done_deliveries_go_after_their_retention_with_their_log_and_their_events_stay(channel):
    old = stored("node:node2", "down", 40, status=DeliveryStatus.FAILED, attempts=8)
    recent = stored("node:node2", "up", 20)
    pruned = retention.prune(NOW, event_days=90, delivery_days=30)
    assert (pruned.events, pruned.deliveries, pruned.attempts) == (0, 1, 8)
    assert left() == [("node:node2", 1), ("node:node2", 2)]
    assert not Delivery.objects.filter(event=old).exists()
    assert DeliveryAttempt.objects.filter(delivery__event=recent).count() == 1


def test_an_event_stays_while_a_delivery_within_its_own_longer_retention_is_left(channel):
    stored("node:node2", "down", 100)
    stored("node:node2", "up", 95)
    pruned = retention.prune(NOW, event_days=90, delivery_days=120)
    assert pruned == retention.Pruned()
    assert len(left()) == 2


def test_old_test_notifications_go_though_each_is_the_only_event_of_its_subject(alice, channel):
    test = notify.send_test(alice, channel)
    ClusterEvent.objects.filter(pk=test.pk).update(at=days_ago(100))
    Delivery.objects.filter(event=test).update(status=DeliveryStatus.SENT, created_at=days_ago(100))
    assert retention.prune(NOW, event_days=90, delivery_days=30).events == 1
    assert not ClusterEvent.objects.exists()


def test_it_deletes_in_bounded_batches(channel):
    for age in range(200, 100, -10):  # ten events, the newest of them stays
        stored("node:node2", "down" if age % 20 else "up", age)
    with CaptureQueriesContext(connection) as queries:
        pruned = retention.prune(NOW, event_days=90, delivery_days=30, batch=4)
    assert (pruned.events, pruned.deliveries) == (9, 10)
    assert left() == [("node:node2", 10)]
    table = ClusterEvent._meta.db_table
    event_deletes = [q for q in queries if q["sql"].startswith(f'DELETE FROM "{table}"')]
    assert len(event_deletes) == 3  # 4 + 4 + 1


def test_a_dry_run_counts_what_the_prune_then_deletes_and_deletes_nothing(channel):
    stored("node:node2", "down", 200, attempts=2)
    stored("node:node2", "up", 100)
    stored("node:node2", "down", 50)
    stored("node:node2", "up", 1)
    before = (ClusterEvent.objects.count(), Delivery.objects.count())
    counted = retention.prune(NOW, event_days=90, delivery_days=30, dry_run=True)
    assert (ClusterEvent.objects.count(), Delivery.objects.count()) == before
    assert counted == retention.Pruned(events=2, deliveries=3, attempts=4)
    assert retention.prune(NOW, event_days=90, delivery_days=30) == counted


def test_prune_events_prints_what_it_deleted_and_a_dry_run_what_it_would(channel, settings):
    settings.EVENT_RETENTION_DAYS, settings.DELIVERY_RETENTION_DAYS = 90, 30
    stored("node:node2", "down", 200)
    stored("node:node2", "up", 100)
    stored("node:node2", "down", 1, status=DeliveryStatus.PENDING)
    out = io.StringIO()
    call_command("prune_events", "--dry-run", stdout=out)
    assert out.getvalue().startswith(
        "would delete 2 event(s), 2 delivery(ies), 2 delivery attempt(s)"
        " (events older than 90 day(s), deliveries older than 30 day(s))"
    )
    assert ClusterEvent.objects.count() == 3
    out = io.StringIO()
    call_command("prune_events", stdout=out)
    assert out.getvalue().startswith("deleted 2 event(s), 2 delivery(ies), 2 delivery attempt(s)")
    out = io.StringIO()
    call_command("prune_events", stdout=out)
    assert out.getvalue().startswith("deleted 0 event(s), 0 delivery(ies), 0 delivery attempt(s)")
    assert left() == [("node:node2", 3)]


def test_the_notifiers_schedule_prunes_at_its_first_round_then_at_most_once_an_hour(
    channel, settings
):
    settings.EVENT_RETENTION_DAYS, settings.DELIVERY_RETENTION_DAYS = 90, 30
    clock = [1000.0]
    schedule = retention.Schedule(every=3600, clock=lambda: clock[0])
    stored("node:node2", "down", 200)
    stored("node:node2", "up", 100)
    assert schedule.run() == retention.Pruned(events=1, deliveries=2, attempts=2)
    stored("node:node3", "down", 200)
    stored("node:node3", "up", 100)
    clock[0] += 3599
    assert schedule.run() is None
    assert ClusterEvent.objects.filter(subject="node:node3").count() == 2
    clock[0] += 1
    assert schedule.run() == retention.Pruned(events=1, deliveries=2, attempts=2)


def test_the_retention_settings_refuse_a_value_below_one_day_naming_the_variable():
    for name in ("EVENT_RETENTION_DAYS", "DELIVERY_RETENTION_DAYS"):
        result = start(DEBUG="1", **{name: "0"})
        assert result.returncode != 0
        assert f"{name} must be between 1 and 36500; got 0." in result.stderr


@pytest.mark.django_db(transaction=True)
def test_a_running_notifiers_delivery_loop_prunes_at_its_first_round(alice: Any) -> None:
    notify.create_channel(alice, {"name": "m", "kind": "email", "recipients": ["o@example.com"]})
    stored("node:node2", "down", 200)
    stored("node:node2", "up", 100)
    notifier = Notifier("t", status=dict)
    sender = threading.Thread(target=notifier._delivery_loop)
    sender.start()
    try:
        deadline = time.monotonic() + 30  # a busy machine: what matters is that it happens
        while ClusterEvent.objects.count() > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        notifier.shutdown()
        sender.join(30)
    assert left() == [("node:node2", 2)]
    assert not sender.is_alive()
