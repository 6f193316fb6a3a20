"""Cluster events and webhooks on the demo cluster (root, network namespaces).

The notifier runs on the host beside the console, as in ``make demo``; a webhook
receiver on the host's 127.0.0.1 (tests/test_notify.py's) gets its posts. Each test
makes its own alias (VHIDs 20 and up) so that it counts only its own events: the
demo's aliases change owner too when a node fails.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cluster.lab.lan import wait_until
from tests.e2e.console import Console, alias_body, takeover_bound, vip
from tests.test_notify import Receiver

pytestmark = pytest.mark.netns

NODES = ["node1", "node2", "node3"]
SECRET = "an-end-to-end-webhook-secret"
DELIVERY_SECONDS = 10.0  # an owner change must reach the receiver well within this
QUIET_SECONDS = 4.0  # and nothing more may follow in this long after it


@pytest.fixture
def receiver() -> Iterator[Any]:
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.received = []  # type: ignore[attr-defined]
    server.answer = 204  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def hooked(console: Console, receiver: Any) -> Iterator[tuple[Console, Any]]:
    """A webhook channel for owner changes to ``receiver``, and two notifiers running
    (each event must still be stored once and sent once)."""
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    body = {"name": "e2e hook", "kind": "webhook", "url": url, "secret": SECRET,
            "events": ["owner_changed"]}  # fmt: skip
    channel = console.call("POST", "/api/v1/notification-channels/", body, expect=201)
    console.lab.start_notifier("notifier")
    console.lab.start_notifier("notifier2")
    try:
        yield console, receiver
    finally:
        console.lab.stop_notifier("notifier")
        console.lab.stop_notifier("notifier2")
        console.call("DELETE", f"/api/v1/notification-channels/{channel['id']}/", expect=204)


def signed(headers: dict[str, str], body: bytes) -> bool:
    timestamp = headers["X-Cluster-Timestamp"]
    mac = hmac.new(SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(headers["X-Cluster-Signature"], f"sha256={mac.hexdigest()}")


def posts_for(receiver: Any, vhid: int) -> list[tuple[dict[str, str], bytes, dict[str, Any]]]:
    found = []
    for headers, body, _at in list(receiver.received):
        data = json.loads(body)
        if data["event"]["vhid"] == vhid:
            found.append((headers, body, data))
    return found


def owner_events(console: Console, vhid: int) -> list[dict[str, Any]]:
    rows = console.call("GET", f"/api/v1/events/?kind=owner_changed&vhid={vhid}")["results"]
    return list(rows)


def held_alias(console: Console, vhid: int, primary: str, secondary: str) -> dict[str, Any]:
    alias = console.create_alias(
        alias_body(vhid, [f"192.0.2.{100 + vhid}/24"], primary, secondary, NODES)
    )
    console.lab.wait_holder(vip(alias), primary, takeover_bound(alias) + 1)
    return alias


def test_failing_the_master_sends_one_signed_webhook_for_one_owner_changed_event(hooked):
    console, receiver = hooked
    alias = held_alias(console, 20, "node1", "node2")
    time.sleep(2)  # the notifiers have seen node1 hold it (their baseline)
    console.lab.fail_node("node1")
    console.lab.wait_holder(vip(alias), "node2", takeover_bound(alias) + 2)
    wait_until(lambda: posts_for(receiver, 20), DELIVERY_SECONDS, what="the webhook for VHID 20")
    time.sleep(QUIET_SECONDS)
    posts = posts_for(receiver, 20)
    assert len(posts) == 1, [p[2] for p in posts]
    headers, body, data = posts[0]
    assert signed(headers, body)
    assert data["event"]["kind"] == "owner_changed"
    assert (data["event"]["old_owner"], data["event"]["new_owner"]) == ("node1", "node2")
    assert "master_down" in data["event"]["cause"]
    stored = owner_events(console, 20)
    assert len(stored) == 1
    assert stored[0]["id"] == data["event"]["id"]


def test_a_notifier_stopped_during_the_failover_delivers_it_once_when_it_returns(hooked):
    console, receiver = hooked
    alias = held_alias(console, 21, "node2", "node3")
    time.sleep(2)  # the notifiers have stored node2 as the owner
    console.lab.stop_notifier("notifier")
    console.lab.stop_notifier("notifier2")
    console.lab.fail_node("node2")
    console.lab.wait_holder(vip(alias), "node3", takeover_bound(alias) + 2)
    time.sleep(1)
    assert posts_for(receiver, 21) == []
    assert owner_events(console, 21) == []
    console.lab.start_notifier("notifier")
    console.lab.start_notifier("notifier2")
    wait_until(lambda: posts_for(receiver, 21), DELIVERY_SECONDS, what="the webhook for VHID 21")
    time.sleep(QUIET_SECONDS)
    posts = posts_for(receiver, 21)
    assert len(posts) == 1, [p[2] for p in posts]
    headers, body, data = posts[0]
    assert signed(headers, body)
    assert (data["event"]["old_owner"], data["event"]["new_owner"]) == ("node2", "node3")
    assert len(owner_events(console, 21)) == 1


def drift_events(console: Console, node: str) -> list[dict[str, Any]]:
    rows = console.call("GET", "/api/v1/events/?kind=config_drift")["results"]
    return [e for e in rows if e["node"] == node]


def test_a_node_that_cannot_apply_its_configuration_raises_drift_after_the_grace_period(
    console,
):
    grace = 3
    lab = console.lab
    lab.start_notifier("notifier", env={"NOTIFY_DRIFT_GRACE_SECONDS": str(grace)})
    try:
        # node3's worker cannot read the database: it runs its local copy, and a
        # change of its desired configuration never reaches it.
        lab.stop_worker("node3")
        lab.start_worker("node3", env={"DATABASE_URL": "sqlite:////nonexistent-h11/db.sqlite3"})
        time.sleep(grace + 2)
        assert drift_events(console, "node3") == []  # nothing changed for it yet
        console.create_alias(alias_body(22, ["192.0.2.122/24"], "node1", "node3", NODES))
        changed = time.time()
        wait_until(lambda: drift_events(console, "node3"), grace + 15,
                   what="a config_drift event for node3")  # fmt: skip
        [event] = drift_events(console, "node3")
        assert event["detail"]["desired"] != event["detail"]["applied"]
        since = event["detail"]["since"]
        reported = datetime.datetime.fromisoformat(event["at"].replace("Z", "+00:00")).timestamp()
        assert since >= changed - 1.5  # the drift began with the change...
        assert reported - since >= grace  # ...and was reported after the grace period
        # The other nodes applied it: no drift for them.
        assert drift_events(console, "node1") == []
    finally:
        lab.stop_notifier("notifier")
        lab.stop_worker("node3")
        lab.start_worker("node3")
