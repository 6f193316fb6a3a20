"""The IP ALIAS screen: the table, add, edit and delete, and every rule's message."""

from __future__ import annotations

import re
from html import unescape

import pytest

from cluster import services
from cluster.models import AliasAddress, AliasPriority, AuditEntry, IPAlias
from tests.factories import ALIAS_SECRET, alias_data
from tests.pages.helpers import ALIAS_URL, alias_post, assert_field_error

ADD_URL = f"{ALIAS_URL}add/"


def snapshot() -> tuple[list[tuple[object, ...]], ...]:
    """Everything a failed request must leave as it was."""
    return (
        list(IPAlias.objects.values_list("vhid", "interface", "advbase", "version", "enabled")),
        list(AliasAddress.objects.values_list("ip", "prefixlen")),
        list(AliasPriority.objects.values_list("node__name", "priority")),
        list(AuditEntry.objects.values_list("id")),
    )


def cell(html: str, alias: IPAlias, column: int) -> list[str]:
    """The words of one data cell of the alias's row (the Edit/Delete cell not
    counted), tags removed."""
    row = re.search(rf'<tr id="alias-{alias.pk}">(.*?)</tr>', html, re.S)
    assert row
    cells = re.findall(r'<td(?! class="row-actions)[^>]*>(.*?)</td>', row.group(1), re.S)
    return unescape(re.sub(r"<[^>]+>", " ", cells[column])).split()


def chip_title(html: str, alias: IPAlias, column: int) -> str:
    """The title of the tier chip in one data cell: the tier in words."""
    row = re.search(rf'<tr id="alias-{alias.pk}">(.*?)</tr>', html, re.S)
    assert row
    cells = re.findall(r'<td(?! class="row-actions)[^>]*>(.*?)</td>', row.group(1), re.S)
    title = re.search(r'class="chip [^"]*" title="([^"]*)"', cells[column])
    assert title, cells[column]
    return unescape(title.group(1))


# --- the table -------------------------------------------------------------


def test_the_table_shows_each_nodes_tier_with_the_derived_advskew(alice_client, alias):
    html = alice_client.get(ALIAS_URL).content.decode()
    # Columns: VHID, interface, addresses (with the description), advbase, enabled,
    # preempt, live state, then node1..node3: a chip of the tier's letter and advskew.
    assert cell(html, alias, 0) == ["1"]
    assert cell(html, alias, 1) == ["eth0"]
    assert cell(html, alias, 2) == ["192.0.2.101/24", "mail", "A"]
    assert cell(html, alias, 7) == ["P", "0"]
    assert cell(html, alias, 8) == ["S", "26"]
    assert cell(html, alias, 9) == ["B", "156"]
    assert chip_title(html, alias, 7).startswith("Primary, advskew 0 on the wire; adverts every")
    assert chip_title(html, alias, 9).startswith("Backup, advskew 156 on the wire;")


def test_active_active_aliases_show_opposite_priorities(alice_client, active_active):
    first, second = active_active
    html = alice_client.get(ALIAS_URL).content.decode()
    assert cell(html, first, 7) == ["P", "0"]
    assert cell(html, first, 8) == ["S", "26"]
    assert cell(html, second, 7) == ["S", "13"]
    assert cell(html, second, 8) == ["P", "0"]
    assert cell(html, second, 9) == ["—"]  # node3 is not a member
    assert chip_title(html, second, 9) == "not a member"


def test_the_live_state_column_says_when_redis_cannot_be_reached(alice_client, alias):
    html = alice_client.get(ALIAS_URL).content.decode()
    assert '<th class="live-col">Live state</th>' in html
    assert f'data-alias-summary="{alias.pk}" data-mismatch="false">live state unavailable<' in html


def test_the_table_shows_flags_and_description(alice_client, alias):
    html = alice_client.get(ALIAS_URL).content.decode()
    assert cell(html, alias, 4) == ["yes"]  # enabled
    assert cell(html, alias, 5) == ["yes"]  # preempt
    # The description sits under the addresses, not in a column of its own.
    assert '<div class="description">mail A</div>' in html


def test_with_nine_nodes_the_row_keeps_its_vhid_and_its_buttons_in_view(alice_client, alias):
    # The table scrolls sideways inside its panel: the VHID is pinned to the
    # left edge and Edit/Delete to the right edge, so neither scrolls away.
    html = alice_client.get(ALIAS_URL).content.decode()
    row = re.search(rf'<tr id="alias-{alias.pk}">(.*?)</tr>', html, re.S)
    assert row
    cells = re.findall(r"<td([^>]*)>", row.group(1))
    assert 'class="num mono pin-start"' in cells[0]
    assert 'class="row-actions pin-end"' in cells[-1]
    assert '<th class="num pin-start">VHID</th>' in html


def test_the_page_needs_a_constant_number_of_queries(alice, alice_client, nodes):
    for vhid in range(1, 4):
        services.create_alias(alice, alias_data(vhid))
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        alice_client.get(ALIAS_URL)
    for vhid in range(4, 12):
        services.create_alias(alice, alias_data(vhid))
    with CaptureQueriesContext(connection) as many:
        alice_client.get(ALIAS_URL)
    assert len(many) == len(few)


# --- add -----------------------------------------------------------------


def test_the_add_form_has_every_field_and_a_priority_select_per_node(alice_client, nodes):
    html = alice_client.get(ADD_URL).content.decode()
    for name in ("vhid", "interface", "advbase", "password", "addresses", "enabled", "preempt"):
        assert f'name="{name}"' in html
    assert 'type="password"' in html
    for node in nodes:
        assert html.count(f'name="priority_{node.pk}"') == 1
    for label in ("Primary", "Secondary", "Backup", "not a member"):
        assert label in html


def test_adding_an_alias_stores_it_through_the_service(alice_client, nodes):
    response = alice_client.post(ADD_URL, alias_post(nodes, tiers=("backup", "primary", "")))
    assert response.status_code == 302
    assert response["Location"] == ALIAS_URL
    alias = IPAlias.objects.get()
    assert (alias.vhid, alias.interface, alias.advbase) == (7, "eth0", 1)
    assert alias.get_password() == "form-secret"
    assert [a.address for a in alias.addresses.all()] == ["192.0.2.107/24", "2001:db8::107/64"]
    assert {p.node.name: p.priority for p in alias.priorities.all()} == {
        "node1": "backup",
        "node2": "primary",
    }
    entry = AuditEntry.objects.get(action="create", object_type="ipalias")
    assert entry.actor_name == "alice"
    page = alice_client.get(ALIAS_URL).content.decode()
    assert "Added VHID 7 on eth0" in page


def test_unchecked_boxes_turn_enabled_and_preempt_off(alice_client, nodes):
    alice_client.post(ADD_URL, alias_post(nodes, enabled=None, preempt=None))
    alias = IPAlias.objects.get()
    assert (alias.enabled, alias.preempt) == (False, False)


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"vhid": "0"}, "vhid", "VHID must be between 1 and 255."),
        ({"vhid": "256"}, "vhid", "VHID must be between 1 and 255."),
        ({"vhid": "seven"}, "vhid", "VHID must be a whole number."),
        ({"vhid": ""}, "vhid", "VHID is required."),
        ({"advbase": "-1"}, "advbase", "Advbase must be between 0 and 255."),
        ({"advbase": "256"}, "advbase", "Advbase must be between 0 and 255."),
        ({"interface": "eth 0"}, "interface", None),
        ({"password": ""}, "password", "Password is required."),
        ({"password": "x" * 20}, "password", "Password must be at most 19 bytes (got 20)."),
        # Ten characters, twenty bytes: the limit counts bytes, as carp(4) does.
        ({"password": "é" * 10}, "password", "Password must be at most 19 bytes (got 20)."),
        ({"addresses": ""}, "addresses", "At least one address is required."),
        (
            {"addresses": "nonsense/24"},
            "addresses",
            "'nonsense/24' is not a valid IPv4 or IPv6 address with prefix.",
        ),
        (
            {"addresses": "192.0.2.107"},
            "addresses",
            "192.0.2.107 needs a prefix length, e.g. 192.0.2.100/24 or 2001:db8::100/64.",
        ),
        (
            {"addresses": "192.0.2.0/24"},
            "addresses",
            "192.0.2.0/24 is the network address of its prefix.",
        ),
        (
            {"addresses": "192.0.2.255/24"},
            "addresses",
            "192.0.2.255/24 is the broadcast address of its prefix.",
        ),
        (
            {"addresses": "198.51.100.12/24"},
            "addresses",
            "198.51.100.12 is the own address of node node2.",
        ),
        (
            {"addresses": "fe80::1%eth0/64"},
            "addresses",
            "fe80::1%eth0/64: an address with a zone (%eth0) cannot be a virtual address.",
        ),
        (
            {"description": "d" * 201},
            "description",
            "Description must be at most 200 characters (got 201).",
        ),
    ],
)
def test_each_rule_is_shown_next_to_its_field(alice_client, nodes, overrides, field, message):
    before = snapshot()
    response = alice_client.post(ADD_URL, alias_post(nodes, **overrides))
    if message is None:  # the rule's own wording, whatever it is
        message = response.context["form"].errors[field][0]
        assert "Interface must be" in message
    assert_field_error(response, field, message)
    assert snapshot() == before


def test_a_vhid_is_unique_per_interface(alice_client, alias, nodes):
    before = snapshot()
    response = alice_client.post(ADD_URL, alias_post(nodes, vhid="1"))
    assert_field_error(response, "vhid", "VHID 1 is already used on interface eth0")
    assert snapshot() == before
    # The same VHID on another interface is another virtual host.
    response = alice_client.post(ADD_URL, alias_post(nodes, vhid="1", interface="eth1"))
    assert response.status_code == 302


def test_an_address_of_another_alias_is_refused(alice_client, alias, nodes):
    before = snapshot()
    response = alice_client.post(ADD_URL, alias_post(nodes, addresses="192.0.2.101/25"))
    assert_field_error(response, "addresses", "192.0.2.101 is already used by alias VHID 1")
    assert snapshot() == before


def test_every_wrong_address_gets_its_own_message(alice_client, nodes):
    response = alice_client.post(
        ADD_URL, alias_post(nodes, addresses="192.0.2.0/24\n192.0.2.50/24\n192.0.2.255/24")
    )
    assert response.context["form"].errors["addresses"] == [
        "192.0.2.0/24 is the network address of its prefix.",
        "192.0.2.255/24 is the broadcast address of its prefix.",
    ]


@pytest.mark.parametrize(
    ("tiers", "found"),
    [(("secondary", "backup", ""), 0), (("primary", "primary", "backup"), 2), (("", "", ""), 0)],
)
def test_exactly_one_primary_is_shown_at_the_priorities(alice_client, nodes, tiers, found):
    before = snapshot()
    response = alice_client.post(ADD_URL, alias_post(nodes, tiers=tiers))
    assert_field_error(response, "priorities", f"Exactly one node must be Primary (found {found}).")
    assert snapshot() == before


def test_a_node_can_be_chosen_only_once(alice_client, nodes):
    """One select per node: the form cannot name a node twice. A forged post
    with the select twice still gives that node a single priority."""
    data = alias_post(nodes)
    data[f"priority_{nodes[1].pk}"] = ["secondary", "backup"]
    response = alice_client.post(ADD_URL, data)
    assert response.status_code == 302
    assert AliasPriority.objects.filter(node=nodes[1]).count() == 1


def test_a_tier_that_does_not_exist_is_refused(alice_client, nodes):
    response = alice_client.post(ADD_URL, alias_post(nodes, tiers=("primary", "boss", "")))
    assert response.context["form"].errors[f"priority_{nodes[1].pk}"]
    assert IPAlias.objects.count() == 0


def test_all_problems_are_reported_at_once(alice_client, nodes):
    response = alice_client.post(
        ADD_URL,
        alias_post(nodes, vhid="0", advbase="-1", password="", addresses="bad/1", tiers=()),
    )
    errors = response.context["form"].errors
    assert set(errors) >= {"vhid", "advbase", "password", "addresses", "priorities"}
    assert b"The change was not saved" in response.content


def test_the_failed_form_keeps_what_was_typed_except_the_password(alice_client, nodes):
    response = alice_client.post(
        ADD_URL, alias_post(nodes, vhid="0", addresses="192.0.2.99/24", password="Typed-Secret")
    )
    html = response.content.decode()
    assert 'value="0"' in html
    assert "192.0.2.99/24" in html
    assert "Typed-Secret" not in html
    # ...and says so next to the emptied password box.
    assert "Type the password again: it is never sent back to the page." in html


def test_no_retype_hint_when_the_password_itself_was_wrong_or_not_given(alice_client, nodes):
    for password in ("x" * 20, ""):
        html = alice_client.post(ADD_URL, alias_post(nodes, vhid="0", password=password))
        assert "Type the password again" not in html.content.decode()


# --- edit ----------------------------------------------------------------


def test_the_edit_form_starts_from_the_alias(alice_client, alias, nodes):
    response = alice_client.get(f"{ALIAS_URL}{alias.pk}/edit/")
    form = response.context["form"]
    assert form.initial["vhid"] == 1
    assert form.initial["addresses"] == "192.0.2.101/24"
    assert form.initial[f"priority_{nodes[0].pk}"] == "primary"
    assert form.initial[f"priority_{nodes[2].pk}"] == "backup"
    assert "Leave blank to keep the current password" in response.content.decode()


def test_editing_with_a_blank_password_keeps_it(alice_client, alias, nodes):
    response = alice_client.post(
        f"{ALIAS_URL}{alias.pk}/edit/",
        alias_post(nodes, vhid="1", addresses="192.0.2.101/24", password="", advbase="3"),
    )
    assert response.status_code == 302
    alias.refresh_from_db()
    assert alias.advbase == 3
    assert alias.get_password() == ALIAS_SECRET
    assert alias.version == 2


def test_editing_with_a_new_password_sets_it(alice_client, alias, nodes):
    alice_client.post(
        f"{ALIAS_URL}{alias.pk}/edit/", alias_post(nodes, vhid="1", password="Changed-1")
    )
    alias.refresh_from_db()
    assert alias.get_password() == "Changed-1"


def test_a_failed_edit_changes_nothing(alice_client, alias, nodes):
    before = snapshot()
    response = alice_client.post(
        f"{ALIAS_URL}{alias.pk}/edit/",
        alias_post(nodes, vhid="2", addresses="192.0.2.0/24", tiers=("backup", "primary", "")),
    )
    assert_field_error(response, "addresses", "192.0.2.0/24 is the network address of its prefix.")
    assert snapshot() == before
    assert IPAlias.objects.get().get_password() == ALIAS_SECRET


def test_editing_a_missing_alias_is_404(alice_client, nodes):
    assert alice_client.get(f"{ALIAS_URL}999/edit/").status_code == 404


# --- delete --------------------------------------------------------------


def test_delete_asks_first_and_a_get_deletes_nothing(alice_client, alias):
    response = alice_client.get(f"{ALIAS_URL}{alias.pk}/delete/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Delete the IP alias VHID 1 on eth0 (mail A)?" in html
    # The heading names the action; the question is asked once, in the panel.
    assert "<h1>Delete IP alias</h1>" in html
    assert html.count("Delete the IP alias VHID 1 on eth0 (mail A)") == 1
    assert 'method="post"' in html
    assert IPAlias.objects.count() == 1


def test_with_javascript_the_delete_link_asks_in_a_dialog(alice_client, alias):
    html = alice_client.get(ALIAS_URL).content.decode()
    assert (
        f'href="{ALIAS_URL}{alias.pk}/delete/" '
        'data-confirm-post="Delete the IP alias VHID 1 on eth0?'
    ) in html


def test_delete_happens_on_post(alice_client, alias):
    response = alice_client.post(f"{ALIAS_URL}{alias.pk}/delete/")
    assert response.status_code == 302
    assert IPAlias.objects.count() == 0
    assert AuditEntry.objects.filter(action="delete", object_type="ipalias").count() == 1
