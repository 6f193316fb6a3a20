"""The console at nine nodes and twelve aliases in headless Chromium, at 1280 px.

The console runs under uvicorn with the live state the engines would write
(tests/showcase.py: a node in maintenance, one demoted by two sources, one
killed, an alias whose MASTER is not its expected owner). What is measured is
what an administrator sees: the boxes the browser laid out.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from cluster import statekeys
from cluster.carp.types import State
from tests.showcase import ALIASES, NODES, Showcase, chromium

WIDTH = 1280


@pytest.fixture(scope="module")
def show(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Showcase]:
    with Showcase(tmp_path_factory.mktemp("nine")) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as running:
        yield running


@pytest.fixture
def page(show: Showcase, browser: Browser) -> Iterator[Page]:
    opened = browser.new_page(viewport={"width": WIDTH, "height": 900})
    try:
        show.log_in(opened)
        yield opened
    finally:
        opened.close()


def open_status(show: Showcase, page: Page) -> None:
    page.goto(show.url + "/system/cluster/")
    expect(page.locator("#live-indicator")).to_have_attribute("data-live", "connected")


def box(locator: Any) -> dict[str, float]:
    found = locator.bounding_box()
    assert found is not None, f"{locator} is not laid out"
    return dict(found)


def assert_in_view(locator: Any, what: str) -> None:
    """The element lies inside the viewport's width (the page is not scrolled)."""
    found = box(locator)
    assert found["x"] >= 0, (what, found)
    assert found["x"] + found["width"] <= WIDTH, (what, found)


def no_sideways_scroll(page: Page, table: str) -> None:
    widths = page.evaluate(
        """table => {
            const wrap = document.querySelector(table).closest('.table-wrap');
            return [document.documentElement.scrollWidth, window.innerWidth,
                    wrap.scrollWidth, wrap.clientWidth];
        }""",
        table,
    )
    page_width, viewport, wrap_width, wrap_client = widths
    assert page_width <= viewport, widths
    assert wrap_width <= wrap_client, widths


def test_every_vips_owners_alert_and_node_states_are_in_view_at_1280_px(
    show: Showcase, page: Page
) -> None:
    open_status(show, page)
    rows = page.locator("#cluster-matrix tbody tr[data-alias-id]")
    expect(rows).to_have_count(len(ALIASES))
    expect(page.locator("#cluster-matrix th.node-head")).to_have_count(len(NODES))
    no_sideways_scroll(page, "#cluster-matrix")
    for index in range(len(ALIASES)):
        row = rows.nth(index)
        vip = row.get_attribute("data-vhid")
        for role in ("expected-owner", "actual-owner", "alert"):
            assert_in_view(row.locator(f'[data-role="{role}"]'), f"VHID {vip} {role}")
        cells = row.locator("td.cell")
        assert cells.count() == len(NODES)
        for n in range(len(NODES)):
            assert_in_view(cells.nth(n), f"VHID {vip} {NODES[n]}")
    # The owner columns come before the nodes'.
    owner = box(rows.first.locator('[data-role="actual-owner"]'))
    first_node = box(rows.first.locator("td.cell").first)
    assert owner["x"] < first_node["x"]
    # VHID 11 runs without preemption: its Secondary kept it; the row says so.
    webmail = page.locator('#cluster-matrix tr[data-vhid="11"]')
    expect(webmail.locator('[data-role="expected-owner"]')).to_have_text("node2")
    expect(webmail.locator('[data-role="actual-owner"]')).to_have_text("node7")
    expect(webmail.locator('[data-role="alert"]')).to_have_text("not the expected owner")


def test_node_heads_show_maintenance_demotion_sources_and_non_members(
    show: Showcase, page: Page
) -> None:
    open_status(show, page)
    node4 = page.locator('#cluster-matrix th.node-head[data-node="node4"]')
    expect(node4.locator("[data-node-maintenance]")).to_be_visible()
    expect(node4.locator("[data-node-maintenance]")).to_have_text("maintenance")
    node6 = page.locator('#cluster-matrix th.node-head[data-node="node6"]')
    expect(node6.locator("[data-node-maintenance]")).to_be_hidden()
    demotion = node6.locator("[data-node-demotion]")
    expect(demotion).to_be_visible()
    expect(demotion.locator("span")).to_have_text(
        ["demoted 290", "link eth1 down", "health check smtp failing"]
    )
    for name in ("node4", "node6"):
        assert_in_view(page.locator(f'th.node-head[data-node="{name}"]'), name)
    # VHID 1 lists node1..node4: node5 is not a member, and says so.
    vhid1 = page.locator('#cluster-matrix tr[data-vhid="1"]')
    expect(vhid1.locator('td.cell[data-node="node5"] .state')).to_have_text("not a member")
    expect(vhid1.locator('td.cell[data-node="node4"] .state')).to_have_text("BACKUP")
    # node9 was killed before the page opened: its column is grey, "not reporting".
    expect(page.locator('th.node-head[data-node="node9"]')).to_have_attribute(
        "data-reporting", "false"
    )
    expect(page.locator('td.cell[data-node="node9"][data-state="not reporting"]')).to_have_count(
        len(ALIASES)
    )
    # The timeline's spans carry no text to cut: the legend names the nodes.
    vhid4 = page.locator('.timeline[data-vhid="4"]')
    expect(vhid4.locator(".timeline-legend li")).to_have_text(["node4", "node5"])
    span = vhid4.locator(".timeline-bar .span").first
    expect(span).to_have_text("")
    assert (span.get_attribute("title") or "").startswith("node4 MASTER from ")


def test_the_ip_alias_lists_enabled_preempt_and_live_columns_are_in_view_at_1280_px(
    show: Showcase, page: Page
) -> None:
    page.goto(show.url + "/system/advanced/ip-alias/")
    expect(page.locator("#live-indicator")).to_have_attribute("data-live", "connected")
    no_sideways_scroll(page, "#alias-table")
    rows = page.locator("#alias-table tbody tr")
    expect(rows).to_have_count(len(ALIASES))
    for index in range(len(ALIASES)):
        row = rows.nth(index)
        for role in ("enabled", "preempt", "live"):
            assert_in_view(row.locator(f'[data-role="{role}"]'), f"row {index} {role}")
        chips = row.locator("td.node-col")
        for n in range(len(NODES)):
            assert_in_view(chips.nth(n), f"row {index} {NODES[n]}")
        assert_in_view(row.locator("td.row-actions"), f"row {index} actions")


def test_an_announced_cluster_event_is_listed_at_once_in_order_and_the_panel_stays_short(
    show: Showcase, page: Page
) -> None:
    """What a notifier announces after storing an event (tests/test_notifier.py
    follows one from the database to the stream) is drawn as the server draws it."""
    assert show.scene is not None
    client = show.scene.client
    start = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)

    def announce(pk: int, kind: str, message: str, seconds: int) -> None:
        at = (start + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
        event = statekeys.ClusterEventMessage(pk, kind, message, at)
        client.publish(statekeys.EVENTS_CHANNEL, statekeys.encode_message(event))

    open_status(show, page)
    panel = page.locator("#cluster-event-list")
    rows = panel.locator("tbody tr[data-event-id]")
    expect(rows).to_have_count(0)
    announce(1, "split_brain", "VHID 1 on eth0 has two MASTERs: node1, node2.", 0)
    expect(rows).to_have_count(1)
    expect(panel.locator("td.empty")).to_have_count(0)
    first = rows.first
    expect(first).to_have_attribute("data-event-kind", "split_brain")
    expect(first.locator("time")).to_have_text("2026-12-02 03:00:00")
    expect(first.locator(".flag")).to_have_text("Split brain")
    expect(first.locator(".flag")).to_have_class("flag flag-warn")
    expect(first.locator("td").nth(2)).to_have_text("VHID 1 on eth0 has two MASTERs: node1, node2.")
    announce(2, "master_restored", "VHID 1 on eth0 has one MASTER again: node1.", 5)
    announce(3, "node_reporting", "Node node2 is reporting again.", -5)  # arrives late
    expect(rows).to_have_count(3)
    expect(rows.first.locator(".flag")).to_have_class("flag flag-off")
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.eventId)") == ["2", "1", "3"]
    for pk in range(4, 29):
        announce(pk, "owner_changed", f"VHID 1 on eth0: owner change {pk}.", 10 + pk)
    expect(rows.first).to_have_attribute("data-event-id", "28")
    expect(rows).to_have_count(int(panel.get_attribute("data-max-events") or 0))
    shown = rows.evaluate_all("rows => rows.map(r => r.dataset.eventId)")
    assert shown == [str(pk) for pk in range(28, 8, -1)]


def test_a_transition_shows_in_its_cell_before_the_status_it_starts_and_once_in_the_timeline(
    show: Showcase, page: Page
) -> None:
    """The page applies an engine's transition to the node's cell as the stream
    forwards it, before the status computed after it arrives (which, here, shows
    the state Redis still holds: the transition is one the engines never wrote)."""
    assert show.scene is not None
    # The page's own stream counts, before live.js sees each, its statuses and
    # those whose trigger has a transition to INIT (the one published below).
    page.add_init_script(
        """window.__statuses = 0;
        window.__confirmed = 0;
        window.EventSource = class extends window.EventSource {
            constructor(...args) {
                super(...args);
                this.addEventListener('status', event => {
                    window.__statuses += 1;
                    const trigger = JSON.parse(event.data).trigger;
                    if (trigger.some(m => m.kind === 'transition' && m.to === 'INIT')) {
                        window.__confirmed += 1;
                    }
                });
            }
        };"""
    )
    open_status(show, page)
    page.wait_for_function("() => window.__statuses > 0")
    target = page.evaluate(
        """() => {
            const td = Array.from(document.querySelectorAll('#cluster-matrix td.cell'))
                .find(c => c.dataset.state === 'MASTER' || c.dataset.state === 'BACKUP');
            window.__states = [];
            new MutationObserver(() => window.__states.push(
                [td.dataset.state, td.querySelector('.state').textContent, window.__confirmed]
            )).observe(td, {attributes: true, attributeFilter: ['data-state']});
            return [td.dataset.node, Number(td.dataset.vhid), td.dataset.interface,
                    td.dataset.state];
        }"""
    )
    node, vhid, interface, state = target
    message = statekeys.TransitionMessage(
        node, interface, vhid, State(state), State.INIT, "master_down", time.time()
    )
    show.scene.client.publish(statekeys.EVENTS_CHANNEL, statekeys.encode_message(message))
    # The status computed after it puts Redis's state back.
    page.wait_for_function("() => window.__confirmed > 0")
    cell = page.locator(f'#cluster-matrix td.cell[data-node="{node}"][data-vhid="{vhid}"]')
    expect(cell).to_have_attribute("data-state", state)
    states = page.evaluate("() => window.__states")
    # The cell showed it before the status that confirms it came; then that status.
    shown = [entry for entry in states if entry[0] == "INIT"]
    assert shown, states
    assert shown[0] == ["INIT", "INIT", 0], states
    assert states[-1][0] == state, states
    timeline = page.locator(f'.timeline[data-vhid="{vhid}"][data-interface="{interface}"]')
    entries = timeline.locator(f'.timeline-entries li[data-node="{node}"][data-to="INIT"]')
    expect(entries).to_have_count(1)


# Last: it kills a node of the module's showcase.
def test_a_killed_node_greys_out_before_its_heartbeat_expires(
    show: Showcase, page: Page, tmp_path: Path
) -> None:
    assert show.scene is not None
    open_status(show, page)
    head = page.locator('#cluster-matrix th.node-head[data-node="node2"]')
    expect(head).to_have_attribute("data-reporting", "true")
    show.scene.kill("node2")
    killed = time.monotonic()
    # (The scene has its Secondary, node3, take VHID 2 over, as after master-down.)
    expect(head).to_have_attribute("data-reporting", "false", timeout=3000)
    seen = time.monotonic() - killed
    # The heartbeat key is still there: the page did not wait for its TTL.
    assert show.scene.client.exists(statekeys.heartbeat_key("node2")), seen
    expect(head.locator("[data-node-live]")).to_have_text("not reporting")
    vhid2 = page.locator('#cluster-matrix tr[data-vhid="2"]')
    expect(vhid2.locator('td.cell[data-node="node2"]')).to_have_attribute(
        "data-state", "not reporting"
    )
    expect(vhid2.locator('[data-role="actual-owner"]')).to_have_text("node3")
    expect(page.locator('#cluster-alerts [data-alert="split_brain"]')).to_have_count(0)
    page.screenshot(path=str(tmp_path / "killed.png"), full_page=True)
