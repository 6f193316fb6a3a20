"""The Django admin: writes through the services, support reads only, no passwords."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from cluster.models import AuditEntry, IPAlias, Node
from tests.factories import ALIAS_SECRET, make_alias, make_nodes, make_user
from tests.test_subsecond import FIFTH_ON_NODE1_AND_NODE2

pytestmark = pytest.mark.django_db

MODELS = ["node", "ipalias", "aliasaddress", "aliaspriority", "transition", "auditentry"]


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice() -> Client:
    return client_for(make_user("alice", "administrator"))


@pytest.fixture
def sam() -> Client:
    return client_for(make_user("sam", "support"))


@pytest.fixture
def alias() -> IPAlias:
    make_nodes(3)
    return make_alias(42)


def form(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "vhid": 43,
        "interface": "eth0",
        "advbase": 1,
        "password": "admin-pw",
        "description": "from the admin",
        "addresses": "192.0.2.43/24\n2001:db8::43/64",
        "priority__node1": "backup",
        "priority__node2": "primary",
        "priority__node3": "",
        "enabled": "on",
        "preempt": "on",
    }
    data.update(overrides)
    return data


def test_every_changelist_opens_for_both_roles(alice: Client, sam: Client, alias: IPAlias) -> None:
    for client in (alice, sam):
        for model in MODELS:
            assert client.get(f"/admin/cluster/{model}/").status_code == 200, model


def test_support_can_view_but_not_change(sam: Client, alias: IPAlias) -> None:
    page = sam.get(f"/admin/cluster/ipalias/{alias.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "192.0.2.42/24" in html
    assert (
        "node1 Primary (0: adverts every 1 s, master down after 3 s), "
        "node2 Secondary (26: adverts every 1.102 s, master down after 3.102 s)"
    ) in html
    assert 'name="_save"' not in html
    assert sam.get("/admin/cluster/ipalias/add/").status_code == 403
    assert sam.post("/admin/cluster/ipalias/add/", form()).status_code == 403
    assert sam.post(f"/admin/cluster/ipalias/{alias.pk}/change/", form()).status_code == 403
    assert (
        sam.post(f"/admin/cluster/ipalias/{alias.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    node = Node.objects.get(name="node3")
    assert sam.post(f"/admin/cluster/node/{node.pk}/delete/", {"post": "yes"}).status_code == 403
    assert IPAlias.objects.get().version == 1
    assert Node.objects.count() == 3


def test_the_password_is_never_shown(alice: Client, sam: Client, alias: IPAlias) -> None:
    for client in (alice, sam):
        for url in ["/admin/cluster/ipalias/", f"/admin/cluster/ipalias/{alias.pk}/change/"]:
            html = client.get(url).content.decode()
            assert ALIAS_SECRET not in html
            assert alias.password_encrypted not in html
    change = alice.get(f"/admin/cluster/ipalias/{alias.pk}/change/").content.decode()
    assert 'type="password" name="password"' in change
    assert 'name="password" value' not in change


def test_an_admin_add_goes_through_the_service(alice: Client, alias: IPAlias) -> None:
    response = alice.post("/admin/cluster/ipalias/add/", form())
    assert response.status_code == 302, response.content.decode()
    created = IPAlias.objects.get(vhid=43)
    assert created.get_password() == "admin-pw"
    assert [a.address for a in created.addresses.all()] == ["192.0.2.43/24", "2001:db8::43/64"]
    assert {p.node.name: p.advskew for p in created.priorities.all()} == {"node1": 130, "node2": 0}
    entry = AuditEntry.objects.latest("id")
    assert (entry.actor_name, entry.action, entry.object_id) == ("alice", "create", str(created.pk))


def test_an_admin_change_keeps_a_blank_password_and_is_audited(
    alice: Client, alias: IPAlias
) -> None:
    data = form(vhid=42, password="", addresses="192.0.2.42/24", description="edited")
    response = alice.post(f"/admin/cluster/ipalias/{alias.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()
    alias.refresh_from_db()
    assert (alias.description, alias.version, alias.get_password()) == ("edited", 2, ALIAS_SECRET)
    entry = AuditEntry.objects.latest("id")
    assert (entry.actor_name, entry.action) == ("alice", "update")
    assert entry.after is not None
    assert "password" not in entry.after


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"vhid": 0}, "VHID must be between 1 and 255."),
        ({"vhid": 42}, "VHID 42 is already used on interface eth0 by alias &#x27;alias 42&#x27;."),
        ({"password": ""}, "Password is required."),
        ({"password": "x" * 20}, "Password must be at most 19 bytes (got 20)."),
        ({"addresses": "192.0.2.0/24"}, "192.0.2.0/24 is the network address of its prefix."),
        ({"priority__node1": "primary"}, "Exactly one node must be Primary (found 2)."),
    ],
)
def test_the_admin_shows_the_same_messages(
    alice: Client, alias: IPAlias, overrides: dict[str, Any], message: str
) -> None:
    response = alice.post("/admin/cluster/ipalias/add/", form(**overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert IPAlias.objects.count() == 1


def test_an_admin_delete_goes_through_the_service(alice: Client, alias: IPAlias) -> None:
    response = alice.post(f"/admin/cluster/ipalias/{alias.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not IPAlias.objects.exists()
    entry = AuditEntry.objects.latest("id")
    assert (entry.actor_name, entry.action, entry.object_type) == ("alice", "delete", "ipalias")


def test_the_admin_confirmation_is_the_force_for_a_node_in_use(
    alice: Client, alias: IPAlias
) -> None:
    node = Node.objects.get(name="node2")
    confirm = alice.get(f"/admin/cluster/node/{node.pk}/delete/")
    assert "alias priority" in confirm.content.decode().lower()
    response = alice.post(f"/admin/cluster/node/{node.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Node.objects.filter(name="node2").exists()
    assert AuditEntry.objects.filter(action="delete", object_type="node").count() == 1


def test_an_admin_node_form_uses_the_service_rules(alice: Client, alias: IPAlias) -> None:
    data = {"name": "node4", "address": "198.51.100.11", "interface": "eth0", "ordinal": 2}
    response = alice.post("/admin/cluster/node/add/", data)
    html = response.content.decode()
    assert "198.51.100.11 is the own address of node node1." in html
    assert "Ordinal 2 is already used by node node2." in html
    ok = alice.post("/admin/cluster/node/add/", {**data, "address": "198.51.100.14", "ordinal": 4})
    assert ok.status_code == 302
    assert AuditEntry.objects.latest("id").object_repr == "node4"


def test_nobody_edits_the_audit_log(alice: Client, alias: IPAlias) -> None:
    root = client_for(User.objects.create_superuser("root", "root@example.org", None))
    entry = AuditEntry.objects.first()
    assert entry is not None
    for client in (alice, root):
        page = client.get(f"/admin/cluster/auditentry/{entry.pk}/change/")
        assert page.status_code == 200
        assert 'name="_save"' not in page.content.decode()
        assert client.get("/admin/cluster/auditentry/add/").status_code == 403


@pytest.mark.parametrize(
    ("overrides", "messages"),
    [
        # Django's own words ("This field is required.", "Ensure this value is
        # greater than or equal to 0.") must not replace the service's.
        ({"interface": ""}, ["Interface is required."]),
        ({"advbase": "-1"}, ["Advbase must be between 0 and 255."]),
        ({"vhid": "abc"}, ["VHID must be a whole number."]),
        ({"addresses": ""}, ["At least one address is required."]),
        # Every problem at once, as on the page and in the API.
        (
            {"vhid": "300", "interface": "", "password": "x" * 25, "addresses": ""},
            [
                "VHID must be between 1 and 255.",
                "Interface is required.",
                "Password must be at most 19 bytes (got 25).",
                "At least one address is required.",
            ],
        ),
    ],
)
def test_the_admin_words_blank_and_malformed_fields_like_the_page(
    alice: Client, alias: IPAlias, overrides: dict[str, Any], messages: list[str]
) -> None:
    response = alice.post("/admin/cluster/ipalias/add/", form(**overrides))
    assert response.status_code == 200
    html = response.content.decode()
    for message in messages:
        assert message in html
    assert "This field is required." not in html
    assert "greater than or equal to" not in html
    assert IPAlias.objects.count() == 1


def test_the_admin_node_form_words_its_rules_like_the_page(alice: Client, alias: IPAlias) -> None:
    data = {"name": "node4", "address": "192.0.2.300", "interface": "", "ordinal": "12"}
    html = alice.post("/admin/cluster/node/add/", data).content.decode()
    assert "&#x27;192.0.2.300&#x27; is not a valid IPv4 or IPv6 address." in html
    assert "Interface is required." in html
    assert "Ordinal must be between 1 and 9." in html
    assert "Enter a valid IPv4 or IPv6 address." not in html
    assert Node.objects.count() == 3


def test_the_admin_add_form_marks_what_the_service_requires(alice: Client, alias: IPAlias) -> None:
    add = alice.get("/admin/cluster/ipalias/add/").content.decode()
    for name in ("vhid", "interface", "password", "addresses"):
        assert f'class="required" for="id_{name}"' in add, name
    # Not "leave blank to keep": there is nothing to keep yet.
    assert "Leave blank to keep the current password" not in add
    change = alice.get(f"/admin/cluster/ipalias/{alias.pk}/change/").content.decode()
    assert "Leave blank to keep the current password" in change
    assert 'class="required" for="id_password"' not in change
    blank = alice.post("/admin/cluster/ipalias/add/", form(password="")).content.decode()
    assert "Password is required." in blank
    assert "This field is required." not in blank


def test_an_administrator_who_is_not_a_superuser_manages_support_users_not_a_superuser(
    alice: Client,
) -> None:
    root = User.objects.create_superuser("root", "root@example.org", None)
    index = alice.get("/admin/").content.decode()
    assert 'href="/admin/auth/user/"' in index
    assert 'href="/admin/auth/group/"' not in index  # roles are set on the user
    assert 'href="/admin/knox/authtoken/"' in index
    password = "plum-orbit-lantern-41"
    data = {
        "username": "sue",
        "role": "support",
        "is_active": "on",
        "password": password,
        "password_again": password,
    }
    assert alice.post("/admin/auth/user/add/", data).status_code == 302
    sue = User.objects.get(username="sue")
    assert (sue.groups.get().name, sue.is_staff, sue.is_superuser) == ("support", True, False)
    assert AuditEntry.objects.latest("id").object_repr == "sue"
    assert alice.post(f"/admin/auth/user/{root.pk}/delete/", {"post": "yes"}).status_code == 403
    assert alice.post(f"/admin/auth/user/{root.pk}/change/", data).status_code == 403
    assert User.objects.get(pk=root.pk).username == "root"


def test_users_and_tokens_open_for_both_roles(alice: Client, sam: Client) -> None:
    for client in (alice, sam):
        assert client.get("/admin/auth/user/").status_code == 200
        assert client.get("/admin/knox/authtoken/").status_code == 200
    assert sam.get("/admin/auth/user/add/").status_code == 403


def test_the_admin_adds_a_sub_second_alias_and_shows_each_nodes_timing(
    alice: Client, alias: IPAlias
) -> None:
    response = alice.post("/admin/cluster/ipalias/add/", form(advbase=0))
    assert response.status_code == 302, response.content.decode()
    created = IPAlias.objects.get(vhid=43)
    expected = (
        "node1 Backup (134: adverts every 523.4 ms, master down after 1.57 s), "
        "node2 Primary (4: adverts every 15.6 ms, master down after 46.9 ms)"
    )
    assert expected in alice.get("/admin/cluster/ipalias/").content.decode()
    change = alice.get(f"/admin/cluster/ipalias/{created.pk}/change/").content.decode()
    assert expected in change
    assert "0 is sub-second (OpenBSD)" in change
    rows = alice.get("/admin/cluster/aliaspriority/").content.decode()
    assert "adverts every 15.6 ms, master down after 46.9 ms" in rows


def test_the_admin_refuses_a_fifth_sub_second_alias_on_a_node(
    alice: Client, alias: IPAlias
) -> None:
    for number in range(1, 5):
        make_alias(number, advbase=0)
    response = alice.post("/admin/cluster/ipalias/add/", form(advbase=0))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["advbase"] == [FIFTH_ON_NODE1_AND_NODE2]
    assert IPAlias.objects.count() == 5
