"""Helpers of the page tests: form posts, and where a message sits on the page.

Actors, nodes and service input come from ``tests.factories``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from django.contrib.auth.models import User
from django.test import Client
from django.utils.html import escape

from cluster.models import Node

ALIAS_URL = "/system/advanced/ip-alias/"
NODES_URL = "/system/cluster/nodes/"


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def alias_post(
    nodes: Sequence[Node],
    tiers: Sequence[str] = ("primary", "secondary", "backup"),
    **overrides: Any,
) -> dict[str, Any]:
    """What the browser posts from the alias form; ``tiers`` in node order ("" = not a member)."""
    post: dict[str, Any] = {
        "vhid": "7",
        "interface": "eth0",
        "advbase": "1",
        "password": "form-secret",
        "addresses": "192.0.2.107/24\n2001:db8::107/64",
        "enabled": "on",
        "preempt": "on",
        "description": "from the page",
    }
    for node, tier in zip(nodes, tiers, strict=False):
        post[f"priority_{node.pk}"] = tier
    post.update(overrides)
    return {key: value for key, value in post.items() if value is not None}


def node_post(**overrides: Any) -> dict[str, Any]:
    post = {"name": "node4", "address": "198.51.100.14", "interface": "eth0", "ordinal": "4"}
    post.update(overrides)
    return {key: value for key, value in post.items() if value is not None}


def field_block(html: str, field: str) -> str:
    """The HTML of one form row (``id="row-<field>"``) up to the next row."""
    row = rf'id="row-{re.escape(field)}"(.*?)(?=id="row-|class="form-actions")'
    match = re.search(row, html, re.S)
    assert match, f"no row for {field!r} on the page"
    return match.group(1)


def assert_field_error(response: Any, field: str, message: str) -> None:
    """An error of ``field`` reads ``message`` (or starts with it, where the rest names
    another object) and is shown in that field's row of the page."""
    assert response.status_code == 200
    errors = response.context["form"].errors.get(field, [])
    found = [error for error in errors if error.startswith(message)]
    assert found, f"{field}: {errors!r}"
    assert escape(found[0]) in field_block(response.content.decode(), field)


def assert_form_error(response: Any, message: str) -> None:
    """``message`` is shown above the form, not tied to a field."""
    assert response.status_code == 200
    assert message in response.context["form"].non_field_errors()
    assert escape(message) in response.content.decode()
