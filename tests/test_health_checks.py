"""Health checks as desired state (issue 10): the service's rules with their
messages, the audit entry, the apply after commit to the nodes of the old and
the new scope, and what each node is told to run."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from appliance.celery import app as celery_app
from cluster import checks, choices, services
from cluster.choices import AuditAction
from cluster.models import AuditEntry, HealthCheck, Node
from tests.factories import make_nodes, make_user

pytestmark = pytest.mark.django_db


def check_data(name: str = "smtp-25", **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": name, "kind": "smtp"}
    data.update(overrides)
    return data


def errors_of(data: dict[str, Any], check: HealthCheck | None = None, **kw: Any) -> Any:
    with pytest.raises(ValidationError) as exc:
        services.validate_check(data, check, **kw)
    return exc.value.message_dict


@pytest.fixture
def three() -> list[Node]:
    return make_nodes(3)


def sent_queues(send: mock.Mock) -> list[str]:
    return sorted(call.kwargs["queue"] for call in send.call_args_list)


def test_the_kinds_are_the_contracts_kinds() -> None:
    assert tuple(choices.CheckKind.values) == checks.KINDS


def test_a_check_is_created_with_the_defaults_of_the_node_contract(three) -> None:
    check = services.create_check(None, check_data())
    spec = checks.CheckSpec(name="x", kind="smtp")
    assert (check.interval_ms, check.timeout_ms) == (spec.interval_ms, spec.timeout_ms)
    assert (check.rise, check.fall, check.weight) == (spec.rise, spec.fall, spec.weight)
    assert check.version == 1
    assert check.scope == "all"
    assert check.effective_port == 25
    assert check.source == "health:smtp-25"


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"name": ""}, "name", "Name is required."),
        ({"name": "SMTP 25"}, "name", "Check name must be 1 to 40 lowercase letters"),
        ({"name": "x" * 41}, "name", "Check name must be 1 to 40"),
        ({"kind": "ping"}, "kind", "Kind must be one of smtp, tcp, http, disk, command."),
        ({"interval_ms": 100}, "interval_ms", "Interval must be between 200 and 3600000 ms"),
        ({"interval_ms": 3_600_001}, "interval_ms", "Interval must be between 200 and 3600000"),
        ({"interval_ms": "2s"}, "interval_ms", "Interval must be a whole number."),
        ({"timeout_ms": 49}, "timeout_ms", "Timeout must be at least 50 ms."),
        (
            {"interval_ms": 1000, "timeout_ms": 1000},
            "timeout_ms",
            "Timeout must be shorter than the interval",
        ),
        ({"rise": 0}, "rise", "Rise must be between 1 and 10."),
        ({"fall": 11}, "fall", "Fall must be between 1 and 10."),
        ({"weight": 0}, "weight", "Weight must be between 1 and 240."),
        ({"weight": 241}, "weight", "Weight must be between 1 and 240."),
        ({"port": 65536}, "port", "Port must be between 1 and 65535."),
        ({"port": -1}, "port", "Port must be between 1 and 65535."),
        ({"kind": "tcp"}, "port", "A tcp check needs a port: 1 to 65535."),
        ({"host": "mail..example"}, "host", "'mail..example' is neither an IP address"),
        ({"host": "192.0.2.300"}, "host", "'192.0.2.300' is neither an IP address"),
        ({"host": "224.0.0.18"}, "host", "224.0.0.18 is not a unicast host address."),
        ({"host": 7}, "host", "Host must be text."),
        ({"kind": "http", "path": "health"}, "path", "An http path starts with '/'"),
        ({"kind": "http", "expect_status": 600}, "expect_status", "Expected status must be"),
        ({"kind": "disk"}, "path", "A disk check needs a path: give an absolute path"),
        ({"kind": "disk", "path": "var"}, "path", "A disk check's path must be absolute"),
        (
            {"kind": "disk", "path": "/var", "min_free_percent": 100},
            "min_free_percent",
            "Minimum free percent must be between 1 and 99.",
        ),
        ({"kind": "command"}, "argv", "A command check needs a program: give an absolute path."),
        ({"kind": "command", "argv": ["queue-ok"]}, "argv", "The program must be an absolute"),
        ({"kind": "command", "argv": "/bin/true"}, "argv", "Command must be a list"),
        ({"kind": "command", "argv": ["/bin/x", 3]}, "argv", "Each item of the command"),
        ({"kind": "command", "argv": ["/bin/x\x00"]}, "argv", "The command must not contain"),
        ({"kind": "command", "argv": ["/bin/x"] * 33}, "argv", "A command has at most 32"),
        ({"port": 2525, "kind": "disk", "path": "/"}, "port", "Port applies to smtp, tcp and"),
        ({"starttls": True, "kind": "tcp", "port": 25}, "starttls", "STARTTLS applies to smtp"),
        ({"argv": ["/bin/true"]}, "argv", "Command applies to command checks only."),
        ({"scope": "some"}, "scope", "Scope must be all (every node) or nodes"),
        ({"scope": "nodes"}, "nodes", "Choose at least one node, or the scope all."),
        ({"scope": "nodes", "nodes": ["node9"]}, "nodes", "There is no node named 'node9'."),
        (
            {"scope": "nodes", "nodes": ["node1", "node1"]},
            "nodes",
            "node1 appears more than once.",
        ),
        ({"nodes": ["node1"]}, "nodes", "Nodes are chosen only with the scope nodes"),
        ({"enabled": "maybe"}, "enabled", "Enabled must be true or false."),
    ],
)
def test_each_rule_names_its_field(three, data, field, message) -> None:
    errors = errors_of(check_data(**data))
    assert any(m.startswith(message) for m in errors.get(field, [])), errors


def test_one_call_reports_every_problem_at_once(three) -> None:
    errors = errors_of({"kind": "tcp", "rise": 0, "fall": 0})
    assert set(errors) >= {"name", "port", "rise", "fall"}


def test_a_name_is_unique(three) -> None:
    services.create_check(None, check_data())
    errors = errors_of(check_data())
    assert errors == {"name": ["A check named smtp-25 already exists."]}


def test_a_cluster_has_a_limit_of_checks(three) -> None:
    for number in range(choices.CHECKS_MAX):
        HealthCheck.objects.create(name=f"c{number}", kind="smtp")
    errors = errors_of(check_data())
    assert errors == {"__all__": [f"A cluster has at most {choices.CHECKS_MAX} health checks."]}


def test_the_kinds_fields_are_cleaned_and_stored(three) -> None:
    http = services.create_check(
        None, check_data("web", kind="http", host=" Mail.Example.ORG. ", port="8080")
    )
    assert (http.host, http.port, http.path, http.expect_status) == (
        "mail.example.org",
        8080,
        "/",
        200,
    )
    disk = services.create_check(None, check_data("spool", kind="disk", path="/var/spool"))
    assert (disk.path, disk.min_free_percent, disk.port) == ("/var/spool", 10, 0)
    command = services.create_check(
        None, check_data("queue", kind="command", argv=["/usr/local/bin/queue-ok", "500"])
    )
    assert command.argv == ["/usr/local/bin/queue-ok", "500"]


def test_a_new_kind_starts_its_own_fields_afresh(three) -> None:
    check = services.create_check(
        None, check_data("web", kind="http", path="/health", expect_status=204)
    )
    errors = errors_of({"kind": "disk"}, check, partial=True)
    assert errors == {"path": ["A disk check needs a path: give an absolute path, e.g. /var."]}
    check = services.update_check(None, check, {"kind": "disk", "path": "/var"}, partial=True)
    assert (check.kind, check.path, check.expect_status) == ("disk", "/var", 200)


def test_a_put_that_leaves_out_optional_fields_keeps_them(three) -> None:
    check = services.create_check(None, check_data(enabled=False, weight=100))
    check = services.update_check(None, check, check_data(interval_ms=5000))
    assert (check.enabled, check.weight, check.interval_ms) == (False, 100, 5000)


def test_every_change_is_audited_with_its_version(three) -> None:
    alice = make_user("alice", "administrator")
    check = services.create_check(alice, check_data())
    check = services.update_check(alice, check, {"fall": 5}, partial=True)
    services.delete_check(alice, check)
    create, update, delete = AuditEntry.objects.filter(object_type="healthcheck").order_by("id")
    assert [e.action for e in (create, update, delete)] == [
        AuditAction.CREATE,
        AuditAction.UPDATE,
        AuditAction.DELETE,
    ]
    assert {e.actor_name for e in (create, update, delete)} == {"alice"}
    assert {e.object_repr for e in (create, update, delete)} == {"smtp-25"}
    assert create.before is None
    assert create.after is not None
    assert create.after["kind"] == "smtp"
    assert update.changes() == {"fall": (3, 5), "version": (1, 2)}
    assert delete.after is None
    assert not HealthCheck.objects.exists()


def test_an_update_that_changes_nothing_keeps_the_version_and_writes_no_entry(three) -> None:
    check = services.create_check(None, check_data())
    same = services.update_check(None, check, check_data())
    assert same.version == 1
    assert AuditEntry.objects.filter(object_type="healthcheck").count() == 1


def test_support_and_users_without_a_role_cannot_change_checks(three) -> None:
    sam, charlie = make_user("sam", "support"), make_user("charlie")
    for user in (sam, charlie):
        with pytest.raises(PermissionDenied):
            services.create_check(user, check_data())
    check = services.create_check(None, check_data())
    with pytest.raises(PermissionDenied):
        services.update_check(sam, check, {"fall": 1}, partial=True)
    with pytest.raises(PermissionDenied):
        services.delete_check(sam, check)
    check.refresh_from_db()
    assert check.fall == 3


def test_the_nodes_in_scope_are_told_to_apply_after_the_commit(
    three, django_capture_on_commit_callbacks
) -> None:
    with (
        mock.patch.object(celery_app, "send_task") as send,
        django_capture_on_commit_callbacks(execute=True),
    ):
        check = services.create_check(None, check_data(scope="nodes", nodes=["node1"]))
    assert sent_queues(send) == ["carp.node1"]
    with (
        mock.patch.object(celery_app, "send_task") as send,
        django_capture_on_commit_callbacks(execute=True),
    ):
        check = services.update_check(None, check, {"nodes": ["node2"]}, partial=True)
    # node1 stops running it, node2 starts.
    assert sent_queues(send) == ["carp.node1", "carp.node2"]
    with (
        mock.patch.object(celery_app, "send_task") as send,
        django_capture_on_commit_callbacks(execute=True),
    ):
        check = services.update_check(None, check, {"scope": "all"}, partial=True)
    assert sent_queues(send) == ["carp.node1", "carp.node2", "carp.node3"]
    with (
        mock.patch.object(celery_app, "send_task") as send,
        django_capture_on_commit_callbacks(execute=True),
    ):
        services.delete_check(None, check)
    assert sent_queues(send) == ["carp.node1", "carp.node2", "carp.node3"]


def test_a_refused_change_tells_no_node(three, django_capture_on_commit_callbacks) -> None:
    with (
        mock.patch.object(celery_app, "send_task") as send,
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(ValidationError),
    ):
        services.create_check(None, check_data(fall=0))
    assert callbacks == []
    send.assert_not_called()


def test_each_node_runs_the_enabled_checks_of_its_scope(three) -> None:
    services.create_check(None, check_data("everywhere"))
    services.create_check(
        None, check_data("only-2", kind="tcp", port=587, scope="nodes", nodes=["node2", "node3"])
    )
    services.create_check(None, check_data("off", enabled=False))
    node1 = services.desired_node("node1").checks
    node2 = services.desired_node("node2").checks
    assert [spec.name for spec in node1] == ["everywhere"]
    assert [spec.name for spec in node2] == ["everywhere", "only-2"]
    everywhere = node2[0]
    # Blank host: the node's own address, which the node resolves.
    assert (everywhere.host, everywhere.port, everywhere.kind) == ("", 25, "smtp")
    assert node2[1].port == 587
    assert services.desired_node("gone").checks == ()


def test_the_spec_carries_every_field_and_the_version(three) -> None:
    check = services.create_check(
        None,
        check_data(
            "queue",
            kind="command",
            argv=["/usr/local/bin/queue-ok", "500"],
            interval_ms=5000,
            timeout_ms=4000,
            rise=1,
            fall=2,
            weight=100,
            boot_needs_rise=True,
        ),
    )
    check = services.update_check(None, check, {"weight": 120}, partial=True)
    (spec,) = services.desired_node("node1").checks
    assert spec == checks.CheckSpec(
        name="queue",
        kind="command",
        argv=("/usr/local/bin/queue-ok", "500"),
        interval_ms=5000,
        timeout_ms=4000,
        rise=1,
        fall=2,
        weight=120,
        boot_needs_rise=True,
        check_id=check.pk,
        version=2,
    )
    assert checks.CheckSpec.from_data(spec.to_data()) == spec


def test_deleting_a_node_takes_it_out_of_the_checks_chosen_for_it(three) -> None:
    both = services.create_check(None, check_data("both", scope="nodes", nodes=["node2", "node3"]))
    alone = services.create_check(None, check_data("alone", scope="nodes", nodes=["node3"]))
    services.delete_node(None, three[2], force=True)
    both.refresh_from_db()
    alone.refresh_from_db()
    assert [n.name for n in both.nodes.all()] == ["node2"]
    assert (both.version, both.enabled) == (2, True)
    # Left with no node, it is disabled, as an alias is.
    assert (alone.version, alone.enabled) == (2, False)
    entry = AuditEntry.objects.filter(object_type="healthcheck", object_repr="alone").first()
    assert entry is not None
    assert entry.changes()["nodes"] == (["node3"], [])
