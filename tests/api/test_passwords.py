"""The alias password never comes back: not in any response, audit entry or log line."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from rest_framework.test import APIClient

from cluster.models import AuditEntry, IPAlias, Node
from tests.factories import alias_data

SECRET = "Zq7-never-shown"
NEW_SECRET = "Kp4-also-hidden"


def test_the_password_is_in_no_response(
    admin_api: APIClient, nodes: list[Node], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bodies: list[bytes] = []

    def record(response: Any) -> Any:
        assert response.status_code < 300, response.content
        bodies.append(response.content)
        return response

    created = record(admin_api.post("/api/v1/aliases/", alias_data(42, password=SECRET)))
    url = f"/api/v1/aliases/{created.json()['id']}/"
    record(admin_api.get("/api/v1/aliases/"))
    record(admin_api.get(url))
    record(admin_api.put(url, alias_data(42, password=NEW_SECRET)))
    record(admin_api.patch(url, {"password": SECRET}))
    record(admin_api.get("/api/schema/"))
    record(admin_api.get("/api/docs/"))
    too_long = SECRET * 2
    refused = admin_api.patch(url, {"password": too_long})
    assert refused.status_code == 400
    bodies.append(refused.content)

    for body in bodies:
        for secret in (SECRET, NEW_SECRET, too_long):
            assert secret.encode() not in body
    assert b'"password"' not in bodies[0]
    for secret in (SECRET, NEW_SECRET):
        assert secret not in caplog.text
        assert secret not in IPAlias.objects.get().password_encrypted


def test_the_audit_log_marks_a_password_change_without_the_password(
    admin_api: APIClient, nodes: list[Node]
) -> None:
    created = admin_api.post("/api/v1/aliases/", alias_data(42, password=SECRET)).json()
    url = f"/api/v1/aliases/{created['id']}/"
    admin_api.patch(url, {"password": NEW_SECRET})
    admin_api.patch(url, {"description": "no password this time"})
    create, change, other = AuditEntry.objects.filter(object_type="ipalias").order_by("id")
    assert create.after is not None
    assert create.after["password"] == "(changed)"
    assert change.after is not None
    assert change.after["password"] == "(changed)"
    assert change.before is not None
    assert "password" not in change.before
    assert other.after is not None
    assert "password" not in other.after
    for entry in (create, change, other):
        text = f"{entry.before}{entry.after}"
        assert SECRET not in text
        assert NEW_SECRET not in text


def test_the_schema_has_the_password_in_requests_only(admin_api: APIClient) -> None:
    components = admin_api.get("/api/schema/?format=json").json()["components"]["schemas"]
    assert "password" not in components["Alias"]["properties"]
    assert components["AliasRequest"]["properties"]["password"]["writeOnly"] is True
    assert "password" not in components["AliasRequest"].get("required", [])
