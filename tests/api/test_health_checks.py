"""/api/v1/health-checks/: the service's rules as 400s naming the field, support
reads and cannot change, and what a check looks like to a client."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from cluster.models import AuditEntry, HealthCheck, Node
from tests.api.conftest import token_client

URL = "/api/v1/health-checks/"


def body(name: str = "smtp-25", **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": name, "kind": "smtp"}
    data.update(overrides)
    return data


@pytest.fixture
def check(admin_api: APIClient, nodes: list[Node]) -> dict[str, Any]:
    response = admin_api.post(URL, body(scope="nodes", nodes=["node1", "node2"]), format="json")
    assert response.status_code == 201, response.content
    created: dict[str, Any] = response.json()
    return created


def test_an_administrator_creates_a_check_and_gets_it_back(admin_api, nodes) -> None:
    response = admin_api.post(
        URL,
        body("queue", kind="command", argv=["/usr/local/bin/queue-ok", "500"], weight=100),
        format="json",
    )
    assert response.status_code == 201, response.content
    data = response.json()
    assert {key: data[key] for key in ("name", "kind", "argv", "weight", "scope", "nodes")} == {
        "name": "queue",
        "kind": "command",
        "argv": ["/usr/local/bin/queue-ok", "500"],
        "weight": 100,
        "scope": "all",
        "nodes": [],
    }
    assert (data["source"], data["version"], data["effective_port"]) == ("health:queue", 1, 0)
    assert data["url"].endswith(f"{URL}{data['id']}/")
    entry = AuditEntry.objects.get(object_type="healthcheck")
    assert (entry.actor_name, entry.action) == ("alice", "create")


def test_the_defaults_show_in_the_answer(check) -> None:
    assert (check["interval_ms"], check["timeout_ms"]) == (2000, 1000)
    assert (check["rise"], check["fall"], check["weight"]) == (2, 3, 240)
    assert (check["port"], check["effective_port"], check["host"]) == (0, 25, "")
    assert check["nodes"] == ["node1", "node2"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"fall": 0}, {"fall": ["Fall must be between 1 and 10."]}),
        ({"port": 70000}, {"port": ["Port must be between 1 and 65535."]}),
        ({"kind": "tcp"}, {"port": ["A tcp check needs a port: 1 to 65535."]}),
        (
            {"kind": "command"},
            {"argv": ["A command check needs a program: give an absolute path."]},
        ),
        (
            {"interval_ms": 500, "timeout_ms": 500},
            {
                "timeout_ms": [
                    "Timeout must be shorter than the interval (500 ms is not below 500 ms): "
                    "the next run would start before this one gives up."
                ]
            },
        ),
        ({"interval_ms": "fast"}, {"interval_ms": ["Interval must be a whole number."]}),
        ({"scope": "nodes", "nodes": ["node9"]}, {"nodes": ["There is no node named 'node9'."]}),
        ({"name": None}, {"name": ["Name is required."]}),
    ],
)
def test_a_broken_rule_is_a_400_naming_the_field(admin_api, nodes, overrides, expected) -> None:
    response = admin_api.post(URL, body(**overrides), format="json")
    assert response.status_code == 400
    assert response.json() == expected
    assert not HealthCheck.objects.exists()


def test_a_patch_changes_only_what_it_names_and_bumps_the_version(admin_api, check) -> None:
    response = admin_api.patch(f"{URL}{check['id']}/", {"fall": 5}, format="json")
    assert response.status_code == 200, response.content
    data = response.json()
    assert (data["fall"], data["rise"], data["version"]) == (5, 2, 2)
    assert data["nodes"] == ["node1", "node2"]


def test_a_put_keeps_the_optional_fields_it_leaves_out(admin_api, check) -> None:
    response = admin_api.put(f"{URL}{check['id']}/", body(interval_ms=4000), format="json")
    assert response.status_code == 200, response.content
    data = response.json()
    assert (data["interval_ms"], data["scope"], data["nodes"]) == (
        4000,
        "nodes",
        ["node1", "node2"],
    )


def test_a_delete_removes_the_check(admin_api, check) -> None:
    assert admin_api.delete(f"{URL}{check['id']}/").status_code == 204
    assert not HealthCheck.objects.exists()
    assert AuditEntry.objects.filter(object_type="healthcheck", action="delete").count() == 1


def test_support_reads_and_cannot_change(support_api, check) -> None:
    assert support_api.get(URL).json()["count"] == 1
    assert support_api.get(f"{URL}{check['id']}/").json()["name"] == "smtp-25"
    assert support_api.post(URL, body("other"), format="json").status_code == 403
    assert support_api.patch(f"{URL}{check['id']}/", {"fall": 1}, format="json").status_code == 403
    assert support_api.delete(f"{URL}{check['id']}/").status_code == 403
    assert HealthCheck.objects.get().fall == 3


def test_no_role_and_no_token_are_refused(charlie, check) -> None:
    assert token_client(charlie).get(URL).status_code == 403
    assert APIClient().get(URL).status_code == 401


def test_the_list_filters_by_kind_and_enabled(admin_api, check) -> None:
    admin_api.post(URL, body("web", kind="http", enabled=False), format="json")
    names = [c["name"] for c in admin_api.get(URL, {"kind": "http"}).json()["results"]]
    assert names == ["web"]
    names = [c["name"] for c in admin_api.get(URL, {"enabled": "true"}).json()["results"]]
    assert names == ["smtp-25"]
    assert admin_api.get(URL, {"kind": "ping"}).status_code == 400
    blank = admin_api.get(URL, {"kind": ""})
    assert blank.status_code == 400
    assert "Choose one of: smtp, tcp, http, disk, command." in str(blank.json())


def test_the_schema_carries_the_checks_ranges(admin_api) -> None:
    schema = admin_api.get("/api/schema/?format=json").json()
    fields = schema["components"]["schemas"]["HealthCheckRequest"]["properties"]
    assert (fields["interval_ms"]["minimum"], fields["interval_ms"]["maximum"]) == (200, 3600000)
    assert (fields["fall"]["minimum"], fields["fall"]["maximum"]) == (1, 10)
    assert (fields["weight"]["minimum"], fields["weight"]["maximum"]) == (1, 240)
    assert fields["name"]["maxLength"] == 40
    assert set(schema["paths"][f"{URL}{{id}}/"]) >= {"get", "put", "patch", "delete"}


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "smtp", "starttls": True},
        {"kind": "tcp", "port": 587},
        {"kind": "http", "path": "/health", "expect_status": 204},
        {"kind": "disk", "path": "/var/spool", "min_free_percent": 20},
        {"kind": "command", "argv": ["/usr/local/bin/queue-ok", "500"]},
    ],
)
def test_what_a_get_returns_can_be_put_back_unchanged(admin_api, nodes, fields) -> None:
    created = admin_api.post(URL, body("round-trip", **fields), format="json").json()
    url = f"{URL}{created['id']}/"
    again = admin_api.put(url, admin_api.get(url).json(), format="json")
    assert again.status_code == 200, again.content
    assert again.json() == created
    assert HealthCheck.objects.get().version == 1


def test_the_list_costs_the_same_queries_however_many_checks(admin_api, nodes) -> None:
    def queries_for(count: int) -> int:
        for number in range(HealthCheck.objects.count(), count):
            admin_api.post(
                URL, body(f"c{number}", scope="nodes", nodes=["node1", "node2"]), format="json"
            )
        with CaptureQueriesContext(connection) as captured:
            assert admin_api.get(URL).json()["count"] == count
        return len(captured)

    assert queries_for(2) == queries_for(8)
