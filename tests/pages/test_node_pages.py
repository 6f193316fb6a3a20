"""The cluster nodes page: list, add, edit, and delete with confirmation."""

from __future__ import annotations

import pytest

from cluster.models import AliasPriority, AuditEntry, IPAlias, Node
from tests.factories import make_node
from tests.pages.helpers import NODES_URL, assert_field_error, assert_form_error, node_post

ADD_URL = f"{NODES_URL}add/"


def test_the_list_shows_each_node(alice_client, alias, nodes):
    html = alice_client.get(NODES_URL).content.decode()
    for node in nodes:
        assert f'<tr id="node-{node.pk}">' in html
        assert node.address in html
    assert "3 of 9 nodes" in html


def test_delete_looks_the_same_on_both_lists(alice_client, alias, nodes):
    # The IP ALIAS list shows Delete in red; the node list did not.
    node_html = alice_client.get(NODES_URL).content.decode()
    alias_html = alice_client.get("/system/advanced/ip-alias/").content.decode()
    delete = 'class="btn btn-plain btn-small btn-quiet-danger"'
    assert f'{delete} href="{NODES_URL}{nodes[0].pk}/delete/"' in node_html
    assert delete in alias_html


def test_the_add_form_offers_the_next_free_ordinal(alice_client, nodes):
    response = alice_client.get(ADD_URL)
    assert response.context["form"].initial["ordinal"] == 4


def test_adding_a_node(alice_client, nodes):
    response = alice_client.post(ADD_URL, node_post())
    assert response.status_code == 302
    node = Node.objects.get(name="node4")
    assert (node.address, node.interface, node.ordinal) == ("198.51.100.14", "eth0", 4)
    assert AuditEntry.objects.filter(object_type="node", action="create").count() == 4


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"name": ""}, "name", "Name is required."),
        ({"name": "Node 4"}, "name", "Node name must be 1 to 32 lowercase letters"),
        ({"name": "node1"}, "name", "A node named node1 already exists."),
        ({"address": "192.0.2.300"}, "address", "'192.0.2.300' is not a valid IPv4 or IPv6"),
        (
            {"address": "198.51.100.11"},
            "address",
            "198.51.100.11 is the own address of node node1.",
        ),
        ({"address": "192.0.2.101"}, "address", "192.0.2.101 is already used by alias VHID 1"),
        (
            {"address": "fe80::14%eth0"},
            "address",
            "fe80::14%eth0: an address with a zone (%eth0) cannot be a node's own address.",
        ),
        ({"ordinal": "0"}, "ordinal", "Ordinal must be between 1 and 9."),
        ({"ordinal": "10"}, "ordinal", "Ordinal must be between 1 and 9."),
        ({"ordinal": "2"}, "ordinal", "Ordinal 2 is already used by node node2."),
        ({"interface": ""}, "interface", "Interface is required."),
    ],
)
def test_each_rule_is_shown_next_to_its_field(alice_client, alias, overrides, field, message):
    response = alice_client.post(ADD_URL, node_post(**overrides))
    assert_field_error(response, field, message)
    assert Node.objects.count() == 3


def test_a_cluster_has_at_most_nine_nodes(alice_client, nodes):
    for ordinal in range(4, 10):
        make_node(ordinal)
    response = alice_client.post(ADD_URL, node_post(name="node10", address="198.51.100.20"))
    assert_form_error(response, "A cluster has at most nine nodes.")
    assert Node.objects.count() == 9


def test_editing_a_node(alice_client, nodes):
    node = nodes[2]
    response = alice_client.get(f"{NODES_URL}{node.pk}/edit/")
    assert response.context["form"].initial["address"] == "198.51.100.13"
    response = alice_client.post(
        f"{NODES_URL}{node.pk}/edit/", node_post(name="node3", address="198.51.100.33", ordinal="3")
    )
    assert response.status_code == 302
    node.refresh_from_db()
    assert node.address == "198.51.100.33"


def test_a_failed_edit_changes_nothing(alice_client, nodes):
    node = nodes[2]
    response = alice_client.post(
        f"{NODES_URL}{node.pk}/edit/", node_post(name="renamed", ordinal="1")
    )
    assert_field_error(response, "ordinal", "Ordinal 1 is already used by node node1.")
    node.refresh_from_db()
    assert node.name == "node3"


def test_deleting_an_unused_node_asks_then_deletes(alice_client, nodes):
    url = f"{NODES_URL}{nodes[2].pk}/delete/"
    response = alice_client.get(url)
    assert b"Delete the node node3?" in response.content
    assert b'name="force"' not in response.content
    assert alice_client.post(url).status_code == 302
    assert not Node.objects.filter(name="node3").exists()


def test_deleting_a_used_node_needs_explicit_confirmation(alice_client, alias, nodes):
    url = f"{NODES_URL}{nodes[2].pk}/delete/"
    page = alice_client.get(url).content.decode()
    assert "It is a member of these IP aliases" in page
    assert 'name="force"' in page
    audit_before = AuditEntry.objects.count()
    response = alice_client.post(url)
    assert response.status_code == 200
    assert "Node node3 is used by 1 alias" in response.content.decode()
    assert Node.objects.filter(name="node3").exists()
    assert AliasPriority.objects.filter(node=nodes[2]).exists()
    assert AuditEntry.objects.count() == audit_before
    response = alice_client.post(url, {"force": "1"})
    assert response.status_code == 302
    assert not Node.objects.filter(name="node3").exists()
    assert IPAlias.objects.get().priorities.count() == 2


def test_a_full_cluster_offers_no_add_button(alice_client, nodes):
    assert 'href="/system/cluster/nodes/add/"' in alice_client.get(NODES_URL).content.decode()
    for ordinal in range(4, 10):
        make_node(ordinal)
    html = alice_client.get(NODES_URL).content.decode()
    assert "9 of 9 nodes" in html
    assert 'href="/system/cluster/nodes/add/"' not in html
    assert "The cluster is full: delete a node to add another." in html


def test_the_delete_confirmation_states_the_services_rule_for_the_new_primary(
    alice_client, alias, nodes
):
    page = alice_client.get(f"{NODES_URL}{nodes[0].pk}/delete/").content.decode()
    assert (
        "Where it was Primary, the remaining member with the lowest advskew that is not in "
        "maintenance becomes Primary (the lowest advskew of all when every remaining member "
        "is in maintenance)"
    ) in page
