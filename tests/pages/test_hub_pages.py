"""The pages read the live status of the process's status hub (cluster/hub.py),
joined to what they list by alias id and node name, rather than compute it at
every page load; they compute it themselves only when the hub cannot answer for
what they list (no hub, or an alias it has not seen yet).

The hub here is a stand-in holding one update, as ``hub.current()`` hands it to a
synchronous view (the hub itself, and how it keeps that update current, are
tested in tests/test_hub.py)."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from cluster import hub, live, services
from cluster.checks import CheckStatus
from cluster.models import IPAlias
from tests.factories import alias_data
from tests.livestate import FakeEngines
from tests.pages.helpers import ALIAS_URL, NODES_URL

CLUSTER_URL = "/system/cluster/"
CHECKS_URL = "/system/cluster/health-checks/"


@dataclasses.dataclass
class HeldHub:
    """What the pages ask of the process's hub: its current update."""

    update: hub.Update
    running: bool = True

    def current(self, timeout: float = 1.0) -> hub.Update:
        return self.update


@contextmanager
def running_hub(
    monkeypatch: pytest.MonkeyPatch,
    shown: Callable[[live.Status], live.Status] = lambda status: status,
) -> Iterator[list[tuple[Any, ...]]]:
    """The process's hub, holding the status computed now (passed through
    ``shown``); yields the calls of ``live.compute_status`` made after it."""
    status = shown(live.compute_status())
    data = status.as_dict()
    update = hub.Update(1, status, data, json.dumps(data), (), time.time())
    original = live.compute_status
    calls: list[tuple[Any, ...]] = []

    def counted(*args: Any) -> live.Status:
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(hub, "shared", lambda: HeldHub(update))
    monkeypatch.setattr(live, "compute_status", counted)
    yield calls


def owners(html: str) -> list[tuple[str, str]]:
    """(alias id, actual MASTER) of each row of the matrix, in the page's order."""
    return re.findall(
        r'<tr data-alias-id="(\d+)".*?data-role="actual-owner"><strong>([^<]*)<', html, re.S
    )


@pytest.fixture
def both_masters(
    engines: FakeEngines, active_active: tuple[IPAlias, IPAlias]
) -> tuple[IPAlias, IPAlias]:
    """VHID 1 on node1, VHID 2 on node2, as their priorities want; node2's smtp check passes."""
    services.create_check(None, {"name": "smtp-25", "kind": "smtp"})
    engines.report("node1", {1: "MASTER", 2: "BACKUP"})
    engines.report("node2", {1: "BACKUP", 2: "MASTER"})
    engines.beat("node2", checks=[CheckStatus("smtp-25", "smtp", True, 12)])
    engines.report("node3", {})
    return active_active


def test_every_page_reads_the_running_hub_and_none_computes_the_status(
    alice_client: Client,
    both_masters: tuple[IPAlias, IPAlias],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = both_masters
    with running_hub(monkeypatch) as calls:

        def refuse(*args: Any) -> Any:
            raise AssertionError("the health checks page read Redis itself")

        monkeypatch.setattr(live, "check_statuses", refuse)
        urls = (CLUSTER_URL, ALIAS_URL, NODES_URL, CHECKS_URL)
        pages = {url: alice_client.get(url) for url in urls}
    assert calls == []
    assert {url: page.status_code for url, page in pages.items()} == dict.fromkeys(pages, 200)
    html = {url: page.content.decode() for url, page in pages.items()}
    assert owners(html[CLUSTER_URL]) == [(str(first.pk), "node1"), (str(second.pk), "node2")]
    summary = f'data-alias-summary="{second.pk}" data-mismatch="false">MASTER on node2<'
    assert summary in html[ALIAS_URL]
    assert 'data-node-summary="node3" data-reporting="true">reporting' in html[NODES_URL]
    assert 'data-node="node2" data-state="passing"' in html[CHECKS_URL]
    assert 'data-node="node1" data-state="unknown"' in html[CHECKS_URL]  # it reports none


def test_each_row_gets_its_own_aliases_status_from_a_hub_that_lists_them_in_another_order(
    alice_client: Client,
    both_masters: tuple[IPAlias, IPAlias],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = both_masters

    def reversed_rows(status: live.Status) -> live.Status:
        return dataclasses.replace(status, aliases=status.aliases[::-1])

    with running_hub(monkeypatch, reversed_rows) as calls:
        html = alice_client.get(CLUSTER_URL).content.decode()
    assert calls == []
    assert owners(html) == [(str(first.pk), "node1"), (str(second.pk), "node2")]


def test_an_alias_the_hub_has_not_seen_yet_is_listed_with_its_live_state(
    alice: User,
    alice_client: Client,
    both_masters: tuple[IPAlias, IPAlias],
    engines: FakeEngines,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The hub's status is from before the alias (another process's: its
    # ``desired`` message has not reached this hub yet).
    with running_hub(monkeypatch) as calls:
        third = services.create_alias(alice, alias_data(3, addresses=["192.0.2.103/24"]))
        engines.report("node3", {3: "MASTER"})
        cluster = alice_client.get(CLUSTER_URL)
        aliases = alice_client.get(ALIAS_URL)
    assert (cluster.status_code, aliases.status_code) == (200, 200)
    assert (str(third.pk), "node3") in owners(cluster.content.decode())
    # (Its Primary is node1: node3 as MASTER is a mismatch, as it should be.)
    summary = f'data-alias-summary="{third.pk}" data-mismatch="true">MASTER on node3<'
    assert summary in aliases.content.decode()
    # Each page computed it once, for itself, from its own read of the join.
    assert [len(args) for args in calls] == [2, 2]
