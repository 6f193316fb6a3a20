"""The services: one transaction, every rule, an audit entry, an apply after commit."""

from __future__ import annotations

from unittest import mock

import pytest
from django.core.exceptions import ValidationError

from appliance.celery import app as celery_app
from cluster import services
from cluster.choices import PASSWORD_CHANGED_MARK, AuditAction
from cluster.models import AliasAddress, AliasPriority, AuditEntry, IPAlias, Node
from tests.factories import ALIAS_SECRET, alias_data, make_alias, make_nodes, make_user

pytestmark = pytest.mark.django_db


def errors_of(exc: pytest.ExceptionInfo[ValidationError]) -> dict[str, list[str]]:
    return exc.value.message_dict


def test_create_alias_stores_everything_and_encrypts_the_password() -> None:
    make_nodes(2)
    alias = make_alias(42)
    assert (alias.vhid, alias.interface, alias.version) == (42, "eth0", 1)
    assert [a.address for a in alias.addresses.all()] == ["192.0.2.42/24"]
    assert ALIAS_SECRET not in alias.password_encrypted
    assert alias.get_password() == ALIAS_SECRET
    skews = {p.node.name: p.advskew for p in alias.priorities.all()}
    assert skews == {"node1": 0, "node2": 26}


def test_a_failed_create_changes_nothing() -> None:
    make_nodes(2)
    with pytest.raises(ValidationError):
        services.create_alias(None, alias_data(42, addresses=["192.0.2.0/24"]))
    assert IPAlias.objects.count() == 0
    assert AliasAddress.objects.count() == 0
    assert AliasPriority.objects.count() == 0


def test_every_change_is_audited_with_who_before_and_after() -> None:
    make_nodes(2)
    alice = make_user("alice", "administrator")
    alias = services.create_alias(alice, alias_data(42))
    alias = services.update_alias(alice, alias, {"description": "mail"}, partial=True)
    services.delete_alias(alice, alias)
    create, update, delete = AuditEntry.objects.filter(object_type="ipalias").order_by("id")
    assert [e.action for e in (create, update, delete)] == [
        AuditAction.CREATE,
        AuditAction.UPDATE,
        AuditAction.DELETE,
    ]
    assert {e.actor_name for e in (create, update, delete)} == {"alice"}
    assert create.before is None
    assert create.after is not None
    assert create.after["password"] == PASSWORD_CHANGED_MARK
    assert update.changes() == {"description": ("alias 42", "mail"), "version": (1, 2)}
    assert delete.after is None
    assert delete.before is not None
    assert delete.before["addresses"] == ["192.0.2.42/24"]


def test_a_change_without_a_user_is_audited_as_system() -> None:
    make_nodes(1)
    assert AuditEntry.objects.get().actor_name == "system"


def test_each_affected_node_is_told_to_apply_after_the_commit(
    django_capture_on_commit_callbacks,
) -> None:
    make_nodes(3)
    alias = make_alias(42)  # node1 and node2
    with (
        mock.patch.object(celery_app, "send_task") as send,
        django_capture_on_commit_callbacks(execute=True),
    ):
        services.update_alias(
            None,
            alias,
            {"priorities": [{"node": "node3", "priority": "primary"}]},
            partial=True,
        )
    sent = sorted(call.kwargs["queue"] for call in send.call_args_list)
    # node1 and node2 drop the alias, node3 takes it.
    assert sent == ["carp.node1", "carp.node2", "carp.node3"]
    assert all(call.kwargs["expires"] > 0 for call in send.call_args_list)


def test_nothing_is_sent_when_the_change_fails(
    django_capture_on_commit_callbacks,
) -> None:
    make_nodes(2)
    with (
        mock.patch.object(celery_app, "send_task") as send,
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(ValidationError),
    ):
        services.create_alias(None, alias_data(42, vhid=0))
    assert callbacks == []
    send.assert_not_called()


def test_a_broker_that_is_down_does_not_fail_the_change(
    django_capture_on_commit_callbacks,
    caplog: pytest.LogCaptureFixture,
) -> None:
    make_nodes(2)
    with (
        mock.patch.object(celery_app, "send_task", side_effect=ConnectionError("down")),
        django_capture_on_commit_callbacks(execute=True),
    ):
        alias = make_alias(42)
    assert IPAlias.objects.filter(pk=alias.pk).exists()
    assert "could not send the apply task for node node1" in caplog.text


def test_dispatch_can_be_switched_off(
    settings,
    django_capture_on_commit_callbacks,
) -> None:
    settings.CLUSTER_DISPATCH_APPLY = False
    make_nodes(2)
    with (
        mock.patch.object(celery_app, "send_task") as send,
        django_capture_on_commit_callbacks(execute=True),
    ):
        make_alias(42)
    send.assert_not_called()


def test_a_forced_node_deletion_passes_primary_to_the_lowest_advskew() -> None:
    make_nodes(4)
    alias = make_alias(
        42,
        priorities=[
            {"node": "node1", "priority": "primary"},
            {"node": "node2", "priority": "backup"},
            {"node": "node4", "priority": "secondary"},
            {"node": "node3", "priority": "secondary"},
        ],
    )
    services.delete_node(None, Node.objects.get(name="node1"), force=True)
    tiers = {p.node.name: p.priority for p in AliasPriority.objects.filter(alias=alias)}
    assert tiers == {"node2": "backup", "node3": "primary", "node4": "secondary"}


def test_a_forced_node_deletion_passes_primary_to_a_member_not_in_maintenance() -> None:
    make_nodes(4)
    alias = make_alias(
        42,
        priorities=[
            {"node": "node1", "priority": "primary"},
            {"node": "node2", "priority": "secondary"},
            {"node": "node3", "priority": "secondary"},
            {"node": "node4", "priority": "backup"},
        ],
    )
    services.update_node(None, Node.objects.get(name="node2"), {"maintenance": True}, partial=True)
    services.delete_node(None, Node.objects.get(name="node1"), force=True)
    tiers = {p.node.name: p.priority for p in AliasPriority.objects.filter(alias=alias)}
    assert tiers == {"node2": "secondary", "node3": "primary", "node4": "backup"}


def test_with_every_remaining_member_in_maintenance_primary_goes_to_the_lowest_advskew() -> None:
    make_nodes(3)
    alias = make_alias(
        42,
        priorities=[
            {"node": "node1", "priority": "primary"},
            {"node": "node2", "priority": "backup"},
            {"node": "node3", "priority": "secondary"},
        ],
    )
    for name in ("node2", "node3"):
        services.update_node(None, Node.objects.get(name=name), {"maintenance": True}, partial=True)
    services.delete_node(None, Node.objects.get(name="node1"), force=True)
    tiers = {p.node.name: p.priority for p in AliasPriority.objects.filter(alias=alias)}
    assert tiers == {"node2": "backup", "node3": "primary"}


def test_a_new_ordinal_writes_an_audit_entry_for_each_alias_whose_advskew_it_changes() -> None:
    make_nodes(3)
    alice = make_user("alice", "administrator")
    secondary = make_alias(42)  # node1 primary, node2 secondary
    backup = make_alias(
        43,
        priorities=[
            {"node": "node3", "priority": "primary"},
            {"node": "node2", "priority": "backup"},
        ],
    )
    make_alias(44, priorities=[{"node": "node1", "priority": "primary"}])  # without node2
    first = AuditEntry.objects.latest("id").pk
    services.update_node(alice, Node.objects.get(name="node2"), {"ordinal": 7}, partial=True)
    node_entry, *alias_entries = AuditEntry.objects.filter(pk__gt=first).order_by("id")
    assert (node_entry.object_type, node_entry.changes()) == ("node", {"ordinal": (2, 7)})
    assert [(e.object_id, e.action, e.actor_name) for e in alias_entries] == [
        (str(secondary.pk), AuditAction.UPDATE, "alice"),
        (str(backup.pk), AuditAction.UPDATE, "alice"),
    ]
    # (node, advskew) before -> after, each in node ordinal order.
    skews = [
        tuple([(p["node"], p["advskew"]) for p in side] for side in e.changes()["priorities"])
        for e in alias_entries
    ]
    assert skews == [
        ([("node1", 0), ("node2", 26)], [("node1", 0), ("node2", 91)]),
        ([("node2", 143), ("node3", 0)], [("node3", 0), ("node2", 208)]),
    ]
    assert [e.changes()["version"] for e in alias_entries] == [(1, 2), (1, 2)]
    # Another change of the node leaves its aliases' advskews, and their audit, alone.
    services.update_node(alice, Node.objects.get(name="node2"), {"name": "beta"}, partial=True)
    assert AuditEntry.objects.latest("id").object_type == "node"


def test_alias_form_data_round_trips_without_the_password() -> None:
    make_nodes(2)
    alias = make_alias(42)
    data = services.alias_form_data(alias)
    assert "password" not in data
    updated = services.update_alias(None, alias, data)
    assert updated.get_password() == ALIAS_SECRET
    assert services.alias_form_data(updated) == data


def test_services_accept_form_style_strings() -> None:
    make_nodes(2)
    alias = services.create_alias(
        None,
        alias_data(
            42, vhid="42", advbase="3", enabled="on", addresses=["192.0.2.5/24", "192.0.2.6/24"]
        ),
    )
    assert (alias.vhid, alias.advbase, alias.enabled) == (42, 3, True)
    assert [a.address for a in alias.addresses.all()] == ["192.0.2.5/24", "192.0.2.6/24"]


def test_a_write_that_loses_a_race_is_reported_not_crashed() -> None:
    # Both requests passed validation; the database's constraint stops the second.
    make_nodes(2)
    make_alias(42)
    real = services.validate_alias

    def blind(data, alias=None, partial=False):
        change = real({**data, "vhid": 43}, alias, partial)
        change.vhid = 42  # what a concurrent request committed meanwhile
        return change

    with (
        mock.patch("cluster.services.validate_alias", side_effect=blind),
        pytest.raises(ValidationError) as exc,
    ):
        services.create_alias(None, alias_data(42, addresses=["192.0.2.99/24"]))
    assert errors_of(exc) == {"__all__": ["Another change got there first; please try again."]}
    assert IPAlias.objects.count() == 1


def test_a_node_is_told_its_enabled_virtual_hosts_with_their_secrets() -> None:
    make_nodes(2)
    alias = make_alias(42, addresses=["192.0.2.42/24", "2001:db8::42/64"])
    make_alias(43, enabled=False)
    assert services.desired_node("node2") == services.DesiredNode(
        node="node2",
        address=Node.objects.get(name="node2").address,
        maintenance=False,
        vhosts=(
            services.DesiredVirtualHost(
                alias_id=alias.pk,
                version=1,
                vhid=42,
                interface="eth0",
                advbase=1,
                advskew=26,
                preempt=True,
                addresses=("192.0.2.42/24", "2001:db8::42/64"),
                password=ALIAS_SECRET,
                peers=(Node.objects.get(name="node1").address,),
            ),
        ),
    )
    assert services.desired_node("node9") == services.DesiredNode("node9", None, False)


def test_an_alias_whose_password_cannot_be_decrypted_is_left_out_with_its_cause(
    settings,
) -> None:
    make_nodes(2)
    make_alias(42)
    make_alias(43)
    # Alias 42 was saved under another CLUSTER_SECRET_KEY: this key cannot read it.
    from cluster import crypto

    IPAlias.objects.filter(vhid=42).update(
        password_encrypted=crypto._fernet_for("another key of at least 32 characters!")
        .encrypt(b"s3cret")
        .decode()
    )
    desired = services.desired_node("node1")
    assert [v.vhid for v in desired.vhosts] == [43]
    assert [(a.vhid, a.cause) for a in desired.left_out] == [(42, services.UNDECRYPTABLE_CAUSE)]


def test_transition_reasons_are_the_engines() -> None:
    from cluster.carp.types import Reason
    from cluster.choices import TransitionReason

    assert set(TransitionReason.values) == {r.value for r in Reason}


def test_transition_states_are_the_engines() -> None:
    from cluster.carp.types import State
    from cluster.choices import CarpState

    assert set(CarpState.values) == {s.value for s in State}


def test_services_refuse_shapes_they_cannot_read() -> None:
    make_nodes(2)
    with pytest.raises(ValidationError) as exc:
        services.create_alias(None, alias_data(42, addresses=42, priorities="node1"))
    assert errors_of(exc) == {
        "addresses": ["Addresses must be a list of addresses with prefix."],
        "priorities": ['Priorities must be a list of {"node", "priority"} items.'],
    }


def test_an_update_that_changes_nothing_writes_nothing() -> None:
    make_nodes(2)
    alias = make_alias(42)
    audits = AuditEntry.objects.count()
    with mock.patch("cluster.services._apply_on_commit") as apply:
        # The edit form posted back as it was, the same password, an empty PATCH.
        services.update_alias(None, alias, services.alias_form_data(alias))
        services.update_alias(None, alias, {"password": ALIAS_SECRET}, partial=True)
        services.update_alias(None, alias, {"password": ""}, partial=True)
        node = Node.objects.get(name="node1")
        services.update_node(None, node, services.node_snapshot(node))
    alias.refresh_from_db()
    assert alias.version == 1
    assert AuditEntry.objects.count() == audits
    apply.assert_not_called()
    # A real change still counts, and a new password alone is a change.
    assert services.update_alias(None, alias, {"password": "new"}, partial=True).version == 2
    entry = AuditEntry.objects.latest("id")
    assert entry.changes() == {"password": (None, PASSWORD_CHANGED_MARK), "version": (1, 2)}
