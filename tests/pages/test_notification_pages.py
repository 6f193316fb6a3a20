"""System → Cluster → Notifications, and the events on the cluster page."""

from __future__ import annotations

import time

from cluster import events, notify
from cluster.models import ClusterEvent, Delivery, NotificationChannel

URL = "/system/cluster/notifications/"
SECRET = "a-webhook-secret-of-some-length"


def add_form(**kw):
    return {"name": "ops", "kind": "webhook", "url": "https://hooks.example.com/x",
            "secret": SECRET, "enabled": "on", **kw}  # fmt: skip


def test_an_administrator_adds_a_channel_on_the_page(alice_client, db):
    response = alice_client.post(f"{URL}add/", add_form(events=["owner_changed"]))
    assert response.status_code == 302
    channel = NotificationChannel.objects.get()
    assert (channel.kind, channel.events, channel.enabled) == ("webhook", ["owner_changed"], True)
    html = alice_client.get(URL).content.decode()
    assert "https://hooks.example.com/x" in html
    assert SECRET not in html
    assert SECRET not in alice_client.get(f"{URL}{channel.pk}/edit/").content.decode()


def test_the_form_shows_the_services_message_by_its_field(alice_client, db):
    response = alice_client.post(f"{URL}add/", add_form(url="not a url"))
    assert response.status_code == 200
    assert "URL must be an http:// or https:// URL" in response.context["form"].errors["url"][0]


def test_send_test_queues_a_test_delivery_for_that_channel(alice_client, alice, db):
    channel = notify.create_channel(
        alice, {"name": "m", "kind": "email", "recipients": ["ops@example.com"]}
    )
    response = alice_client.post(f"{URL}{channel.pk}/test/")
    assert response.status_code == 302
    delivery = Delivery.objects.get()
    assert (delivery.channel_id, delivery.event.kind) == (channel.pk, "test")
    notify.deliver_due("page-test")
    html = alice_client.get(URL).content.decode()
    assert 'id="delivery-log"' in html
    assert "sent to 1 recipient(s)" in html


def test_support_sees_the_page_without_controls_and_cannot_change(sam_client, alice, db):
    channel = notify.create_channel(
        alice, {"name": "m", "kind": "email", "recipients": ["ops@example.com"]}
    )
    html = sam_client.get(URL).content.decode()
    assert "ops@example.com" in html
    assert "Send test" not in html
    assert "Add channel" not in html
    assert sam_client.post(f"{URL}{channel.pk}/test/").status_code == 403
    assert sam_client.post(f"{URL}add/", add_form()).status_code == 403
    assert sam_client.post(f"{URL}{channel.pk}/delete/").status_code == 403
    assert ClusterEvent.objects.count() == 0


def test_the_cluster_page_lists_the_events(alice_client, db):
    event = events.Event(
        events.OWNER_CHANGED, "owner:eth0:1", "node2", "VHID 1 on eth0: owner node1 → node2.",
        time.time(), vhid=1, interface="eth0", old_owner="node1", new_owner="node2",
    )  # fmt: skip
    notify.store_events([event], {})
    html = alice_client.get("/system/cluster/").content.decode()
    assert 'id="cluster-event-list"' in html
    assert "VHID 1 on eth0: owner node1 → node2." in html


def test_a_channel_change_shows_in_the_audit_log_without_its_secret(alice_client, db):
    alice_client.post(f"{URL}add/", add_form())
    html = alice_client.get("/system/audit/").content.decode()
    assert "notificationchannel</span><br>ops</td>" in html
    assert SECRET not in html
