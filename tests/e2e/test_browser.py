"""The administrator's path in headless Chromium (Debian's, driven by Playwright):
log in, add an alias on the IP ALIAS page, fail its Primary with the status
page's demo button and watch its Secondary's cell turn MASTER, pushed live; stop
a master's mail service with its button and watch the smtp-25 check demote it.
All along, and on the API's Swagger UI and the Django admin, the browser
reports no breach of the Content-Security-Policy (appliance/csp.py).

``E2E_SCREENSHOT=<path>`` keeps the status page's screenshot (taken once the
failed node is restored and the cluster has settled); by default it goes to the
test's temporary directory. The README's nine-node pictures come from
``make screenshots`` (tests/showcase.py).
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, expect, sync_playwright

from cluster.lab.supervisor import Supervisor, state_path
from tests.e2e.console import ADMIN, Console

pytestmark = pytest.mark.netns

CHROMIUM_ARGS = ["--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
VHID, ADDRESS = 20, "192.0.2.120"
PRIMARY, SECONDARY = "node2", "node3"
TAKEOVER = 15_000  # ms: the supervisor kills the node, then the master-down interval
# ms: Swagger UI fetches the schema (generated on the first request) and parses 1.6 MB
# of script before it draws; with the CPU busy that outlasts Playwright's 5 s.
LINKED_PAGE = 20_000


@pytest.fixture
def supervisor(console: Console) -> Iterator[Supervisor]:
    """The demo supervisor, which carries out the status page's Fail/Restore buttons."""
    lab = console.lab
    running = Supervisor(lab, lab.var_dir)
    state_path(lab.var_dir).parent.mkdir(parents=True, exist_ok=True)
    running.write_state()
    thread = threading.Thread(target=running.run, name="demo-supervisor")
    thread.start()
    try:
        assert running.listening.wait(timeout=10)
        yield running
    finally:
        running.stopping.set()
        thread.join(timeout=10)


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def csp_violations(page: Page) -> list[str]:
    """Collects what Chromium says about the Content-Security-Policy on ``page``:
    a blocked inline script, style or source is logged to the console."""
    found: list[str] = []

    def seen(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            found.append(f"{page.url}: {message.text}")

    page.on("console", seen)
    return found


def cell(page: Page, node: str, vhid: int = VHID) -> Locator:
    return page.locator(f'#cluster-matrix td.cell[data-node="{node}"][data-vhid="{vhid}"]')


def test_failing_the_primary_turns_the_secondary_master_live(
    console: Console, supervisor: Supervisor, browser: Browser, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    violations = csp_violations(page)
    url = console.url
    page.goto(url + "/login/")
    page.get_by_label("User name").fill(ADMIN)
    page.get_by_label("Password").fill(console.password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(url + "/system/advanced/ip-alias/")

    page.goto(url + "/system/advanced/ip-alias/add/")
    page.get_by_label("VHID").fill(str(VHID))
    page.get_by_label("Interface").fill("eth0")
    page.get_by_label("Password").fill("browser-secret")
    page.get_by_label("Addresses").fill(f"{ADDRESS}/24")
    page.get_by_label("Description").fill("Mail VIP added in the browser")
    for node, tier in ((PRIMARY, "primary"), (SECONDARY, "secondary"), ("node1", "backup")):
        page.get_by_label(node, exact=True).select_option(tier)
    page.get_by_role("button", name="Add IP alias").click()
    page.wait_for_url(url + "/system/advanced/ip-alias/")
    alias = next(a for a in console.status()["aliases"] if a["vhid"] == VHID)
    console.created.append(alias["id"])  # deleted by the fixture afterwards

    page.goto(url + "/system/cluster/")
    expect(page.locator("#live-indicator")).to_have_attribute("data-live", "connected")
    expect(cell(page, PRIMARY)).to_have_attribute("data-state", "MASTER", timeout=TAKEOVER)
    expect(cell(page, SECONDARY)).to_have_attribute("data-state", "BACKUP")

    # The button posts with fetch() and the page stays: the marker set now must
    # survive everything that follows, which all arrives over the event stream.
    marker = secrets.token_hex(8)
    page.evaluate("marker => { window.e2eMarker = marker; }", marker)
    page.locator(f'button[data-demo="fail"][data-node="{PRIMARY}"]').click()
    expect(page.locator("#demo-message")).to_contain_text(f"{PRIMARY} failed")
    expect(cell(page, SECONDARY)).to_have_attribute("data-state", "MASTER", timeout=TAKEOVER)
    expect(cell(page, PRIMARY)).to_have_attribute("data-state", "not reporting")
    assert page.evaluate("() => window.e2eMarker") == marker, "the page was reloaded"
    assert console.lab.holders(ADDRESS) == [SECONDARY]

    # Restored, the Primary takes its VIP back (preempt); then the page is settled.
    page.locator(f'button[data-demo="restore"][data-node="{PRIMARY}"]').click()
    expect(cell(page, PRIMARY)).to_have_attribute("data-state", "MASTER", timeout=60_000)
    expect(page.locator('#cluster-matrix tr[data-mismatch="true"]')).to_have_count(0)
    expect(page.locator("#cluster-alerts li")).to_have_count(0)
    assert page.evaluate("() => window.e2eMarker") == marker, "the page was reloaded"
    page.goto(url + "/system/cluster/")  # without the button's message
    expect(page.locator("#live-indicator")).to_have_attribute("data-live", "connected")
    for node in ("node1", "node2", "node3"):
        summary = page.locator(f'#cluster-nodes [data-node-summary="{node}"]')
        expect(summary).to_contain_text("configuration from the database")
    shot = Path(os.environ.get("E2E_SCREENSHOT") or tmp_path / "cluster-status.png")
    page.screenshot(path=str(shot), full_page=True)

    # The pages the console links to that are not its own: Swagger UI draws the
    # API from the schema, the admin its change list with its scripts.
    page.goto(url + "/api/docs/")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible(timeout=LINKED_PAGE)
    page.goto(url + "/admin/cluster/ipalias/")
    expect(page.locator("#result_list")).to_contain_text(ADDRESS, timeout=LINKED_PAGE)
    page.locator("#action-toggle").check()  # actions.js, one of the admin's scripts
    expect(page.locator(".action-counter")).to_contain_text("selected")
    assert violations == []


MAIL_VIP_VHID, MAIL_PRIMARY, MAIL_SECONDARY = 1, "node1", "node2"  # demo_setup's VHID 1
# The demo's smtp-25 check fails fall (3) x interval (1 s) after the kill; the
# handover then takes about one advert interval.
DEMOTION = 15_000  # ms


def log_in(page: Page, console: Console) -> None:
    page.goto(console.url + "/login/")
    page.get_by_label("User name").fill(ADMIN)
    page.get_by_label("Password").fill(console.password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(console.url + "/system/advanced/ip-alias/")


def test_stopping_the_masters_mail_service_shows_the_demotion_and_the_new_master_live(
    console: Console, supervisor: Supervisor, browser: Browser
) -> None:
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    violations = csp_violations(page)
    log_in(page, console)
    page.goto(console.url + "/system/cluster/")
    expect(page.locator("#live-indicator")).to_have_attribute("data-live", "connected")
    primary = cell(page, MAIL_PRIMARY, MAIL_VIP_VHID)
    secondary = cell(page, MAIL_SECONDARY, MAIL_VIP_VHID)
    expect(primary).to_have_attribute("data-state", "MASTER", timeout=TAKEOVER)
    marker = secrets.token_hex(8)
    page.evaluate("marker => { window.e2eMarker = marker; }", marker)

    page.locator(f'button[data-demo="mail-stop"][data-node="{MAIL_PRIMARY}"]').click()
    expect(page.locator("#demo-message")).to_contain_text(
        f"{MAIL_PRIMARY}'s mail service was stopped"
    )
    expect(secondary).to_have_attribute("data-state", "MASTER", timeout=DEMOTION)
    expect(primary).to_have_attribute("data-state", "BACKUP")
    # The node's header says why it was demoted: the check, its count and its last result.
    header = page.locator(f'#cluster-matrix [data-node-demotion="{MAIL_PRIMARY}"]')
    expect(header).to_contain_text("demoted 240")
    expect(header).to_contain_text("smtp-25 failing")
    summary = page.locator(f'#cluster-nodes [data-node-summary="{MAIL_PRIMARY}"]')
    expect(summary).to_contain_text("demoted by 240")
    expect(summary).to_contain_text("smtp-25 failing")
    expect(summary).to_contain_text("connection refused")
    assert page.evaluate("() => window.e2eMarker") == marker, "the page was reloaded"
    assert console.lab.holders("192.0.2.101") == [MAIL_SECONDARY]
    assert "node2 answers" in console.lab.smtp_banner("192.0.2.101")

    # Started again: rise passes clear the demotion and node1 takes its VIP back.
    page.locator(f'button[data-demo="mail-start"][data-node="{MAIL_PRIMARY}"]').click()
    expect(primary).to_have_attribute("data-state", "MASTER", timeout=DEMOTION)
    expect(summary).not_to_contain_text("demoted")
    assert page.evaluate("() => window.e2eMarker") == marker, "the page was reloaded"
    assert violations == []
