"""/api/v1/events/ (read-only, filtered) and /api/v1/notification-channels/."""

from __future__ import annotations

import time

from cluster import events, notify
from cluster.models import AuditEntry, NotificationChannel

EVENTS = "/api/v1/events/"
CHANNELS = "/api/v1/notification-channels/"
SECRET = "a-webhook-secret-of-some-length"


def store(kind: str, subject: str, condition: str, at: float) -> None:
    event = events.Event(kind, subject, condition, f"{kind} {subject}", at, node="node2")
    notify.store_events([event], {})


def test_events_are_listed_newest_first_and_filtered_by_kind_and_since(support_api, db):
    now = time.time()
    store(events.NODE_NOT_REPORTING, "node:node2", "down", now - 3600)
    store(events.NODE_REPORTING, "node:node2", "up", now - 60)
    store(events.CHECK_FAILING, "check:node2:smtp", "failing", now)
    body = support_api.get(EVENTS).json()
    assert [e["kind"] for e in body["results"]] == [
        "check_failing", "node_reporting", "node_not_reporting",
    ]  # fmt: skip
    only = support_api.get(EVENTS, {"kind": "node_reporting"}).json()["results"]
    assert [e["kind"] for e in only] == ["node_reporting"]
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 600))
    recent = support_api.get(EVENTS, {"since": since}).json()["results"]
    assert [e["kind"] for e in recent] == ["check_failing", "node_reporting"]


def test_an_unknown_kind_or_a_malformed_since_is_a_400_naming_the_parameter(support_api, db):
    assert "kind" in support_api.get(EVENTS, {"kind": "nonsense"}).json()
    assert "since" in support_api.get(EVENTS, {"since": "yesterday"}).json()


def test_events_are_read_only(admin_api, db):
    assert admin_api.post(EVENTS, {"kind": "split_brain"}, format="json").status_code == 405


def test_an_administrator_creates_a_webhook_channel_and_never_gets_the_secret_back(admin_api, db):
    data = {
        "name": "ops",
        "kind": "webhook",
        "url": "https://hooks.example.com/cluster",
        "secret": SECRET,
        "events": ["owner_changed", "split_brain"],
    }
    response = admin_api.post(CHANNELS, data, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert "secret" not in body
    assert body["has_secret"] is True
    assert body["events"] == ["owner_changed", "split_brain"]
    assert SECRET not in admin_api.get(CHANNELS).content.decode()
    assert NotificationChannel.objects.get().get_secret() == SECRET
    entry = AuditEntry.objects.get(object_type="notificationchannel")
    assert entry.actor_name == "alice"
    assert SECRET not in str(entry.after)


def test_a_bad_channel_is_a_400_naming_the_field_and_the_rule(admin_api, db):
    data = {"name": "ops", "kind": "webhook", "url": "ftp://x", "secret": "short"}
    body = admin_api.post(CHANNELS, data, format="json").json()
    assert "http:// or https://" in body["url"][0]
    assert "16 to" in body["secret"][0]
    body = admin_api.post(CHANNELS, {"name": "m", "kind": "email"}, format="json").json()
    assert "at least one e-mail address" in body["recipients"][0]


def test_support_sees_channels_but_cannot_change_them(admin_api, support_api, db):
    data = {"name": "m", "kind": "email", "recipients": ["ops@example.com"]}
    pk = admin_api.post(CHANNELS, data, format="json").json()["id"]
    assert [c["name"] for c in support_api.get(CHANNELS).json()["results"]] == ["m"]
    assert support_api.post(CHANNELS, data, format="json").status_code == 403
    assert support_api.patch(f"{CHANNELS}{pk}/", {"enabled": False}).status_code == 403
    assert support_api.delete(f"{CHANNELS}{pk}/").status_code == 403
    assert admin_api.patch(f"{CHANNELS}{pk}/", {"enabled": False}).json()["enabled"] is False
    assert admin_api.delete(f"{CHANNELS}{pk}/").status_code == 204
    actions = list(
        AuditEntry.objects.filter(object_type="notificationchannel")
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == ["create", "update", "delete"]
