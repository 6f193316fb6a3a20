"""The Django admin's health checks: writes go through the services (same
messages, audit, version), support sees them and cannot change them."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from cluster import services
from cluster.models import AuditEntry, HealthCheck
from tests.factories import make_nodes, make_user
from tests.pages.helpers import client_for

pytestmark = pytest.mark.django_db

URL = "/admin/cluster/healthcheck/"


@pytest.fixture
def alice() -> Client:
    return client_for(make_user("alice", "administrator"))


@pytest.fixture
def sam() -> Client:
    return client_for(make_user("sam", "support"))


@pytest.fixture
def check() -> HealthCheck:
    make_nodes(3)
    return services.create_check(
        None, {"name": "smtp-25", "kind": "smtp", "scope": "nodes", "nodes": ["node1", "node2"]}
    )


def form(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "queue",
        "kind": "command",
        "host": "",
        "port": "",
        "path": "",
        "expect_status": "200",
        "min_free_percent": "10",
        "argv": "/usr/local/bin/queue-ok\n500\n",
        "interval_ms": "5000",
        "timeout_ms": "2000",
        "rise": "2",
        "fall": "3",
        "weight": "240",
        "scope": "nodes",
        "nodes": ["node2", "node3"],
        "enabled": "on",
    }
    data.update(overrides)
    return data


def test_both_roles_see_the_list_and_the_check(alice: Client, sam: Client, check) -> None:
    for client in (alice, sam):
        listing = client.get(URL)
        assert listing.status_code == 200
        assert "smtp-25" in listing.content.decode()
        assert "node1, node2" in listing.content.decode()
        assert client.get(f"{URL}{check.pk}/change/").status_code == 200


def test_support_cannot_add_change_or_delete(sam: Client, check) -> None:
    html = sam.get(f"{URL}{check.pk}/change/").content.decode()
    assert 'name="_save"' not in html
    assert sam.get(f"{URL}add/").status_code == 403
    assert sam.post(f"{URL}add/", form()).status_code == 403
    assert sam.post(f"{URL}{check.pk}/change/", form(name="smtp-25")).status_code == 403
    assert sam.post(f"{URL}{check.pk}/delete/", {"post": "yes"}).status_code == 403
    check.refresh_from_db()
    assert (check.version, check.kind) == (1, "smtp")


def test_an_admin_add_goes_through_the_service(alice: Client, check) -> None:
    response = alice.post(f"{URL}add/", form())
    assert response.status_code == 302, response.content.decode()
    created = HealthCheck.objects.get(name="queue")
    assert created.argv == ["/usr/local/bin/queue-ok", "500"]
    assert [n.name for n in created.nodes.order_by("ordinal")] == ["node2", "node3"]
    entry = AuditEntry.objects.filter(object_type="healthcheck").first()
    assert entry is not None
    assert (entry.actor_name, entry.action, entry.object_repr) == ("alice", "create", "queue")


def test_the_admin_shows_the_services_message_by_its_field(alice: Client, check) -> None:
    response = alice.post(f"{URL}add/", form(timeout_ms="5000"))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["timeout_ms"][0].startswith("Timeout must be shorter than the interval")
    assert not HealthCheck.objects.filter(name="queue").exists()


def test_an_admin_change_bumps_the_version_and_a_delete_goes_through_the_service(
    alice: Client, check
) -> None:
    data = form(name="smtp-25", kind="smtp", argv="", port="2525", nodes=["node1"])
    response = alice.post(f"{URL}{check.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()
    check.refresh_from_db()
    assert (check.port, check.version, check.argv) == (2525, 2, [])
    response = alice.post(f"{URL}{check.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not HealthCheck.objects.exists()
    actions = list(
        AuditEntry.objects.filter(object_type="healthcheck").values_list("action", flat=True)
    )
    assert actions == ["delete", "update", "create"]
