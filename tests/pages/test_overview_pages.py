"""The cluster matrix and the audit log."""

from __future__ import annotations

import re
from html import unescape

from cluster import services
from cluster.models import AuditEntry
from tests.pages.helpers import ALIAS_URL


def test_the_cluster_page_shows_the_matrix_and_the_expected_owner(
    alice, alice_client, nodes, active_active
):
    html = alice_client.get("/system/cluster/").content.decode()
    rows = re.findall(r'<tr[^>]*>\s*<td[^>]*><span class="mono[^"]*">(VHID \d).*?</tr>', html, re.S)
    assert rows == ["VHID 1", "VHID 2"]
    text = unescape(re.sub(r"<[^>]+>", " ", html))
    # The owners first, then per node its tier's letter and derived advskew.
    assert re.search(r"VHID 1 · eth0.*?node1\s+unknown\s+P\s0\s+unknown\s+S\s26", text, re.S)
    # node2 in maintenance: VHID 2 should move to its Secondary, node1.
    services.update_node(alice, nodes[1], {**services.node_snapshot(nodes[1]), "maintenance": True})
    html = alice_client.get("/system/cluster/").content.decode()
    vhid2 = html[html.index("VHID 2 · eth0") :]
    assert "<strong>node1</strong>" in vhid2.split("</tr>")[0]


def test_the_audit_log_shows_who_what_when_before_and_after(alice_client, alias, nodes):
    alice_client.post(
        f"{ALIAS_URL}{alias.pk}/edit/",
        {
            "vhid": "1",
            "interface": "eth0",
            "advbase": "5",
            "addresses": "192.0.2.101/24",
            "enabled": "on",
            "preempt": "on",
            "description": "mail A",
            f"priority_{nodes[0].pk}": "primary",
        },
    )
    html = alice_client.get("/system/audit/").content.decode()
    assert "alice" in html
    assert "Updated" in html
    assert "Created" in html
    text = re.sub(r"<[^>]+>", " ", html)
    assert re.search(r"advbase\s+1\s+→\s+5", text)


def test_the_audit_log_shows_the_advskews_a_new_ordinal_changed(alice, alice_client, alias, nodes):
    # The alias fixture makes node2 Secondary (skew 26) and node3 Backup (skew 156).
    services.update_node(alice, nodes[1], {"ordinal": 5}, partial=True)
    html = alice_client.get("/system/audit/").content.decode()
    text = re.sub(r"<[^>]+>", " ", html)
    assert re.search(r"ordinal\s+2\s+→\s+5", text)
    assert re.search(r"node2 secondary \(skew 26\).*?→.*?node2 secondary \(skew 65\)", text, re.S)
    assert re.search(r"version\s+1\s+→\s+2", text)


def test_the_audit_log_is_paginated(alice, alice_client, nodes):
    for n in range(60):
        AuditEntry.objects.create(
            actor=alice,
            actor_name="alice",
            action="update",
            object_type="node",
            object_id="1",
            object_repr=f"entry {n}",
            before={"n": n},
            after={"n": n + 1},
        )
    first = alice_client.get("/system/audit/").content.decode()
    assert "entry 59" in first
    assert "entry 0<" not in first
    assert "Page 1 of 2" in first
    second = alice_client.get("/system/audit/?page=2").content.decode()
    assert "entry 0<" in second


def test_a_disabled_alias_has_no_expected_owner(alice, alice_client, alias):
    services.update_alias(alice, alias, {"enabled": False}, partial=True)
    html = alice_client.get("/system/cluster/").content.decode()
    row = html[html.index("VHID 1 · eth0") :].split("</tr>")[0]
    assert "disabled" in row
    assert '<span class="muted">none</span>' in row


def test_pages_use_only_local_assets(alice_client, alias):
    from django.contrib.staticfiles import finders

    for url in ("/login/", ALIAS_URL, "/system/cluster/"):
        html = alice_client.get(url).content.decode()
        assert not re.search(r'(src|href)="(https?:)?//', html), url
        for asset in re.findall(r'(?:src|href)="/static/([^"]+)"', html):
            assert finders.find(asset), asset


def test_the_audit_log_says_which_time_zone_its_times_are_in(alice_client, alias):
    html = alice_client.get("/system/audit/").content.decode()
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC<", html)
