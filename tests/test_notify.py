"""Events stored once, deliveries claimed once, webhooks signed (cluster/notify.py)."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import OperationalError, connection
from django.utils import timezone

from cluster import events, notify
from cluster.choices import DeliveryStatus, EventKind
from cluster.models import AuditEntry, ClusterEvent, Delivery, NotificationChannel

SECRET = "a-webhook-secret-of-some-length"


def owner_event(new: str = "node2", old: str = "node1") -> events.Event:
    return events.Event(
        events.OWNER_CHANGED, "owner:eth0:1", new, f"VHID 1 on eth0: owner {old} → {new}.",
        time.time(), vhid=1, interface="eth0", old_owner=old, new_owner=new, cause="master_down",
    )  # fmt: skip


class Receiver(http.server.BaseHTTPRequestHandler):
    """A webhook receiver on 127.0.0.1 that keeps what it got."""

    received: list[tuple[dict[str, str], bytes, float]]
    answer = 204

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((dict(self.headers), body, time.time()))  # type: ignore[attr-defined]
        self.send_response(self.server.answer)  # type: ignore[attr-defined]
        if self.server.answer in (301, 302):  # type: ignore[attr-defined]
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[http.server.HTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.received = []  # type: ignore[attr-defined]
    server.answer = 204  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def webhook(alice, server, **kw) -> NotificationChannel:
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    data = {"name": "ops hook", "kind": "webhook", "url": url, "secret": SECRET, **kw}
    return notify.create_channel(alice, data)


def verify(headers: dict[str, str], body: bytes, secret: str = SECRET) -> bool:
    timestamp = headers["X-Cluster-Timestamp"]
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(headers["X-Cluster-Signature"], f"sha256={mac.hexdigest()}")


def test_two_detectors_storing_the_same_change_store_one_event_with_one_delivery(alice, db):
    channel = notify.create_channel(
        alice, {"name": "mail", "kind": "email", "recipients": ["ops@example.com"]}
    )
    first = notify.store_events([owner_event()], {})
    second = notify.store_events([owner_event()], {})
    assert len(first) == 1
    assert second == []
    assert ClusterEvent.objects.count() == 1
    assert list(Delivery.objects.values_list("channel_id", flat=True)) == [channel.pk]


def test_a_detector_whose_memory_is_stale_loses_the_insert_race_and_stores_nothing(alice, db):
    notify.store_events([owner_event("node2")], {})
    notify.store_events([owner_event("node3", "node2")], {})
    memory: dict[str, str] = {}
    # The same change again, as a lagging detector would offer it: the last stored
    # condition is node3 now, so node3 is not new.
    assert notify.store_events([owner_event("node3", "node2")], memory) == []
    assert memory == {"owner:eth0:1": "node3"}
    assert notify.load_memory() == {"owner:eth0:1": "node3"}
    assert list(ClusterEvent.objects.order_by("seq").values_list("seq", "condition")) == [
        (1, "node2"), (2, "node3"),
    ]  # fmt: skip


def test_a_baseline_is_remembered_once_and_never_notified(alice, db):
    notify.create_channel(alice, {"name": "m", "kind": "email", "recipients": ["o@example.com"]})
    first = events.Event("", "owner:eth0:7", "node1", "", time.time(), baseline=True)
    later = events.Event("", "owner:eth0:7", "node2", "", time.time(), baseline=True)
    assert notify.store_events([first], {}) == []
    assert notify.store_events([later], {}) == []  # the first one stays
    assert notify.load_memory() == {"owner:eth0:7": "node1"}
    assert ClusterEvent.objects.count() == 0
    assert Delivery.objects.count() == 0


def test_a_channel_gets_only_the_event_kinds_it_chose(alice, db):
    notify.create_channel(
        alice,
        {"name": "nodes", "kind": "email", "recipients": ["a@example.com"],
         "events": ["node_not_reporting"]},
    )  # fmt: skip
    every = notify.create_channel(
        alice, {"name": "all", "kind": "email", "recipients": ["b@example.com"]}
    )
    notify.store_events([owner_event()], {})
    assert list(Delivery.objects.values_list("channel_id", flat=True)) == [every.pk]


def make_delivery(alice) -> Delivery:
    notify.create_channel(alice, {"name": "m", "kind": "email", "recipients": ["o@example.com"]})
    notify.store_events([owner_event()], {})
    return Delivery.objects.get()


def test_a_delivery_is_claimed_by_one_claimer_only(alice, db):
    delivery = make_delivery(alice)
    won = notify.claim(delivery.pk, "first")
    assert won is not None
    assert won.claimed_by == "first"
    assert won.attempts == 1
    assert notify.claim(delivery.pk, "second") is None


def test_a_claim_left_by_a_dead_notifier_is_taken_over_after_the_lease(alice, db):
    delivery = make_delivery(alice)
    assert notify.claim(delivery.pk, "dead") is not None
    assert notify.claim(delivery.pk, "alive") is None
    Delivery.objects.filter(pk=delivery.pk).update(
        claimed_at=timezone.now() - notify.LEASE - datetime.timedelta(seconds=1)
    )
    assert notify.due_deliveries() == [delivery.pk]
    taken = notify.claim(delivery.pk, "alive")
    assert taken is not None
    assert taken.claimed_by == "alive"
    assert taken.attempts == 2


def claim_race(pk: int, claimers: int) -> list[str]:
    """``claimers`` threads, each with its own connection, claim ``pk`` at once."""
    barrier = threading.Barrier(claimers)
    winners: list[str] = []
    answered: list[str] = []  # every claimer got an answer (won or lost)

    def run(name: str) -> None:
        try:
            barrier.wait()
            for _ in range(200):
                try:
                    won = notify.claim(pk, name)
                except OperationalError:
                    # The test database is SQLite in memory with a shared cache, whose
                    # table locks fail at once rather than wait (as the file database's
                    # busy timeout does): try again, as a waiting claimer would.
                    time.sleep(0.005)
                    continue
                if won is not None:
                    winners.append(name)
                answered.append(name)
                return
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(f"n{i}",)) for i in range(claimers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(answered) == claimers
    return winners


@pytest.mark.django_db(transaction=True)
def test_concurrent_claimers_in_threads_send_a_delivery_once(alice):
    for _ in range(5):
        Delivery.objects.all().delete()
        NotificationChannel.objects.all().delete()
        ClusterEvent.objects.all().delete()
        delivery = make_delivery(alice)
        assert len(claim_race(delivery.pk, 4)) == 1


def test_a_webhook_is_a_signed_json_post_with_the_documented_payload(alice, db, receiver):
    channel = webhook(alice, receiver)
    notify.store_events([owner_event()], {})
    assert notify.deliver_due("test") == 1
    [(headers, body, _at)] = receiver.received
    assert headers["Content-Type"] == "application/json"
    assert verify(headers, body)
    assert not verify(headers, body, secret="another-secret-of-length")
    data = json.loads(body)
    assert data["event"]["kind"] == "owner_changed"
    assert (data["event"]["old_owner"], data["event"]["new_owner"]) == ("node1", "node2")
    assert data["event"]["vhid"] == 1
    assert data["event"]["interface"] == "eth0"
    assert data["channel"] == channel.name
    assert headers["X-Cluster-Event-Id"] == str(data["event"]["id"])
    assert abs(int(headers["X-Cluster-Timestamp"]) - time.time()) < 5
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.SENT
    assert [(a.ok, a.result) for a in delivery.log.all()] == [(True, "HTTP 204")]
    assert notify.deliver_due("test") == 0  # sent means sent: never again


def test_a_failing_receiver_is_retried_with_a_growing_back_off_then_given_up(
    alice, db, receiver, monkeypatch
):
    monkeypatch.setattr(notify, "MAX_ATTEMPTS", 3)
    receiver.answer = 500
    webhook(alice, receiver)
    notify.store_events([owner_event()], {})
    waits = []
    for _ in range(3):
        Delivery.objects.update(next_at=timezone.now())
        before = timezone.now()
        notify.deliver_due("test")
        delivery = Delivery.objects.get()
        waits.append((delivery.next_at - before).total_seconds())
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == 3
    assert "500" in delivery.last_error
    assert waits[1] > waits[0] > 0  # backed off, doubling
    assert [a.ok for a in delivery.log.all()] == [False, False, False]
    assert len(receiver.received) == 3


def test_a_webhook_does_not_follow_a_redirect(alice, db, receiver):
    receiver.answer = 302
    webhook(alice, receiver)
    notify.store_events([owner_event()], {})
    assert notify.deliver_due("test") == 0
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.PENDING
    assert "302" in delivery.last_error
    assert len(receiver.received) == 1


def test_an_email_channel_sends_through_djangos_mail_backend(alice, db):
    notify.create_channel(
        alice, {"name": "m", "kind": "email", "recipients": ["ops@example.com", "b@example.com"]}
    )
    notify.store_events([owner_event()], {})
    assert notify.deliver_due("test") == 1
    [message] = mail.outbox
    assert message.to == ["ops@example.com", "b@example.com"]
    assert "owner node1 → node2" in message.subject
    assert "Old owner: node1" in message.body


def test_send_test_delivers_to_that_channel_only(alice, db, receiver):
    channel = webhook(alice, receiver)
    notify.create_channel(alice, {"name": "m", "kind": "email", "recipients": ["o@example.com"]})
    event = notify.send_test(alice, channel)
    assert event.kind == EventKind.TEST
    assert notify.deliver_due("test") == 1
    assert len(receiver.received) == 1
    assert mail.outbox == []


def test_the_secret_is_encrypted_at_rest_and_audited_only_as_changed(alice, db, receiver):
    channel = webhook(alice, receiver)
    assert SECRET not in channel.secret_encrypted
    assert channel.get_secret() == SECRET
    entry = AuditEntry.objects.get(object_type="notificationchannel")
    assert entry.after is not None
    assert entry.after["secret"] == "(changed)"
    assert SECRET not in json.dumps(entry.after)
    notify.update_channel(alice, channel, {"enabled": False})
    channel.refresh_from_db()
    assert channel.get_secret() == SECRET  # absent on update keeps it
    assert AuditEntry.objects.filter(object_type="notificationchannel").count() == 2


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"kind": "webhook", "url": "http://x.example/", "secret": SECRET}, "name", "required"),
        ({"name": "a", "kind": "pager"}, "kind", "email or webhook"),
        ({"name": "a", "kind": "webhook", "secret": SECRET}, "url", "required"),
        ({"name": "a", "kind": "webhook", "url": "ftp://x/", "secret": SECRET}, "url", "http"),
        ({"name": "a", "kind": "webhook", "url": "http://x.example/"}, "secret", "required"),
        ({"name": "a", "kind": "webhook", "url": "http://x/", "secret": "short"}, "secret", "16"),
        ({"name": "a", "kind": "email", "recipients": []}, "recipients", "at least one"),
        ({"name": "a", "kind": "email", "recipients": ["nope"]}, "recipients", "'nope'"),
        (
            {"name": "a", "kind": "email", "recipients": ["a@example.com"], "events": ["x"]},
            "events", "'x' is not one",
        ),
    ],
)  # fmt: skip
def test_a_channel_is_refused_with_a_message_naming_the_field_and_rule(
    alice, db, data, field, words
):
    with pytest.raises(ValidationError) as caught:
        notify.create_channel(alice, data)
    assert field in caught.value.message_dict
    assert words in " ".join(caught.value.message_dict[field])
    assert NotificationChannel.objects.count() == 0


def test_support_cannot_change_a_channel(sam, db):
    with pytest.raises(PermissionDenied):
        notify.create_channel(sam, {"name": "m", "kind": "email", "recipients": ["o@example.com"]})


class SmtpSink:
    """A minimal SMTP server on 127.0.0.1 (RFC 5321's HELO/EHLO, MAIL, RCPT, DATA,
    QUIT) in a thread, keeping each message it accepts."""

    def __init__(self) -> None:
        import socket

        self.messages: list[tuple[list[str], str]] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"220 sink ESMTP\r\n")
            recipients: list[str] = []
            while line := lines.readline():
                verb = line.decode().strip().split(" ", 1)[0].upper()
                if verb == "DATA":
                    conn.sendall(b"354 go ahead\r\n")
                    body = b""
                    while (chunk := lines.readline()) not in (b".\r\n", b""):
                        body += chunk
                    self.messages.append((recipients, body.decode()))
                    conn.sendall(b"250 queued\r\n")
                elif verb == "RCPT":
                    recipients.append(line.decode().split(":", 1)[1].strip(" <>\r\n"))
                    conn.sendall(b"250 OK\r\n")
                elif verb == "QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 sink\r\n")

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


def test_an_email_channel_speaks_smtp_to_the_configured_server(alice, db, settings):
    sink = SmtpSink()
    try:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", sink.port
        notify.create_channel(
            alice, {"name": "m", "kind": "email", "recipients": ["ops@example.com"]}
        )
        notify.store_events([owner_event()], {})
        assert notify.deliver_due("test") == 1
    finally:
        sink.close()
    [(recipients, body)] = sink.messages
    assert recipients == ["ops@example.com"]
    assert "Old owner: node1" in body
    assert Delivery.objects.get().status == DeliveryStatus.SENT


def test_a_disabled_channels_deliveries_wait_until_it_is_enabled_again(alice, db):
    delivery = make_delivery(alice)
    notify.update_channel(alice, delivery.channel, {"enabled": False})
    assert notify.deliver_due("test") == 0
    assert mail.outbox == []
    notify.update_channel(alice, delivery.channel, {"enabled": True})
    assert notify.deliver_due("test") == 1
