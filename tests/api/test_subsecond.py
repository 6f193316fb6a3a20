"""Sub-second timing (advbase 0) through the API: accepted, each priority's
advert interval and master-down time shown, and the stability rule refused
with the service's message (tests/test_subsecond.py has the rule itself)."""

from __future__ import annotations

from rest_framework.test import APIClient

from cluster.models import IPAlias, Node
from tests.factories import alias_data, make_alias
from tests.test_subsecond import FIFTH_ON_NODE1_AND_NODE2

URL = "/api/v1/aliases/"


def test_the_api_creates_a_sub_second_alias_and_shows_each_nodes_timing(
    admin_api: APIClient, nodes: list[Node]
) -> None:
    response = admin_api.post(URL, alias_data(42, advbase=0), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["advbase"] == 0
    assert body["priorities"] == [
        {
            "node": "node1",
            "priority": "primary",
            "advskew": 4,
            "advert_interval_ms": 15.625,
            "master_down_ms": 46.875,
        },
        {
            "node": "node2",
            "priority": "secondary",
            "advskew": 30,
            "advert_interval_ms": 117.1875,
            "master_down_ms": 351.5625,
        },
    ]
    listed = admin_api.get(URL).json()["results"]
    assert listed[0]["priorities"] == body["priorities"]


def test_the_timing_is_read_only(admin_api: APIClient, nodes: list[Node]) -> None:
    alias = make_alias(42)
    priorities = [
        {"node": "node1", "priority": "primary", "advert_interval_ms": 1, "master_down_ms": 1}
    ]
    response = admin_api.patch(f"{URL}{alias.pk}/", {"priorities": priorities}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["priorities"][0]["master_down_ms"] == 3000.0


def test_the_api_refuses_a_fifth_sub_second_alias_on_a_node(
    admin_api: APIClient, nodes: list[Node]
) -> None:
    for number in range(1, 5):
        make_alias(number, advbase=0)
    response = admin_api.post(URL, alias_data(5, advbase=0), format="json")
    assert response.status_code == 400, response.content
    assert response.json() == {"advbase": [FIFTH_ON_NODE1_AND_NODE2]}
    assert IPAlias.objects.count() == 4
