"""System → Cluster → Health checks: the list with its Live column, add, edit
and delete through the services, each rule's message by its field, and support
sees everything and no control."""

from __future__ import annotations

import re
from typing import Any
from unittest import mock

import pytest
from django.test import Client

from cluster import live, services
from cluster.checks import CheckStatus
from cluster.models import AuditEntry, HealthCheck, Node
from tests.pages.helpers import assert_field_error, assert_form_error, field_block

URL = "/system/cluster/health-checks/"
ADD_URL = f"{URL}add/"


def check_post(**overrides: Any) -> dict[str, Any]:
    """What the browser posts from the form (every kind's fields, as shown)."""
    post: dict[str, Any] = {
        "name": "smtp-25",
        "kind": "smtp",
        "enabled": "on",
        "host": "",
        "port": "",
        "path": "",
        "expect_status": "200",
        "min_free_percent": "10",
        "argv": "",
        "interval_ms": "2000",
        "timeout_ms": "1000",
        "fall": "3",
        "rise": "2",
        "weight": "240",
        "scope": "all",
    }
    post.update(overrides)
    return {key: value for key, value in post.items() if value is not None}


@pytest.fixture
def check(alice, nodes: list[Node]) -> HealthCheck:
    return services.create_check(
        alice, {"name": "smtp-25", "kind": "smtp", "scope": "nodes", "nodes": ["node1", "node2"]}
    )


def test_the_menu_leads_to_the_page(alice_client: Client, nodes) -> None:
    html = alice_client.get("/system/cluster/").content.decode()
    assert f'href="{URL}"' in html
    page = alice_client.get(URL)
    assert page.status_code == 200
    assert 'class="active">Health checks</a>' in page.content.decode()


def test_the_list_shows_each_check_with_a_live_line_per_node_in_scope(
    alice_client: Client, check, nodes
) -> None:
    services.create_check(None, {"name": "spool", "kind": "disk", "path": "/var/spool"})
    html = alice_client.get(URL).content.decode()
    assert f'<tr id="check-{check.pk}" data-check="smtp-25">' in html
    assert "(the node):25" in html
    assert "/var/spool ≥ 10 % free" in html
    # Nothing reported yet: a dash per node that runs it (two, and all three).
    assert html.count('data-check-live="smtp-25"') == 2
    assert html.count('data-check-live="spool"') == 3
    assert 'data-node="node3" data-state="unknown"' in html


def test_the_live_column_shows_what_the_nodes_report(alice_client: Client, check) -> None:
    reported = {
        "node1": {"smtp-25": CheckStatus("smtp-25", "smtp", False, 3, "connection refused")},
        "node2": {"smtp-25": CheckStatus("smtp-25", "smtp", True, 12)},
    }
    with mock.patch.object(live, "check_statuses", create=True, return_value=reported):
        html = alice_client.get(URL).content.decode()
    assert "failing 3\u00d7 (connection refused)" in html
    assert 'data-node="node1" data-state="failing"' in html
    assert 'data-node="node2" data-state="passing"' in html


def test_live_data_that_cannot_be_read_degrades_the_page_without_failing_it(
    alice_client: Client, check
) -> None:
    with mock.patch.object(live, "check_statuses", create=True, side_effect=ValueError("bad")):
        response = alice_client.get(URL)
    assert response.status_code == 200
    assert 'data-node="node1" data-state="unknown"' in response.content.decode()


def test_adding_a_check_from_the_page(alice_client: Client, nodes) -> None:
    post = check_post(
        name="queue",
        kind="command",
        argv="/usr/local/bin/queue-ok\r\n500\r\n",
        # Left over in another kind's fields: neither refused nor stored.
        port="2525",
        expect_status="204",
        scope="nodes",
        nodes=["node1", "node3"],
        boot_needs_rise="on",
    )
    response = alice_client.post(ADD_URL, post)
    assert response.status_code == 302, response.context["form"].errors
    check = HealthCheck.objects.get(name="queue")
    assert check.argv == ["/usr/local/bin/queue-ok", "500"]
    assert (check.port, check.expect_status, check.boot_needs_rise) == (0, 200, True)
    assert [node.name for node in check.nodes.order_by("ordinal")] == ["node1", "node3"]
    entry = AuditEntry.objects.filter(object_type="healthcheck").first()
    assert entry is not None
    assert (entry.actor_name, entry.action) == ("alice", "create")


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"name": ""}, "name", "Name is required."),
        ({"name": "Mail 25"}, "name", "Check name must be 1 to 40 lowercase letters"),
        ({"timeout_ms": "2000"}, "timeout_ms", "Timeout must be shorter than the interval"),
        ({"fall": "11"}, "fall", "Fall must be between 1 and 10."),
        ({"weight": "0"}, "weight", "Weight must be between 1 and 240."),
        ({"port": "99999"}, "port", "Port must be between 1 and 65535."),
        ({"kind": "tcp"}, "port", "A tcp check needs a port: 1 to 65535."),
        ({"kind": "command"}, "argv", "A command check needs a program: give an absolute path."),
        ({"kind": "disk"}, "path", "A disk check needs a path"),
        ({"scope": "nodes"}, "nodes", "Choose at least one node, or the scope all."),
        ({"interval_ms": "1s"}, "interval_ms", "Interval must be a whole number."),
    ],
)
def test_each_rule_is_shown_next_to_its_field(
    alice_client: Client, nodes, overrides, field, message
) -> None:
    response = alice_client.post(ADD_URL, check_post(**overrides))
    assert_field_error(response, field, message)
    assert not HealthCheck.objects.exists()


def test_the_limit_of_checks_is_shown_above_the_form(alice_client: Client, nodes) -> None:
    for number in range(64):
        HealthCheck.objects.create(name=f"c{number}", kind="smtp")
    response = alice_client.post(ADD_URL, check_post())
    assert_form_error(response, "A cluster has at most 64 health checks.")


def test_editing_a_check_shows_its_values_and_saves_a_new_version(
    alice_client: Client, check
) -> None:
    url = f"{URL}{check.pk}/edit/"
    form = alice_client.get(url).context["form"]
    assert form.initial["nodes"] == ["node1", "node2"]
    assert form.initial["port"] == ""
    boxes = re.findall(
        r"<input[^>]*>", field_block(alice_client.get(url).content.decode(), "nodes")
    )
    checked = [re.findall(r'value="([^"]+)"', box)[0] for box in boxes if "checked" in box]
    assert checked == ["node1", "node2"]
    response = alice_client.post(url, check_post(port="2525", scope="nodes", nodes=["node3"]))
    assert response.status_code == 302
    check.refresh_from_db()
    assert (check.port, check.version) == (2525, 2)
    assert [node.name for node in check.nodes.all()] == ["node3"]


def test_deleting_a_check_asks_then_deletes(alice_client: Client, check) -> None:
    url = f"{URL}{check.pk}/delete/"
    page = alice_client.get(url).content.decode()
    assert "Delete the health check smtp-25?" in page
    assert "The nodes that run it (node1, node2) stop running it" in page
    assert alice_client.post(url).status_code == 302
    assert not HealthCheck.objects.exists()


def test_support_sees_the_list_and_no_control(sam_client: Client, check) -> None:
    response = sam_client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert "smtp-25" in html
    for url in (ADD_URL, f"{URL}{check.pk}/edit/", f"{URL}{check.pk}/delete/"):
        assert f'href="{url}"' not in html
        assert sam_client.get(url).status_code == 403
        assert sam_client.post(url, check_post()).status_code == 403
    assert HealthCheck.objects.get().version == 1


def test_every_health_check_page_requires_login(check) -> None:
    client = Client()
    for url in (URL, ADD_URL, f"{URL}{check.pk}/edit/", f"{URL}{check.pk}/delete/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/login/?next=")


def test_the_audit_log_shows_a_checks_change(alice_client: Client, check) -> None:
    services.update_check(None, check, {"fall": 5}, partial=True)
    html = alice_client.get("/system/audit/").content.decode()
    assert '<span class="muted small">Health check</span><br>smtp-25' in html
    fall = '<th class="mono">fall</th><td class="mono pre-lines">3</td><td class="arrow">→</td>'
    assert f'{fall}<td class="mono pre-lines">5</td>' in html
