"""Nodes through the API: every rule with its field and message, and deletion."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from cluster.models import AuditEntry, IPAlias, Node
from tests.factories import make_alias, make_node, make_nodes

URL = "/api/v1/nodes/"


def node_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "node4",
        "address": "198.51.100.14",
        "interface": "eth0",
        "ordinal": 4,
    }
    data.update(overrides)
    return data


def test_a_valid_node_is_created(admin_api: APIClient, nodes: list[Node]) -> None:
    response = admin_api.post(URL, node_data(), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["name"], body["ordinal"], body["maintenance"]) == ("node4", 4, False)


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"name": "Node 4"}, "name", "Node name must be 1 to 32 lowercase letters, digits or "
         "hyphens, starting and ending with a letter or digit."),
        ({"name": "node1"}, "name", "A node named node1 already exists."),
        ({"address": "198.51.100.300"}, "address",
         "'198.51.100.300' is not a valid IPv4 or IPv6 address."),
        ({"address": "198.51.100.11"}, "address",
         "198.51.100.11 is the own address of node node1."),
        ({"address": "127.0.0.1"}, "address", "127.0.0.1 is not a unicast host address."),
        ({"address": "::ffff:198.51.100.99"}, "address", "::ffff:198.51.100.99 is an IPv4-mapped "
         "IPv6 address; write the IPv4 address 198.51.100.99 instead."),
        ({"address": "fe80::14%eth0"}, "address",
         "fe80::14%eth0: an address with a zone (%eth0) cannot be a node's own address."),
        ({"interface": ""}, "interface", "Interface is required."),
        ({"interface": "a" * 16}, "interface", "Interface must be a Linux interface name: "
         "1 to 15 letters, digits, '.', '-' or '_'."),
        ({"ordinal": 0}, "ordinal", "Ordinal must be between 1 and 9."),
        ({"ordinal": 10}, "ordinal", "Ordinal must be between 1 and 9."),
        ({"ordinal": 2}, "ordinal", "Ordinal 2 is already used by node node2."),
        # Wrong types: the service's words, as on the page, not DRF's.
        ({"ordinal": "abc"}, "ordinal", "Ordinal must be a whole number."),
        ({"ordinal": None}, "ordinal", "Ordinal is required."),
        ({"name": 4}, "name", "Name must be text."),
        ({"maintenance": "maybe"}, "maintenance", "Maintenance must be true or false."),
    ],
)  # fmt: skip
def test_it_rejects_an_invalid_node(
    admin_api: APIClient, nodes: list[Node], overrides: dict[str, Any], field: str, message: str
) -> None:
    response = admin_api.post(URL, node_data(**overrides), format="json")
    assert response.status_code == 400, response.content
    assert message in response.json()[field], response.json()
    assert Node.objects.count() == 3


def test_a_node_may_not_take_an_alias_address(admin_api: APIClient, nodes: list[Node]) -> None:
    make_alias(42, description="mail")
    response = admin_api.post(URL, node_data(address="192.0.2.42"), format="json")
    assert response.status_code == 400
    assert response.json()["address"] == [
        "192.0.2.42 is already used by alias VHID 42 on eth0 (mail)."
    ]


def test_a_cluster_has_at_most_nine_nodes(admin_api: APIClient, db: None) -> None:
    make_nodes(9)
    response = admin_api.post(URL, node_data(name="node10", address="198.51.100.99"), format="json")
    assert response.status_code == 400
    assert response.json()["non_field_errors"] == ["A cluster has at most nine nodes."]


def test_a_node_can_be_renamed_and_keeps_its_own_values(
    admin_api: APIClient, nodes: list[Node]
) -> None:
    response = admin_api.patch(f"{URL}{nodes[0].pk}/", {"name": "alpha"}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["name"], response.json()["ordinal"]) == ("alpha", 1)


def test_a_new_ordinal_bumps_the_version_of_its_aliases(
    admin_api: APIClient, nodes: list[Node]
) -> None:
    alias = make_alias(42)
    response = admin_api.patch(f"{URL}{nodes[1].pk}/", {"ordinal": 7}, format="json")
    assert response.status_code == 200
    alias.refresh_from_db()
    assert alias.version == 2


def test_a_node_in_use_is_not_deleted_without_force(
    admin_api: APIClient, nodes: list[Node]
) -> None:
    make_alias(42, description="mail")
    response = admin_api.delete(f"{URL}{nodes[1].pk}/")
    assert response.status_code == 400
    assert response.json() == {
        "force": [
            "Node node2 is used by 1 alias (VHID 42 on eth0 (mail)); "
            "confirm to delete it together with its priorities."
        ]
    }
    assert Node.objects.filter(name="node2").exists()


def test_force_deletes_a_node_and_passes_its_primary_on(
    admin_api: APIClient, nodes: list[Node]
) -> None:
    alias = make_alias(42)  # node1 primary, node2 secondary
    response = admin_api.delete(f"{URL}{nodes[0].pk}/?force=true")
    assert response.status_code == 204
    alias.refresh_from_db()
    assert [(p.node.name, p.priority) for p in alias.priorities.all()] == [("node2", "primary")]
    assert alias.version == 2
    entry = AuditEntry.objects.filter(object_type="ipalias").latest("id")
    assert entry.after is not None
    assert entry.after["priorities"] == [{"node": "node2", "priority": "primary", "advskew": 0}]


def test_an_alias_left_without_nodes_is_disabled(admin_api: APIClient, db: None) -> None:
    make_node(1)
    make_alias(5, priorities=[{"node": "node1", "priority": "primary"}])
    response = admin_api.delete(f"{URL}{Node.objects.get().pk}/?force=1")
    assert response.status_code == 204
    alias = IPAlias.objects.get()
    assert (alias.enabled, alias.priorities.count()) == (False, 0)


def test_an_unused_node_is_deleted(admin_api: APIClient, nodes: list[Node]) -> None:
    assert admin_api.delete(f"{URL}{nodes[2].pk}/").status_code == 204
    assert not Node.objects.filter(name="node3").exists()


def test_a_put_without_maintenance_keeps_the_node_in_maintenance(
    admin_api: APIClient, nodes: list[Node]
) -> None:
    node = nodes[0]
    patched = admin_api.patch(f"{URL}{node.pk}/", {"maintenance": True}, format="json")
    assert patched.status_code == 200
    data = {"name": node.name, "address": "198.51.100.21", "interface": "eth1", "ordinal": 1}
    response = admin_api.put(f"{URL}{node.pk}/", data, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["maintenance"] is True
    node.refresh_from_db()
    assert (node.address, node.interface, node.maintenance) == ("198.51.100.21", "eth1", True)
