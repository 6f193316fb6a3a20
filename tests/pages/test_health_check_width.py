"""The health checks page at 1280 px in Chromium (Debian's, driven by
Playwright): nine nodes, long targets and a failing message in the Live column
still fit without a horizontal scroll bar."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from django.test import Client
from playwright.sync_api import Browser, sync_playwright

from cluster import live, services
from cluster.checks import CheckStatus
from tests.factories import make_nodes

CHROMIUM_ARGS = ["--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
WIDTH = 1280
# The widest of the page and every scrolling box's content, in CSS pixels.
WIDEST = """() => Math.max(document.documentElement.scrollWidth,
    ...[...document.querySelectorAll('.table-wrap')].map(
        box => box.scrollWidth + document.documentElement.clientWidth - box.clientWidth))"""


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def widest_checks() -> None:
    make_nodes(9)
    services.create_check(None, {"name": "smtp-25", "kind": "smtp", "starttls": True})
    services.create_check(
        None,
        {
            "name": "web-status-of-the-mail-gateway-frontend",
            "kind": "http",
            "host": "status.mail-gateway.internal.example.org",
            "port": 8443,
            "path": "/api/v1/health/ready?include=queue,spool,antivirus",
            "expect_status": 204,
        },
    )
    services.create_check(
        None,
        {
            "name": "queue",
            "kind": "command",
            "argv": ["/usr/local/lib/appliance/checks/mail-queue-size", "--max", "5000"],
            "boot_needs_rise": True,
        },
    )
    services.create_check(None, {"name": "spool", "kind": "disk", "path": "/var/spool/postfix"})


@pytest.fixture
def session(transactional_db: None) -> str:
    """alice's session cookie, with the cluster in the database. Made before the
    browser starts: Playwright's event loop then runs in this thread, where Django
    refuses database calls."""
    from tests.factories import make_user

    widest_checks()
    client = Client()
    client.force_login(make_user("alice", "administrator"))
    return str(client.cookies["sessionid"].value)


def test_the_page_fits_1280_pixels_with_nine_nodes(
    live_server: Any, session: str, browser: Browser
) -> None:
    failing = CheckStatus("smtp-25", "smtp", False, 10, "timeout after 1000 ms", gating=True)
    statuses = {f"node{n}": {"smtp-25": failing} for n in range(1, 10)}
    context = browser.new_context(viewport={"width": WIDTH, "height": 900})
    context.add_cookies([{"name": "sessionid", "value": session, "url": live_server.url}])
    page = context.new_page()
    with mock.patch.object(live, "check_statuses", create=True, return_value=statuses):
        page.goto(live_server.url + "/system/cluster/health-checks/")
        assert page.locator('[data-state="failing"]').count() == 9
        widths = {"list": page.evaluate(WIDEST)}
        page.goto(live_server.url + "/system/cluster/health-checks/add/")
        widths["form"] = page.evaluate(WIDEST)
    context.close()
    # The tables scroll inside their own box (overflow-x), so the page's width
    # alone would never tell: what counts is what each box must scroll.
    assert widths == {"list": WIDTH, "form": WIDTH}, widths
