"""What schemathesis found on PostgreSQL (tests/api/test_schema_fuzz.py), each
pinned down: all were 500s there, and are now a 400 naming the parameter, or
the answer the client asked for."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from rest_framework.test import APIClient

from cluster.models import IPAlias, Node, Transition
from tests.factories import alias_data, make_alias


@pytest.mark.parametrize("address", ["Óo", "192.0.2.300", "192.0.2.1/24"])
def test_an_address_filter_that_is_not_an_address_is_a_400(
    admin_api: APIClient, nodes: list[Node], address: str
) -> None:
    response = admin_api.get("/api/v1/aliases/", {"address": address})
    assert response.status_code == 400
    assert response.json() == {"address": ["Enter a valid IPv4 or IPv6 address."]}


def test_the_address_filter_still_finds_its_alias(admin_api: APIClient, nodes: list[Node]) -> None:
    alias = make_alias(42)
    response = admin_api.get("/api/v1/aliases/", {"address": "192.0.2.42"})
    assert [item["id"] for item in response.json()["results"]] == [alias.pk]


@pytest.mark.parametrize("path", ["/api/v1/aliases/", "/api/v1/nodes/"])
def test_a_search_with_a_nul_is_a_400_naming_it(admin_api: APIClient, path: str) -> None:
    response = admin_api.get(path, {"search": "eth\x000"})
    assert response.status_code == 400
    assert response.json() == {"search": ["Null characters are not allowed."]}


def test_a_time_with_an_offset_past_postgresqls_is_compared_in_utc(
    admin_api: APIClient, nodes: list[Node]
) -> None:
    at = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    Transition.objects.create(
        node=nodes[0],
        vhid=1,
        interface="eth0",
        from_state="BACKUP",
        to_state="MASTER",
        reason="master_down",
        at=at,
    )
    # 2030-01-02T04:05+16:05 is 2030-01-01T12:00Z.
    listed = admin_api.get("/api/v1/transitions/", {"since": "2030-01-02T04:05:00+16:05"})
    assert listed.status_code == 200, listed.content
    assert listed.json()["count"] == 1
    before = admin_api.get("/api/v1/transitions/", {"until": "2030-01-02T04:05:00+16:05"})
    assert before.json()["count"] == 0


def test_a_priority_naming_a_node_with_a_nul_is_refused(
    admin_api: APIClient, nodes: list[Node]
) -> None:
    data = alias_data(
        priorities=[
            {"node": "node1", "priority": "primary"},
            {"node": "node\x002", "priority": "backup"},
        ]
    )
    response = admin_api.post("/api/v1/aliases/", data, format="json")
    assert response.status_code == 400
    assert response.json() == {"priorities": ["There is no node named 'node\x002'."]}
    assert not IPAlias.objects.exists()


def test_an_empty_page_number_is_a_400_naming_it(admin_api) -> None:
    response = admin_api.get("/api/v1/aliases/?page=")
    assert response.status_code == 400
    assert response.json() == {"page": ["Page must be a whole number from 1."]}
