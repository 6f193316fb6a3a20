"""The notifier's detection round (cluster/notifier.py) against the database, with
the live status handed in: drift measured against the desired versions it reads."""

from __future__ import annotations

import time
from typing import Any

from cluster import notify, services
from cluster.models import ClusterEvent, Delivery
from cluster.notifier import Notifier
from tests.factories import make_alias


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
