"""Named actors and small builders shared by the Django tests.

Actors (after healthchecks' ``hc/test.py``): ``alice`` is an administrator,
``sam`` is support (read-only), ``charlie`` is logged in with no role.
Builders go through ``cluster.services`` like every real write.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User

from cluster import access, services
from cluster.models import IPAlias, Node

ALIAS_SECRET = "vh-s3cret!"


def make_user(username: str, role: str | None = None) -> User:
    # No password: hashing one costs ~0.2 s; tests log in with force_login or a token.
    user = User.objects.create_user(username, f"{username}@example.org")
    if role == "administrator":
        access.make_administrator(user)
    elif role == "support":
        access.make_support(user)
    return user


def make_actors() -> tuple[User, User, User]:
    """(alice the administrator, sam the support user, charlie with no role)."""
    return make_user("alice", "administrator"), make_user("sam", "support"), make_user("charlie")


def make_node(ordinal: int, **overrides: Any) -> Node:
    data: dict[str, Any] = {
        "name": f"node{ordinal}",
        "address": f"198.51.100.{10 + ordinal}",
        "interface": "eth0",
        "ordinal": ordinal,
    }
    data.update(overrides)
    return services.create_node(None, data)


def make_nodes(count: int) -> list[Node]:
    return [make_node(ordinal) for ordinal in range(1, count + 1)]


def alias_data(number: int = 42, **overrides: Any) -> dict[str, Any]:
    """A valid AliasData with VHID and last address octet ``number``, for nodes
    node1 (primary) and node2 (secondary); ``overrides`` replace any key."""
    vhid = number
    data: dict[str, Any] = {
        "vhid": vhid,
        "interface": "eth0",
        "advbase": 1,
        "password": ALIAS_SECRET,
        "addresses": [f"192.0.2.{vhid}/24"],
        "priorities": [
            {"node": "node1", "priority": "primary"},
            {"node": "node2", "priority": "secondary"},
        ],
        "description": f"alias {vhid}",
    }
    data.update(overrides)
    return data


def make_alias(number: int = 42, **overrides: Any) -> IPAlias:
    return services.create_alias(None, alias_data(number, **overrides))
