"""GET /api/v1/status/ and GET /api/v1/transitions/."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone
from rest_framework import serializers
from rest_framework.test import APIClient

from cluster import live, services, statekeys
from cluster.api.serializers import StatusSerializer
from cluster.carp.types import DemotionSource
from cluster.checks import CheckStatus, source_name
from cluster.models import IPAlias, Node, Transition
from tests.api.conftest import token_client
from tests.factories import make_alias
from tests.livestate import FakeEngines


@pytest.fixture
def alias(nodes: list[Node]) -> IPAlias:
    """VHID 42: node1 Primary, node2 Secondary."""
    return make_alias(42)


def test_the_status_is_the_live_matrix(
    support_api: APIClient, engines: FakeEngines, alias: IPAlias
) -> None:
    engines.report("node1", {42: "BACKUP"})
    engines.report("node2", {42: "MASTER"})
    body = support_api.get("/api/v1/status/").json()
    assert body["available"] is True
    (row,) = body["aliases"]
    assert (row["vhid"], row["expected_owner"], row["masters"], row["mismatch"]) == (
        42,
        "node1",
        ["node2"],
        True,
    )
    assert [(c["node"], c["tier"], c["advskew"], c["state"]) for c in row["cells"]] == [
        ("node1", "primary", 0, "BACKUP"),
        ("node2", "secondary", 26, "MASTER"),
        ("node3", None, None, "not reporting"),
    ]
    assert [alert["kind"] for alert in body["alerts"]] == ["not_reporting"]


def test_the_status_says_which_check_demoted_a_node_and_carries_every_check(
    support_api: APIClient, engines: FakeEngines, alias: IPAlias
) -> None:
    engines.report("node1", {42: "BACKUP"})
    reason = "health smtp-25 failing 3× (connection refused)"
    engines.beat(
        "node1",
        demotion=[DemotionSource(source_name("smtp-25"), 240, reason)],
        checks=[
            CheckStatus("smtp-25", "smtp", False, 3, "connection refused", 1767000004.0,
                        1767000000.0, 240),
            CheckStatus("disk", "disk", True, 9, "41% free on /var", 1767000004.0),
        ],
    )  # fmt: skip
    body = support_api.get("/api/v1/status/").json()
    node1 = next(n for n in body["nodes"] if n["name"] == "node1")
    assert node1["summary"].endswith(
        "demoted by 240: health smtp-25 failing 3× (connection refused)"
    )
    assert [(c["name"], c["passing"], c["count"], c["message"], c["demotion"])
            for c in node1["checks"]] == [
        ("smtp-25", False, 3, "connection refused", 240),
        ("disk", True, 9, "41% free on /var", 0),
    ]  # fmt: skip
    assert node1["checks"][0]["changed_at"] == 1767000000.0


def test_without_redis_the_status_is_200_and_says_unavailable(
    support_api: APIClient, alias: IPAlias
) -> None:
    response = support_api.get("/api/v1/status/")
    assert response.status_code == 200
    body = response.json()
    assert body["available"] is False
    assert body["error"].startswith("Redis cannot be reached")
    assert {cell["state"] for cell in body["aliases"][0]["cells"]} == {"unknown"}


def declared(serializer: serializers.Serializer[Any]) -> Any:
    """The field names a serializer declares, nested serializers as dicts."""
    found: dict[str, Any] = {}
    for name, field in serializer.fields.items():
        child = getattr(field, "child", field)
        found[name] = declared(child) if isinstance(child, serializers.Serializer) else None
    return found


def keys(value: Any) -> Any:
    if isinstance(value, list):
        return keys(value[0]) if value else None
    if isinstance(value, dict):
        return {name: keys(item) for name, item in value.items()}
    return None


def test_the_documented_schema_has_the_fields_of_the_body(
    support_api: APIClient, engines: FakeEngines, alias: IPAlias
) -> None:
    engines.report("node1", {42: "MASTER"})
    engines.beat(
        "node1",
        demotion=[DemotionSource("maintenance", 240, "maintenance")],
        checks=[CheckStatus("smtp-25", "smtp", True, 4, "220 node1", 1767000000.0)],
    )
    body = support_api.get("/api/v1/status/").json()
    assert body["alerts"]  # node2 and node3 are not reporting: every list has an item
    assert keys(body) == declared(StatusSerializer())


def test_the_schema_validates_without_warnings(tmp_path: Any) -> None:
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml")
    )
    schema = (tmp_path / "schema.yml").read_text()
    assert "/api/v1/status/:" in schema
    assert "/api/v1/transitions/:" in schema


@pytest.fixture
def history(nodes: list[Node]) -> list[Transition]:
    now = timezone.now()

    def add(node: Node, vhid: int, to_state: str, hours_ago: int) -> Transition:
        return Transition.objects.create(
            node=node,
            vhid=vhid,
            interface="eth0",
            from_state="BACKUP",
            to_state=to_state,
            reason="master_down",
            at=now - timedelta(hours=hours_ago),
        )

    return [
        add(nodes[0], 1, "MASTER", 30),
        add(nodes[1], 1, "MASTER", 20),
        add(nodes[1], 2, "MASTER", 10),
        add(nodes[2], 2, "BACKUP", 1),
    ]


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["results"]]


def test_transitions_are_listed_newest_first_and_paginated(
    support_api: APIClient, history: list[Transition]
) -> None:
    response = support_api.get("/api/v1/transitions/?page_size=3")
    body = response.json()
    assert body["count"] == 4
    assert ids(response) == [t.pk for t in history[::-1][:3]]
    first = body["results"][0]
    assert {k: first[k] for k in ("node", "vhid", "from_state", "to_state", "reason")} == {
        "node": "node3",
        "vhid": 2,
        "from_state": "BACKUP",
        "to_state": "BACKUP",
        "reason": "master_down",
    }
    assert body["next"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [("at", ["at", "id"]), ("-at", ["-at", "-id"]), ("", ["-at", "-id"])],
)
def test_ordering_always_ends_with_a_unique_key(query: str, expected: list[str]) -> None:
    # One batch from one engine shares its time: ordering by it alone leaves the
    # ties' order to the database, and paging could repeat or skip a row.
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from cluster.api.filters import StableOrderingFilter
    from cluster.api.views import TransitionViewSet

    request = Request(APIRequestFactory().get("/", {"ordering": query} if query else {}))
    view = TransitionViewSet()
    view.ordering = ["-at"]  # type: ignore[attr-defined]  # a view's default, as DRF reads it
    ordering = StableOrderingFilter().get_ordering(request, Transition.objects.all(), view)
    assert list(ordering) == expected


def test_transitions_filter_by_node_vhid_and_time(
    support_api: APIClient, history: list[Transition]
) -> None:
    get = support_api.get
    assert ids(get("/api/v1/transitions/?node=node2")) == [history[2].pk, history[1].pk]
    assert ids(get("/api/v1/transitions/?vhid=1")) == [history[1].pk, history[0].pk]
    since = (timezone.now() - timedelta(hours=24)).isoformat()
    until = (timezone.now() - timedelta(hours=5)).isoformat()
    assert ids(get("/api/v1/transitions/", {"since": since, "until": until})) == [
        history[2].pk,
        history[1].pk,
    ]
    assert ids(get("/api/v1/transitions/?since=2000-01-01T00:00:00Z&node=node1")) == [history[0].pk]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("vhid=abc", "vhid"),
        ("vhid=1.5", "vhid"),
        ("vhid=0", "vhid"),
        ("vhid=256", "vhid"),
        ("since=yesterday", "since"),
        ("until=2025-13-01T00:00:00", "until"),
        # Valid ISO 8601, but outside what the database can hold once in UTC.
        ("since=0001-01-01T00:00:00%2B05:00", "since"),
        ("until=9999-12-31T23:59:59-05:00", "until"),
    ],
)
def test_a_malformed_filter_is_a_400_naming_the_field(
    support_api: APIClient, history: list[Transition], query: str, field: str
) -> None:
    response = support_api.get(f"/api/v1/transitions/?{query}")
    assert response.status_code == 400
    assert list(response.json()) == [field]


@pytest.mark.parametrize("url", ["/api/v1/status/", "/api/v1/transitions/"])
def test_only_users_with_a_role_read_the_live_endpoints(
    url: str, alice: User, sam: User, charlie: User
) -> None:
    assert token_client(alice).get(url).status_code == 200
    assert token_client(sam).get(url).status_code == 200
    assert token_client(charlie).get(url).status_code == 403
    assert APIClient().get(url).status_code == 401


def test_the_live_endpoints_are_read_only(admin_api: APIClient, history: list[Transition]) -> None:
    assert admin_api.post("/api/v1/status/", {}).status_code == 405
    assert admin_api.post("/api/v1/transitions/", {}).status_code == 405
    assert admin_api.delete(f"/api/v1/transitions/{history[0].pk}/").status_code == 405


def test_the_status_states_are_the_documented_ones() -> None:
    assert live.STATES == (
        "MASTER", "BACKUP", "INIT", "not reporting", "not running", "unknown", "unreadable",
    )  # fmt: skip


def test_the_status_shows_each_nodes_demotion_source_by_source(
    support_api: APIClient, engines: FakeEngines, alias: IPAlias
) -> None:
    engines.report("node1", {42: "BACKUP"})
    engines.report("node2", {42: "MASTER"})
    engines.beat(
        "node1",
        demotion=[
            DemotionSource("link:eth1", 240, "link eth1 down"),
            DemotionSource("maintenance", 240, "maintenance"),
        ],
    )
    nodes = {n["name"]: n for n in support_api.get("/api/v1/status/").json()["nodes"]}
    assert nodes["node1"]["demotion"] == {
        "total": 480,
        "sources": [
            {"source": "link:eth1", "level": 240, "reason": "link eth1 down"},
            {"source": "maintenance", "level": 240, "reason": "maintenance"},
        ],
    }
    assert nodes["node1"]["summary"].endswith(" · demoted by 480: link eth1 down, maintenance")
    assert nodes["node2"]["demotion"] == {"total": 0, "sources": []}
    assert "demoted" not in nodes["node2"]["summary"]


def test_maintenance_reads_demoted_by_240_in_the_status(
    support_api: APIClient, engines: FakeEngines, alias: IPAlias
) -> None:
    engines.report("node1", {42: "BACKUP"})
    engines.beat("node1", demotion=[DemotionSource("maintenance", 240, "maintenance")])
    (node1,) = [
        n for n in support_api.get("/api/v1/status/").json()["nodes"] if n["name"] == "node1"
    ]
    assert node1["summary"] == (
        "reporting · configuration from the database · demoted by 240: maintenance"
    )
    assert node1["demotion"]["total"] == 240


def test_an_alias_a_node_cannot_run_is_an_alert_naming_node_alias_and_cause(
    support_api: APIClient, engines: FakeEngines, alias: IPAlias
) -> None:
    engines.report("node1", {})
    engines.report("node2", {42: "MASTER"})
    cause = services.UNDECRYPTABLE_CAUSE
    engines.beat("node1", problems=[statekeys.ConfigProblem(42, "eth0", cause)])
    body = support_api.get("/api/v1/status/").json()
    assert [a for a in body["alerts"] if a["kind"] == "alias_left_out"] == [
        {
            "kind": "alias_left_out",
            "message": f"Node node1 cannot run VHID 42 on eth0: {cause}.",
            "node": "node1",
            "vhid": 42,
            "interface": "eth0",
        }
    ]
    cells = {c["node"]: c["state"] for c in body["aliases"][0]["cells"]}
    assert (cells["node1"], cells["node2"]) == ("not running", "MASTER")
