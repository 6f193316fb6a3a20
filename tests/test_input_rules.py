"""Address rules, the address limit and NUL in a description, on all three paths.

Each rule lives once (``cluster.validators``, called by ``cluster.services``),
so the page form, the REST API and the Django admin refuse the same input with
the same message, and store nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils.html import escape

from cluster.models import IPAlias, Node
from tests.api.conftest import token_client
from tests.factories import alias_data
from tests.pages.helpers import ALIAS_URL, NODES_URL, alias_post, client_for, node_post

# Each address, and what the rule says about it after the address itself.
BROADCAST = "is the limited broadcast address (255.255.255.255)."
RESERVED = "is in 240.0.0.0/4, which is reserved and never a host's address."
THIS_NETWORK = 'is in 0.0.0.0/8 ("this network"), which is never a host\'s address.'
LINK_LOCAL_V4 = "is a link-local address (169.254.0.0/16); use a routable address."
LINK_LOCAL_V6 = "is a link-local address (fe80::/10); use a routable address."
NEVER_AN_ADDRESS = [
    (address, f"{address} {rule}")
    for address, rule in [
        ("255.255.255.255/32", BROADCAST),
        ("240.0.0.1/24", RESERVED),
        ("0.1.2.3/8", THIS_NETWORK),
        ("169.254.1.1/16", LINK_LOCAL_V4),
        ("fe80::1/64", LINK_LOCAL_V6),
    ]
]
NEVER_A_NODE_ADDRESS = [
    (address, f"{address} {rule}")
    for address, rule in [
        ("255.255.255.255", BROADCAST),
        ("240.0.0.1", RESERVED),
        ("0.1.2.3", THIS_NETWORK),
        ("169.254.1.1", LINK_LOCAL_V4),
        ("fe80::14", LINK_LOCAL_V6),
    ]
]
SEVENTEEN = [f"192.0.2.{n}/24" for n in range(100, 117)]
TOO_MANY = "An alias has at most 16 addresses (got 17)."
NUL_IN_DESCRIPTION = "Description must not contain a NUL character."


def admin_alias_form(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "vhid": 43,
        "interface": "eth0",
        "advbase": 1,
        "password": "admin-pw",
        "description": "from the admin",
        "addresses": "192.0.2.43/24",
        "priority__node1": "primary",
        "priority__node2": "secondary",
        "priority__node3": "",
        "enabled": "on",
        "preempt": "on",
    }
    data.update(overrides)
    return data


def shown(response: Any, message: str) -> bool:
    return response.status_code == 200 and escape(message) in response.content.decode()


# --- addresses that are never a VIP ----------------------------------------


@pytest.mark.parametrize(("address", "message"), NEVER_AN_ADDRESS)
def test_the_api_rejects_an_address_that_is_never_a_vip(
    alice: User, nodes: list[Node], address: str, message: str
) -> None:
    response = token_client(alice).post(
        "/api/v1/aliases/", alias_data(addresses=[address]), format="json"
    )
    assert response.status_code == 400, response.content
    assert response.json()["addresses"] == [message]
    assert not IPAlias.objects.exists()


@pytest.mark.parametrize(("address", "message"), NEVER_AN_ADDRESS)
def test_the_page_rejects_an_address_that_is_never_a_vip(
    alice: User, nodes: list[Node], address: str, message: str
) -> None:
    response = client_for(alice).post(f"{ALIAS_URL}add/", alias_post(nodes, addresses=address))
    assert response.context["form"].errors["addresses"] == [message]
    assert shown(response, message)
    assert not IPAlias.objects.exists()


@pytest.mark.parametrize(("address", "message"), NEVER_AN_ADDRESS)
def test_the_admin_rejects_an_address_that_is_never_a_vip(
    alice: User, nodes: list[Node], address: str, message: str
) -> None:
    response = client_for(alice).post(
        "/admin/cluster/ipalias/add/", admin_alias_form(addresses=address)
    )
    assert shown(response, message)
    assert not IPAlias.objects.exists()


@pytest.mark.parametrize(
    "address", ["192.0.2.1/24", "198.51.100.254/24", "2001:db8::1/64", "fd00::1/64", "10.0.0.1/8"]
)
def test_an_ordinary_address_is_still_a_vip(alice: User, nodes: list[Node], address: str) -> None:
    response = token_client(alice).post(
        "/api/v1/aliases/", alias_data(addresses=[address]), format="json"
    )
    assert response.status_code == 201, response.content


# --- addresses that are never a node's own ---------------------------------


@pytest.mark.parametrize(("address", "message"), NEVER_A_NODE_ADDRESS)
def test_the_api_rejects_an_address_that_is_never_a_nodes(
    alice: User, nodes: list[Node], address: str, message: str
) -> None:
    response = token_client(alice).post("/api/v1/nodes/", node_post(address=address), format="json")
    assert response.status_code == 400, response.content
    assert response.json()["address"] == [message]
    assert Node.objects.count() == 3


@pytest.mark.parametrize(("address", "message"), NEVER_A_NODE_ADDRESS)
def test_the_page_rejects_an_address_that_is_never_a_nodes(
    alice: User, nodes: list[Node], address: str, message: str
) -> None:
    response = client_for(alice).post(f"{NODES_URL}add/", node_post(address=address))
    assert response.context["form"].errors["address"] == [message]
    assert shown(response, message)
    assert Node.objects.count() == 3


@pytest.mark.parametrize(("address", "message"), NEVER_A_NODE_ADDRESS)
def test_the_admin_rejects_an_address_that_is_never_a_nodes(
    alice: User, nodes: list[Node], address: str, message: str
) -> None:
    response = client_for(alice).post("/admin/cluster/node/add/", node_post(address=address))
    assert shown(response, message)
    assert Node.objects.count() == 3


# --- at most 16 addresses per alias ------------------------------------------


def test_the_api_rejects_more_than_sixteen_addresses(alice: User, nodes: list[Node]) -> None:
    api = token_client(alice)
    response = api.post("/api/v1/aliases/", alias_data(addresses=SEVENTEEN), format="json")
    assert response.status_code == 400, response.content
    assert response.json()["addresses"] == [TOO_MANY]
    assert not IPAlias.objects.exists()
    # 40,000 is refused as quickly, without a message per address.
    many = [f"10.{n // 65536}.{n // 256 % 256}.{n % 256}/8" for n in range(1, 40_001)]
    response = api.post("/api/v1/aliases/", alias_data(addresses=many), format="json")
    assert response.json()["addresses"] == ["An alias has at most 16 addresses (got 40000)."]
    assert not IPAlias.objects.exists()


def test_sixteen_addresses_are_fine(alice: User, nodes: list[Node]) -> None:
    response = token_client(alice).post(
        "/api/v1/aliases/", alias_data(addresses=SEVENTEEN[:16]), format="json"
    )
    assert response.status_code == 201, response.content
    assert len(response.json()["addresses"]) == 16


def test_the_api_rejects_an_update_to_more_than_sixteen_addresses(
    alice: User, nodes: list[Node]
) -> None:
    api = token_client(alice)
    created = api.post("/api/v1/aliases/", alias_data(), format="json").json()
    response = api.patch(created["url"], {"addresses": SEVENTEEN}, format="json")
    assert response.status_code == 400
    assert response.json()["addresses"] == [TOO_MANY]
    assert IPAlias.objects.get().addresses.count() == 1


def test_the_page_rejects_more_than_sixteen_addresses(alice: User, nodes: list[Node]) -> None:
    response = client_for(alice).post(
        f"{ALIAS_URL}add/", alias_post(nodes, addresses="\n".join(SEVENTEEN))
    )
    assert response.context["form"].errors["addresses"] == [TOO_MANY]
    assert shown(response, TOO_MANY)
    assert not IPAlias.objects.exists()


def test_the_admin_rejects_more_than_sixteen_addresses(alice: User, nodes: list[Node]) -> None:
    response = client_for(alice).post(
        "/admin/cluster/ipalias/add/", admin_alias_form(addresses="\n".join(SEVENTEEN))
    )
    assert shown(response, TOO_MANY)
    assert not IPAlias.objects.exists()


# --- NUL in a description ------------------------------------------------------


def test_the_api_rejects_a_nul_in_the_description(alice: User, nodes: list[Node]) -> None:
    response = token_client(alice).post(
        "/api/v1/aliases/", alias_data(description="mail\x00gateway"), format="json"
    )
    assert response.status_code == 400, response.content
    assert response.json()["description"] == [NUL_IN_DESCRIPTION]
    assert not IPAlias.objects.exists()


def test_the_page_rejects_a_nul_in_the_description_with_the_same_words(
    alice: User, nodes: list[Node]
) -> None:
    response = client_for(alice).post(
        f"{ALIAS_URL}add/", alias_post(nodes, description="mail\x00gateway")
    )
    assert response.context["form"].errors["description"] == [NUL_IN_DESCRIPTION]
    assert not IPAlias.objects.exists()


def test_the_admin_rejects_a_nul_in_the_description_with_the_same_words(
    alice: User, nodes: list[Node]
) -> None:
    admin = client_for(alice)
    response = admin.post("/admin/cluster/ipalias/add/", admin_alias_form(description="a\x00b"))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["description"] == [NUL_IN_DESCRIPTION]
    assert not IPAlias.objects.exists()


def test_the_page_rejects_a_nul_in_the_password_with_the_services_words(
    alice: User, nodes: list[Node]
) -> None:
    client: Client = client_for(alice)
    response = client.post(f"{ALIAS_URL}add/", alias_post(nodes, password="se\x00cret"))
    assert response.context["form"].errors["password"] == [
        "Password must not contain a NUL character."
    ]
    assert not IPAlias.objects.exists()
