"""Reading aliases: derived advskews, pagination, filters, a constant query count."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from cluster.models import Node
from tests.factories import make_alias, make_node

URL = "/api/v1/aliases/"


def test_active_active_aliases_read_back_their_derived_advskews(
    admin_api: APIClient, db: None
) -> None:
    # The appliance's documented active/active set-up: each node is Primary
    # for one VIP and Secondary for the other's.
    make_node(1)
    make_node(2)
    for vhid, first, second in [(1, "node1", "node2"), (2, "node2", "node1")]:
        response = admin_api.post(
            URL,
            {
                "vhid": vhid,
                "interface": "eth0",
                "password": "pw",
                "addresses": [f"192.0.2.{vhid}/24"],
                "priorities": [
                    {"node": first, "priority": "primary"},
                    {"node": second, "priority": "secondary"},
                ],
            },
            format="json",
        )
        assert response.status_code == 201, response.content
    listed = admin_api.get(URL).json()["results"]
    skews = {a["vhid"]: {p["node"]: p["advskew"] for p in a["priorities"]} for a in listed}
    assert skews == {1: {"node1": 0, "node2": 26}, 2: {"node1": 13, "node2": 0}}


def make_aliases(count: int, start: int = 1) -> None:
    for vhid in range(start, start + count):
        make_alias(
            vhid,
            addresses=[f"10.0.{vhid}.1/24", f"2001:db8:{vhid:x}::1/64"],
            priorities=[
                {"node": "node1", "priority": "primary"},
                {"node": "node2", "priority": "secondary"},
                {"node": "node3", "priority": "backup"},
            ],
        )


def count_queries(api: APIClient, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = api.get(url)
    assert response.status_code == 200
    return len(queries)


def test_the_alias_list_query_count_does_not_grow_with_the_aliases(
    admin_api: APIClient, nodes: list[Node]
) -> None:
    make_aliases(3)
    few = count_queries(admin_api, f"{URL}?page_size=100")
    make_aliases(27, start=4)
    many = count_queries(admin_api, f"{URL}?page_size=100")
    assert admin_api.get(f"{URL}?page_size=100").json()["count"] == 30
    # token + groups + count + aliases + addresses + priorities (joined to nodes)
    assert few == many == 6


def test_the_list_is_paginated(admin_api: APIClient, nodes: list[Node]) -> None:
    make_aliases(3)
    body = admin_api.get(f"{URL}?page_size=2").json()
    assert body["count"] == 3
    assert [a["vhid"] for a in body["results"]] == [1, 2]
    assert body["next"].endswith("page=2&page_size=2")


def test_the_list_filters_by_vhid_interface_enabled_node_and_search(
    admin_api: APIClient, nodes: list[Node]
) -> None:
    make_alias(1, description="mail", priorities=[{"node": "node1", "priority": "primary"}])
    make_alias(2, interface="eth1", enabled=False)
    make_alias(3, description="web")

    def vhids(query: str) -> list[int]:
        response = admin_api.get(f"{URL}?{query}")
        assert response.status_code == 200, response.content
        return [a["vhid"] for a in response.json()["results"]]

    assert vhids("vhid=2") == [2]
    assert vhids("interface=eth1") == [2]
    assert vhids("enabled=false") == [2]
    assert vhids("node=node2") == [3, 2]
    assert vhids("search=mail") == [1]
    assert vhids("search=192.0.2.3") == [3]
    assert vhids("address=192.0.2.1") == [1]


@pytest.mark.parametrize(
    ("word", "expected"), [("0", [2]), ("no", [2]), ("1", [1, 3]), ("on", [1, 3])]
)
def test_the_enabled_filter_reads_the_words_a_body_may_use(
    admin_api: APIClient, nodes: list[Node], word: str, expected: list[int]
) -> None:
    # django-filter's own boolean filter ignored "0" and "no": every alias came back.
    make_alias(1)
    make_alias(2, enabled=False)
    make_alias(3)
    response = admin_api.get(f"{URL}?enabled={word}")
    assert response.status_code == 200, response.content
    assert sorted(a["vhid"] for a in response.json()["results"]) == expected


def test_an_unreadable_flag_filter_is_a_400_not_ignored(
    admin_api: APIClient, nodes: list[Node]
) -> None:
    make_alias(1)
    response = admin_api.get(f"{URL}?enabled=maybe")
    assert response.status_code == 400
    assert response.json() == {"enabled": ["Enabled must be true or false."]}
    nodes_response = admin_api.get("/api/v1/nodes/?maintenance=perhaps")
    assert nodes_response.status_code == 400
    assert nodes_response.json() == {"maintenance": ["Maintenance must be true or false."]}


def test_errors_are_json_field_by_field(admin_api: APIClient, nodes: list[Node]) -> None:
    response = admin_api.post(URL, {"vhid": 0, "interface": "eth0"}, format="json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    # Every problem at once, in the service's words (the page shows the same).
    assert response.json() == {
        "vhid": ["VHID must be between 1 and 255."],
        "password": ["Password is required."],
        "addresses": ["At least one address is required."],
        "priorities": ["A Primary node is required."],
    }


def test_the_schema_and_the_docs_are_served_without_a_cdn(admin_api: APIClient) -> None:
    schema = admin_api.get("/api/schema/?format=json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/api/v1/aliases/", "/api/v1/aliases/{id}/", "/api/v1/nodes/"} <= set(paths)
    docs = admin_api.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets
    assert all(not a.startswith(("http:", "https:", "//")) for a in assets), assets
    script = next(a for a in assets if a.endswith("swagger-ui-bundle.js"))
    assert admin_api.get(script).status_code == 200
