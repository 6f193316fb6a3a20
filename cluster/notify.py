"""Events stored once, and notifications delivered once per event per channel.

- ``store_events`` turns what ``cluster.events.detect`` found into ``ClusterEvent``
  rows, with a ``Delivery`` per channel that wants the kind, in one transaction.
  ``(subject, seq)`` is unique: when two notifiers detect the same change, the second
  insert fails and is dropped, so the event, and its deliveries, exist once.
- ``claim`` takes one due delivery by compare-and-set (an ``UPDATE ... WHERE
  status='pending' AND next_at <= now``, or a ``sending`` claim older than the
  lease, checked by its row count), the way healthchecks' ``sendalerts`` claims a
  flip: two notifiers never send the same delivery. A claim left by a notifier that
  died is taken over once its lease (``LEASE``) has run out.
- ``deliver`` sends (e-mail through Django's mail backend, webhooks as a signed JSON
  POST), logs the attempt, and marks the delivery sent, or pending again with an
  exponential back-off, or failed after ``MAX_ATTEMPTS``.
- The channel services (``create_channel`` ...) are the one place a channel is
  written: validation with field messages, the audit entry, the secret encrypted.

The payload and the signature are documented in the README ("Notifications").
"""

from __future__ import annotations

import concurrent.futures
import datetime
import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone

from cluster import events as detection
from cluster.choices import (
    CHANNEL_NAME_MAX_LENGTH,
    CHANNEL_RECIPIENTS_MAX,
    CHANNEL_SECRET_MAX_LENGTH,
    CHANNEL_URL_MAX_LENGTH,
    PASSWORD_CHANGED_MARK,
    AuditAction,
    ChannelKind,
    DeliveryStatus,
    EventKind,
)
from cluster.crypto import PasswordDecryptionError
from cluster.models import (
    AuditEntry,
    ClusterEvent,
    Delivery,
    DeliveryAttempt,
    EventBaseline,
    NotificationChannel,
)

log = logging.getLogger(__name__)

LEASE = datetime.timedelta(seconds=60)  # a claim older than this is a dead notifier's
MAX_ATTEMPTS = 8
BACKOFF_FIRST = 5.0  # seconds before the second attempt; doubles each time
BACKOFF_MAX = 600.0
SECRET_MIN_LENGTH = 16
SIGNATURE_HEADER = "X-Cluster-Signature"
TIMESTAMP_HEADER = "X-Cluster-Timestamp"
EVENT_KINDS = [k for k in EventKind.values if k != EventKind.TEST]


# ---- events ------------------------------------------------------------------------
def load_memory() -> dict[str, str]:
    """The condition last stored for every subject (what detection compares with)."""
    memory = dict(EventBaseline.objects.values_list("subject", "condition"))
    latest = ClusterEvent.objects.filter(subject=OuterRef("subject")).order_by("-seq")
    rows = ClusterEvent.objects.filter(seq=Subquery(latest.values("seq")[:1]))
    memory.update(rows.values_list("subject", "condition"))
    return memory


def _wanted_by(channels: Sequence[NotificationChannel], kind: str) -> list[NotificationChannel]:
    return [c for c in channels if c.wants(kind)]


def store_events(
    found: Sequence[detection.Event], memory: dict[str, str] | None = None
) -> list[ClusterEvent]:
    """Store each event unless its subject's last stored condition is already the
    event's (another detector stored it first), with its deliveries. ``memory`` is
    brought up to date with what the database holds for the subjects seen."""
    stored: list[ClusterEvent] = []
    if not found:
        return stored
    with transaction.atomic():  # one write for the batch; a savepoint per event
        return _store_events(found, memory)


def _store_events(
    found: Sequence[detection.Event], memory: dict[str, str] | None
) -> list[ClusterEvent]:
    stored: list[ClusterEvent] = []
    channels = list(NotificationChannel.objects.filter(enabled=True))
    for event in found:
        if event.baseline:
            _store_baseline(event, memory)
            continue
        last = (
            ClusterEvent.objects.filter(subject=event.subject)
            .order_by("-seq")
            .values_list("seq", "condition")
            .first()
        )
        if last is not None and last[1] == event.condition:
            if memory is not None:
                memory[event.subject] = last[1]
            continue
        seq = (last[0] if last else 0) + 1
        try:
            with transaction.atomic():
                row = ClusterEvent.objects.create(
                    kind=event.kind,
                    subject=event.subject,
                    seq=seq,
                    dedup_key=f"{event.subject}#{seq}"[:160],
                    condition=event.condition,
                    vhid=event.vhid,
                    interface=event.interface,
                    node=event.node,
                    old_owner=event.old_owner,
                    new_owner=event.new_owner,
                    cause=event.cause[:255],
                    message=event.message[:500],
                    detail=event.detail,
                    at=datetime.datetime.fromtimestamp(event.at, tz=datetime.UTC),
                )
                Delivery.objects.bulk_create(
                    Delivery(event=row, channel=c) for c in _wanted_by(channels, event.kind)
                )
        except IntegrityError:
            # Another detector stored this subject's next event between our read
            # and our insert: it is the same occurrence, stored once.
            current = (
                ClusterEvent.objects.filter(subject=event.subject)
                .order_by("-seq")
                .values_list("condition", flat=True)
                .first()
            )
            if memory is not None and current is not None:
                memory[event.subject] = current
            continue
        if memory is not None:
            memory[event.subject] = event.condition
        log.info("event %s: %s", row.kind, row.message)
        stored.append(row)
    return stored


def _store_baseline(event: detection.Event, memory: dict[str, str] | None) -> None:
    """Keep a subject's first known condition, unless it has one (or an event) already."""
    last = (
        ClusterEvent.objects.filter(subject=event.subject)
        .order_by("-seq")
        .values_list("condition", flat=True)
        .first()
    )
    if last is None:
        EventBaseline.objects.bulk_create(
            [EventBaseline(subject=event.subject, condition=event.condition)],
            ignore_conflicts=True,
        )
        last = (
            EventBaseline.objects.filter(subject=event.subject)
            .values_list("condition", flat=True)
            .first()
        )
    if memory is not None and last is not None:
        memory[event.subject] = last


# ---- delivery ----------------------------------------------------------------------
def _claimable(now: datetime.datetime) -> Q:
    due = Q(status=DeliveryStatus.PENDING, next_at__lte=now)
    stale = Q(status=DeliveryStatus.SENDING, claimed_at__lt=now - LEASE)
    return due | stale


def due_deliveries(limit: int = 100) -> list[int]:
    """Ids of the deliveries a notifier may claim now, oldest first."""
    now = timezone.now()
    # A disabled channel's deliveries wait (chosen here, not in the claim: the claim's
    # UPDATE stays on the row's own columns, which PostgreSQL re-checks under a lock).
    rows = Delivery.objects.filter(_claimable(now), channel__enabled=True).order_by("next_at", "id")
    return list(rows.values_list("id", flat=True)[:limit])


def claim(pk: int, notifier: str) -> Delivery | None:
    """Compare-and-set: take delivery ``pk`` if it is still claimable. The row count
    says whether this notifier won; only the winner sends."""
    now = timezone.now()
    won = Delivery.objects.filter(_claimable(now), pk=pk).update(
        status=DeliveryStatus.SENDING,
        claimed_by=notifier,
        claimed_at=now,
        attempts=F("attempts") + 1,
    )
    if won != 1:
        return None
    return Delivery.objects.select_related("event", "channel").get(pk=pk)


def backoff(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed try."""
    return float(min(BACKOFF_FIRST * 2 ** max(attempts - 1, 0), BACKOFF_MAX))


def payload(delivery: Delivery) -> dict[str, Any]:
    """The webhook's JSON body (README, "Notifications")."""
    event = delivery.event
    return {
        "event": {
            "id": event.pk,
            "kind": event.kind,
            "message": event.message,
            "at": event.at.isoformat(),
            "vhid": event.vhid,
            "interface": event.interface or None,
            "node": event.node or None,
            "old_owner": event.old_owner or None,
            "new_owner": event.new_owner or None,
            "cause": event.cause,
            "detail": event.detail,
        },
        "delivery": {"id": delivery.pk, "attempt": delivery.attempts},
        "channel": delivery.channel.name,
    }


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 keyed by the channel's secret over
    ``<timestamp>.<body>``, so a captured request cannot be replayed with a new time."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a new place to send the event (and its signature)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def send_webhook(delivery: Delivery) -> str:
    """POST the payload; returns the result in words, raises on failure."""
    channel = delivery.channel
    body = json.dumps(payload(delivery), separators=(",", ":"), sort_keys=True).encode()
    timestamp = str(int(time.time()))
    request = urllib.request.Request(channel.url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("User-Agent", "appliance-cluster-notifier")
    request.add_header("X-Cluster-Event", delivery.event.kind)
    request.add_header("X-Cluster-Event-Id", str(delivery.event_id))
    request.add_header("X-Cluster-Delivery", str(delivery.pk))
    request.add_header(TIMESTAMP_HEADER, timestamp)
    request.add_header(SIGNATURE_HEADER, signature(channel.get_secret(), timestamp, body))
    with _OPENER.open(request, timeout=settings.NOTIFY_WEBHOOK_TIMEOUT) as response:
        status = response.status
    if not 200 <= status < 300:
        raise OSError(f"HTTP {status}")
    return f"HTTP {status}"


def send_email(delivery: Delivery) -> str:
    event = delivery.event
    lines = [event.message, "", f"Kind: {event.get_kind_display()}", f"At: {event.at.isoformat()}"]
    for label, value in (
        ("VIP", f"VHID {event.vhid} on {event.interface}" if event.vhid else ""),
        ("Node", event.node),
        ("Old owner", event.old_owner),
        ("New owner", event.new_owner),
        ("Cause", event.cause),
    ):
        if value:
            lines.append(f"{label}: {value}")
    message = EmailMessage(
        subject=f"[cluster] {event.message}"[:200],
        body="\n".join(lines) + "\n",
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=list(delivery.channel.recipients),
        headers={"X-Cluster-Event": event.kind, "X-Cluster-Event-Id": str(event.pk)},
    )
    message.send()
    return f"sent to {len(delivery.channel.recipients)} recipient(s)"


def _send(delivery: Delivery) -> str:
    if delivery.channel.kind == ChannelKind.WEBHOOK:
        return send_webhook(delivery)
    return send_email(delivery)


def deliver(delivery: Delivery, notifier: str) -> bool:
    """Send one claimed delivery, log the attempt, and record the outcome. Returns
    whether it was sent. The outcome is written only while our claim holds."""
    started = time.monotonic()
    try:
        result, ok = _send(delivery), True
    except (OSError, ValueError, PasswordDecryptionError, urllib.error.URLError) as exc:
        result, ok = f"{type(exc).__name__}: {exc}", False
    except Exception as exc:  # a mail backend's own error class, say: logged, retried
        log.exception("delivery %s failed", delivery.pk)
        result, ok = f"{type(exc).__name__}: {exc}", False
    took = int((time.monotonic() - started) * 1000)
    now = timezone.now()
    changes: dict[str, Any]
    if ok:
        changes = {"status": DeliveryStatus.SENT, "sent_at": now, "last_error": ""}
    elif delivery.attempts >= MAX_ATTEMPTS:
        changes = {"status": DeliveryStatus.FAILED, "last_error": result[:500]}
    else:
        wait = datetime.timedelta(seconds=backoff(delivery.attempts))
        changes = {"status": DeliveryStatus.PENDING, "next_at": now + wait,
                   "last_error": result[:500]}  # fmt: skip
    with transaction.atomic():  # one write: the log line and the outcome together
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=delivery.attempts,
            notifier=notifier[:128],
            ok=ok,
            result=result[:500],
            duration_ms=took,
        )
        mine = Delivery.objects.filter(
            pk=delivery.pk, status=DeliveryStatus.SENDING, claimed_by=delivery.claimed_by,
            claimed_at=delivery.claimed_at,
        ).update(**changes)  # fmt: skip
    if not mine:
        log.warning("delivery %s: the claim ran out while sending (%s)", delivery.pk, result)
    log.info("delivery %s to %s: %s", delivery.pk, delivery.channel.name, result)
    return ok


def claim_and_deliver(pk: int, notifier: str) -> bool:
    """Claim delivery ``pk`` and, if this notifier won it, send it; whether it was sent."""
    delivery = claim(pk, notifier)
    return delivery is not None and deliver(delivery, notifier)


def deliver_due(
    notifier: str, limit: int = 100, pool: concurrent.futures.Executor | None = None
) -> int:
    """Claim and send every due delivery this notifier wins; returns how many it sent.
    With ``pool``, the deliveries go out side by side (one slow receiver, or two
    events of one failover, must not queue the others behind it)."""
    due = due_deliveries(limit)
    if pool is None:
        return sum(claim_and_deliver(pk, notifier) for pk in due)
    return sum(pool.map(lambda pk: claim_and_deliver(pk, notifier), due))


def notifier_name() -> str:
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


# ---- channels: validation, writes, audit -------------------------------------------
ChannelData = Mapping[str, Any]


def channel_snapshot(channel: NotificationChannel) -> dict[str, Any]:
    """The audit log's view of a channel: never the secret, only whether one is set."""
    return {
        "name": channel.name,
        "kind": channel.kind,
        "url": channel.url,
        "recipients": list(channel.recipients),
        "secret": "(set)" if channel.secret_encrypted else "",
        "events": list(channel.events),
        "enabled": channel.enabled,
    }


def _control_free(value: str) -> bool:
    return not any(ord(ch) < 32 or ord(ch) == 127 for ch in value)


def _clean_url(value: Any, errors: dict[str, list[str]]) -> str:
    if not isinstance(value, str) or not value:
        errors.setdefault("url", []).append("URL is required for a webhook.")
        return ""
    parsed = urllib.parse.urlsplit(value)
    if (
        len(value) > CHANNEL_URL_MAX_LENGTH
        or parsed.scheme not in ("http", "https")
        or not parsed.hostname
        or not _control_free(value)
        or " " in value
    ):
        errors.setdefault("url", []).append(
            f"URL must be an http:// or https:// URL with a host, at most"
            f" {CHANNEL_URL_MAX_LENGTH} characters."
        )
    return value


def _clean_recipients(value: Any, errors: dict[str, list[str]]) -> list[str]:
    if isinstance(value, str):
        value = [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]
    if not isinstance(value, list) or not value:
        errors.setdefault("recipients", []).append(
            "Recipients must list at least one e-mail address for an e-mail channel."
        )
        return []
    if len(value) > CHANNEL_RECIPIENTS_MAX:
        errors.setdefault("recipients", []).append(
            f"Recipients must be at most {CHANNEL_RECIPIENTS_MAX} addresses (got {len(value)})."
        )
        return []
    cleaned = []
    for item in value:
        try:
            if not isinstance(item, str):
                raise ValidationError("not text")
            validate_email(item)
        except ValidationError:
            errors.setdefault("recipients", []).append(
                f"Recipients must be e-mail addresses: {str(item)[:80]!r} is not one."
            )
            continue
        cleaned.append(item)
    return cleaned


def _clean_events(value: Any, errors: dict[str, list[str]]) -> list[str]:
    if value in (None, ""):
        return []
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors.setdefault("events", []).append("Events must be a list of event kinds.")
        return []
    unknown = [v for v in value if v not in EVENT_KINDS]
    if unknown:
        errors.setdefault("events", []).append(
            f"Events must be event kinds ({', '.join(EVENT_KINDS)}):"
            f" {unknown[0][:40]!r} is not one."
        )
    return sorted(set(value) & set(EVENT_KINDS), key=EVENT_KINDS.index)


def _flag(value: Any, key: str, errors: dict[str, list[str]]) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "True", "1", "on", 1):
        return True
    if value in ("false", "False", "0", "off", "", 0):
        return False
    errors.setdefault(key, []).append(f"{key.capitalize()} must be true or false.")
    return False


def validate_channel(
    data: ChannelData, channel: NotificationChannel | None = None
) -> dict[str, Any]:
    """The channel's values after ``data``, every rule checked; raises a
    ``ValidationError`` keyed by field (name, kind, url, recipients, secret, events,
    enabled). ``secret`` is in the result only when one is given."""
    errors: dict[str, list[str]] = {}
    stored = channel_snapshot(channel) if channel else None

    def value(key: str, default: Any) -> Any:
        # Absent on update (partial or not) keeps the stored value, as for aliases.
        if key in data:
            return data[key]
        return stored[key] if stored is not None else default

    name = value("name", "")
    if not isinstance(name, str) or not name.strip():
        errors["name"] = ["Name is required."]
    elif len(name) > CHANNEL_NAME_MAX_LENGTH or not _control_free(name):
        errors["name"] = [
            f"Name must be 1 to {CHANNEL_NAME_MAX_LENGTH} characters without control characters."
        ]
    elif (
        NotificationChannel.objects.filter(name=name.strip())
        .exclude(pk__in=[channel.pk] if channel else [])
        .exists()
    ):
        errors["name"] = [f"Name must be unique: a channel named {name.strip()!r} exists."]
    kind = value("kind", "")
    if kind not in ChannelKind.values:
        errors["kind"] = ["Kind must be email or webhook."]
    url = value("url", "")
    recipients: Any = value("recipients", [])
    result: dict[str, Any] = {
        "name": name.strip() if isinstance(name, str) else "",
        "kind": kind,
        "url": "",
        "recipients": [],
    }
    secret = data.get("secret", "")
    if secret is None:
        secret = ""
    if not isinstance(secret, str):
        errors["secret"] = ["Secret must be text."]
        secret = ""
    if kind == ChannelKind.WEBHOOK:
        result["url"] = _clean_url(url, errors)
        if recipients and "recipients" in data:
            errors["recipients"] = ["Recipients must be empty for a webhook channel."]
        has_secret = bool(secret) or bool(channel and channel.secret_encrypted)
        if not has_secret:
            errors.setdefault("secret", []).append(
                "Secret is required for a webhook: it signs every request (HMAC-SHA256)."
            )
        if secret and not SECRET_MIN_LENGTH <= len(secret) <= CHANNEL_SECRET_MAX_LENGTH:
            errors.setdefault("secret", []).append(
                f"Secret must be {SECRET_MIN_LENGTH} to {CHANNEL_SECRET_MAX_LENGTH} characters."
            )
    elif kind == ChannelKind.EMAIL:
        result["recipients"] = _clean_recipients(recipients, errors)
        if url and "url" in data:
            errors["url"] = ["URL must be empty for an e-mail channel."]
        if secret:
            errors["secret"] = ["Secret must be empty for an e-mail channel."]
    result["events"] = _clean_events(value("events", []), errors)
    result["enabled"] = _flag(value("enabled", True), "enabled", errors)
    if errors:
        raise ValidationError(errors)
    if secret:
        result["secret"] = secret
    return result


def _audit(
    actor: Any,
    action: AuditAction,
    channel: NotificationChannel,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    authenticated = actor is not None and getattr(actor, "is_authenticated", False)
    AuditEntry.objects.create(
        actor=actor if authenticated else None,
        actor_name=str(actor.get_username()) if authenticated else "system",
        action=action,
        object_type="notificationchannel",
        object_id=str(channel.pk),
        object_repr=str(channel)[:255],
        before=before,
        after=after,
    )


def _require_change(actor: Any) -> None:
    from django.core.exceptions import PermissionDenied

    from cluster import access

    if actor is not None and not access.can_change(actor):
        raise PermissionDenied("Your role cannot change the configuration.")


def _store(channel: NotificationChannel, values: Mapping[str, Any]) -> None:
    for key in ("name", "kind", "url", "recipients", "events", "enabled"):
        setattr(channel, key, values[key])
    if "secret" in values:
        channel.set_secret(values["secret"])
    elif channel.kind == ChannelKind.EMAIL:
        channel.secret_encrypted = ""
    channel.save()


def create_channel(actor: Any, data: ChannelData) -> NotificationChannel:
    _require_change(actor)
    with transaction.atomic():
        values = validate_channel(data)
        channel = NotificationChannel()
        _store(channel, values)
        after = channel_snapshot(channel)
        if "secret" in values:
            after["secret"] = PASSWORD_CHANGED_MARK
        _audit(actor, AuditAction.CREATE, channel, None, after)
    return channel


def update_channel(
    actor: Any, channel: NotificationChannel, data: ChannelData
) -> NotificationChannel:
    _require_change(actor)
    with transaction.atomic():
        channel = NotificationChannel.objects.select_for_update().get(pk=channel.pk)
        before = channel_snapshot(channel)
        values = validate_channel(data, channel)
        _store(channel, values)
        after = channel_snapshot(channel)
        if "secret" in values:
            after["secret"] = PASSWORD_CHANGED_MARK
        if after != before:
            _audit(actor, AuditAction.UPDATE, channel, before, after)
    return channel


def delete_channel(actor: Any, channel: NotificationChannel) -> None:
    _require_change(actor)
    with transaction.atomic():
        before = channel_snapshot(channel)
        _audit(actor, AuditAction.DELETE, channel, before, None)
        channel.delete()


def send_test(actor: Any, channel: NotificationChannel) -> ClusterEvent:
    """A test event for this channel only; the notifier delivers it like any other."""
    _require_change(actor)
    who = str(actor.get_username()) if actor is not None else "system"
    with transaction.atomic():
        subject = f"test:{channel.pk}:{uuid.uuid4().hex}"
        event = ClusterEvent.objects.create(
            kind=EventKind.TEST,
            subject=subject,
            seq=1,
            dedup_key=f"{subject}#1",
            condition="sent",
            message=f"Test notification to {channel.name}, asked for by {who}.",
            detail={"channel": channel.name},
        )
        Delivery.objects.create(event=event, channel=channel)
    return event


__all__ = [
    "claim",
    "create_channel",
    "delete_channel",
    "deliver",
    "deliver_due",
    "load_memory",
    "send_test",
    "signature",
    "store_events",
    "update_channel",
    "validate_channel",
]
