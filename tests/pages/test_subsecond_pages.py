"""Sub-second timing (advbase 0) on the IP ALIAS screen: the form takes it,
explains its cost, shows each node's advert interval and master-down time,
and words the stability rule as the API and the admin do."""

from __future__ import annotations

import re

from django.test import Client
from django.utils.html import escape

from cluster.models import IPAlias, Node
from tests.factories import make_alias
from tests.pages.helpers import ALIAS_URL, alias_post, assert_field_error
from tests.pages.test_alias_pages import cell
from tests.test_subsecond import FIFTH_ON_NODE1_AND_NODE2

ADD_URL = f"{ALIAS_URL}add/"


def timing_cells(html: str, node: str) -> list[str]:
    """The advskew, advert interval and master-down cells of ``node``'s row in the form."""
    row = re.search(rf'<tr[^>]*data-node="{node}">(.*?)</tr>', html, re.S)
    assert row, f"no row for {node}"
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    return cells[3:]


def test_the_page_adds_a_sub_second_alias(alice_client: Client, nodes: list[Node]) -> None:
    response = alice_client.post(ADD_URL, alias_post(nodes, advbase="0"))
    assert response.status_code == 302, response.context["form"].errors
    alias = IPAlias.objects.get()
    assert alias.advbase == 0
    assert sorted(p.advskew for p in alias.priorities.all()) == [4, 30, 160]


def test_the_list_shows_sub_second_and_each_nodes_timing_in_the_badge(
    alice_client: Client, nodes: list[Node]
) -> None:
    alias = make_alias(42, advbase=0)
    html = alice_client.get(ALIAS_URL).content.decode()
    assert cell(html, alias, 3) == ["0", "s", "sub-second"]  # "0&thinsp;s"
    assert cell(html, alias, 7) == ["P", "4"]
    assert "Primary, advskew 4 on the wire; adverts every 15.6 ms, master down after 46.9 ms" in (
        html
    )
    assert "advskew 30 on the wire; adverts every 117.2 ms, master down after 351.6 ms" in html


def test_the_edit_form_shows_each_nodes_advert_interval_and_master_down_time(
    alice_client: Client, nodes: list[Node]
) -> None:
    alias = make_alias(42, advbase=0)
    html = alice_client.get(f"{ALIAS_URL}{alias.pk}/edit/").content.decode()
    assert timing_cells(html, "node1") == ["4", "15.6 ms", "46.9 ms"]
    assert timing_cells(html, "node2") == ["30", "117.2 ms", "351.6 ms"]
    assert timing_cells(html, "node3") == ["—", "—", "—"]  # not a member


def test_a_refused_form_shows_the_timing_of_what_was_posted(
    alice_client: Client, nodes: list[Node]
) -> None:
    # The password is missing: the page comes back with the posted advbase and tiers.
    response = alice_client.post(ADD_URL, alias_post(nodes, advbase="0", password=""))
    html = response.content.decode()
    assert timing_cells(html, "node3") == ["160", "625.0 ms", "1.875 s"]


def test_the_form_explains_what_sub_second_costs(alice_client: Client, nodes: list[Node]) -> None:
    html = alice_client.get(ADD_URL).content.decode()
    assert "0 is sub-second (OpenBSD)" in html
    assert "about 0.5 ms of CPU" in html
    assert "at most 4 enabled sub-second aliases" in html
    assert "a 2-core node under load needs margin" in html


def test_the_page_refuses_a_fifth_sub_second_alias_on_a_node(
    alice_client: Client, nodes: list[Node]
) -> None:
    for number in range(1, 5):
        make_alias(number, advbase=0)
    response = alice_client.post(ADD_URL, alias_post(nodes, advbase="0"))
    assert_field_error(response, "advbase", FIFTH_ON_NODE1_AND_NODE2)
    assert escape(FIFTH_ON_NODE1_AND_NODE2) in response.content.decode()
    assert IPAlias.objects.count() == 4
