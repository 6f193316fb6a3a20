"""The notifier's detection round (cluster/notifier.py) against the database, with
the live status handed in: drift measured against the desired versions it reads."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from cluster import hub, live, notify, services
from cluster.models import ClusterEvent, Delivery
from cluster.notifier import Notifier
from tests.factories import make_alias
from tests.livestate import chunk_text
from tests.test_hub import subscribed


@pytest.fixture(autouse=True)
def _no_redis(settings: Any, tmp_path: Path) -> None:
    """No Redis unless a test asks for ``redis_url``: the events a notifier stores
    are announced there, and never to the host's."""
    settings.REDIS_URL = f"redis+socket://{tmp_path}/no-redis.sock"


def status(versions: dict[str, str]) -> dict[str, Any]:
    nodes = [
        {"name": name, "ordinal": i, "maintenance": False, "reporting": True,
         "last_seen": time.time(), "config_source": "database", "config_version": version,
         "summary": "", "demotion": {"total": 0, "sources": []}, "unreadable": ""}
        for i, (name, version) in enumerate(sorted(versions.items()), 1)
    ]  # fmt: skip
    return {"available": True, "error": "", "generated_at": time.time(), "nodes": nodes,
            "aliases": [], "alerts": []}  # fmt: skip


def test_a_node_that_applies_a_change_at_once_is_never_drifted(alice, nodes):
    alias = make_alias(42)
    applied = services.desired_versions()
    notifier = Notifier("t", status=lambda: status(applied), drift_grace=0.3)
    assert notifier.detect_once() == []
    services.update_alias(alice, alias, {"description": "changed"}, partial=True)
    applied.update(services.desired_versions())  # every node applied it before we looked
    for _ in range(4):
        assert notifier.detect_once() == []
        time.sleep(0.15)
    assert ClusterEvent.objects.count() == 0


def test_a_node_that_does_not_apply_a_change_is_drifted_after_the_grace_period(alice, nodes):
    notify.create_channel(alice, {"name": "m", "kind": "email", "recipients": ["o@example.com"]})
    alias = make_alias(42)
    applied = services.desired_versions()
    notifier = Notifier("t", status=lambda: status(applied), drift_grace=0.3)
    notifier.detect_once()
    changed = time.time()
    services.update_alias(alice, alias, {"description": "changed"}, partial=True)
    desired = services.desired_versions()
    applied.update({n: v for n, v in desired.items() if n != "node2"})  # node2 lags
    found: list[Any] = []
    while not found and time.time() - changed < 3:
        found = notifier.detect_once(desired_changed=True)
        time.sleep(0.05)
    [event] = found
    assert (event.kind, event.node) == ("config_drift", "node2")
    assert event.detail["desired"] == desired["node2"]
    assert event.detail["since"] >= changed
    assert event.at.timestamp() - event.detail["since"] >= 0.3  # not before the grace period
    assert Delivery.objects.filter(event=event).count() == 1
    time.sleep(0.35)
    assert notifier.detect_once() == []  # once
    applied["node2"] = desired["node2"]
    assert [e.kind for e in notifier.detect_once()] == ["config_converged"]


def node2_down() -> dict[str, Any]:
    found = status({"node1": "v1", "node2": "v1"})
    found["nodes"][1]["reporting"] = False
    return found


def still(calls: list[int]) -> live.Status:
    """A stand-in computation for the hub (counted): the status itself is not tested here."""
    calls.append(1)
    return live.Status(True, "", time.time(), [], [])


def test_a_stored_event_reaches_an_open_status_stream_as_the_api_shows_it(
    settings, redis_url, alice, client
):
    settings.REDIS_URL = redis_url
    calls: list[int] = []
    notifier = Notifier("t", status=node2_down)

    async def scenario() -> tuple[list[ClusterEvent], str, int]:
        status_hub = hub.StatusHub(redis_url, lambda: still(calls))
        status_hub.start()
        stream = hub.event_stream(redis_url, status_hub)
        try:
            assert chunk_text(await anext(stream)).startswith("retry:")
            assert chunk_text(await anext(stream)).startswith("event: status\n")
            await subscribed(redis_url)
            before = len(calls)
            stored = await sync_to_async(notifier.detect_once)()
            text = chunk_text(await asyncio.wait_for(anext(stream), 5))
            return stored, text, len(calls) - before
        finally:
            await stream.aclose()
            await status_hub.stop()
            notifier.announcer.close()

    stored, text, computations = async_to_sync(scenario)()
    [event] = stored
    assert event.kind == "node_not_reporting"
    head, body = text.split("\n")[:2]
    assert head == "event: cluster_event"
    client.force_login(alice)
    assert (
        json.loads(body.removeprefix("data: ")) == client.get(f"/api/v1/events/{event.pk}/").json()
    )
    assert computations == 0


def test_with_redis_down_events_are_stored_and_detection_goes_on(
    db, caplog: pytest.LogCaptureFixture
):
    notifier = Notifier("t", status=node2_down)
    try:
        with caplog.at_level(logging.WARNING, logger="cluster.notifier"):
            [event] = notifier.detect_once()
            notifier.announcer.flush()
    finally:
        notifier.announcer.close()
    assert ClusterEvent.objects.get() == event  # the database is the record
    assert "1 stored event(s) not announced to the pages" in caplog.text
