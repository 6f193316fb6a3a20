"""Fixtures of the page tests: named actors and a small cluster.

alice is an administrator, bob has the support role, charlie is logged in
with no role. The cluster has node1..node3 (ordinals 1..3) and, with the
``alias`` fixture, VHID 1 on eth0 with node1 Primary, node2 Secondary and
node3 Backup.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from cluster import access, services
from cluster.models import IPAlias, Node
from tests.pages.helpers import alias_data, client_for, make_user


@pytest.fixture
def alice(db: None) -> User:
    user = make_user("alice")
    access.make_administrator(user)
    return user


@pytest.fixture
def bob(db: None) -> User:
    user = make_user("bob")
    access.make_support(user)
    return user


@pytest.fixture
def charlie(db: None) -> User:
    return make_user("charlie")


@pytest.fixture
def alice_client(alice: User) -> Client:
    return client_for(alice)


@pytest.fixture
def bob_client(bob: User) -> Client:
    return client_for(bob)


@pytest.fixture
def nodes(alice: User) -> list[Node]:
    return [
        services.create_node(
            alice,
            {"name": f"node{n}", "address": f"192.0.2.{10 + n}", "interface": "eth0", "ordinal": n},
        )
        for n in (1, 2, 3)
    ]


@pytest.fixture
def alias(alice: User, nodes: list[Node]) -> IPAlias:
    return services.create_alias(alice, alias_data())


@pytest.fixture
def active_active(alice: User, nodes: list[Node]) -> tuple[IPAlias, IPAlias]:
    """Two aliases with opposite priorities, as the appliance documents:
    VHID 1 has node1 Primary, VHID 2 has node2 Primary; each other is Secondary."""
    first = services.create_alias(alice, alias_data())
    second = services.create_alias(
        alice,
        alias_data(
            vhid=2,
            addresses=["192.0.2.102/24"],
            priorities=[
                {"node": "node2", "priority": "primary"},
                {"node": "node1", "priority": "secondary"},
            ],
        ),
    )
    return first, second
