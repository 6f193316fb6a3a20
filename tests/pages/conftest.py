"""Fixtures of the page tests: the named actors of ``tests.factories`` with
logged-in clients, and a small cluster.

alice is an administrator, sam has the support role, charlie is logged in
with no role. ``nodes`` is node1..node3 (ordinals 1..3); ``alias`` is VHID 1
on eth0 (192.0.2.101/24) with node1 Primary, node2 Secondary, node3 Backup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from cluster import services
from cluster.models import IPAlias, Node
from tests.factories import alias_data
from tests.pages.helpers import client_for

THREE_TIERS = [
    {"node": "node1", "priority": "primary"},
    {"node": "node2", "priority": "secondary"},
    {"node": "node3", "priority": "backup"},
]


@pytest.fixture(autouse=True)
def _no_redis(settings: Any, tmp_path: Path) -> None:
    """No Redis unless a test asks for ``redis_url``: never the host's (live
    state then reads as unavailable, quickly: the socket does not exist)."""
    settings.REDIS_URL = f"redis+socket://{tmp_path}/no-redis.sock"


@pytest.fixture
def alice_client(alice: User) -> Client:
    return client_for(alice)


@pytest.fixture
def sam_client(sam: User) -> Client:
    return client_for(sam)


@pytest.fixture
def alias(alice: User, nodes: list[Node]) -> IPAlias:
    data = alias_data(1, addresses=["192.0.2.101/24"], priorities=THREE_TIERS, description="mail A")
    return services.create_alias(alice, data)


@pytest.fixture
def active_active(alice: User, alias: IPAlias) -> tuple[IPAlias, IPAlias]:
    """Two aliases with opposite priorities, as the appliance documents:
    VHID 1 has node1 Primary, VHID 2 has node2 Primary; each other is Secondary."""
    priorities = [
        {"node": "node2", "priority": "primary"},
        {"node": "node1", "priority": "secondary"},
    ]
    second = services.create_alias(
        alice, alias_data(2, addresses=["192.0.2.102/24"], priorities=priorities)
    )
    return alias, second
