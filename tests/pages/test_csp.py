"""The Content-Security-Policy (appliance/csp.py) and pages that satisfy it:
nothing inline runs or styles a page unless it carries the response's nonce."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import User
from django.http import HttpResponse, HttpResponseBase
from django.test import Client

from cluster.models import IPAlias, Node, Transition

CLUSTER_URL = "/system/cluster/"


class Inline(HTMLParser):
    """What a page has inline: scripts, style blocks (with their nonces), style
    attributes and event handler attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str | None] = []  # the nonce of each inline script
        self.styles: list[str | None] = []  # the nonce of each <style>
        self.attributes: list[str] = []  # style= and on*= attributes, javascript: URLs

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        # A JSON data block (json_script) is not executed, so the policy lets it be.
        if tag == "script" and "src" not in found and found.get("type") != "application/json":
            self.scripts.append(found.get("nonce"))
        if tag == "style":
            self.styles.append(found.get("nonce"))
        for name, value in attrs:
            if name == "style" or name.startswith("on"):
                self.attributes.append(f"<{tag} {name}={value!r}>")
            if name in ("href", "src", "action") and (value or "").startswith("javascript:"):
                self.attributes.append(f"<{tag} {name}={value!r}>")


def inline(response: HttpResponseBase) -> Inline:
    parser = Inline()
    assert isinstance(response, HttpResponse)
    parser.feed(response.content.decode())
    return parser


def directives(response: HttpResponseBase) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    found = {}
    for directive in header.split(";"):
        name, *values = directive.split()
        found[name] = values
    return found


def nonces(response: HttpResponseBase) -> set[str]:
    """The nonces the policy allows for scripts."""
    return {
        value[len("'nonce-") : -1]
        for value in directives(response)["script-src"]
        if value.startswith("'nonce-")
    }


def test_every_response_carries_a_policy_that_allows_nothing_inline(client: Client) -> None:
    response = client.get("/login/")
    policy = directives(response)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["img-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert "unsafe-inline" not in response["Content-Security-Policy"]
    assert "unsafe-eval" not in response["Content-Security-Policy"]
    # Also on what is not a page: the API and static files.
    assert "Content-Security-Policy" in client.get("/api/v1/status/")
    assert "Content-Security-Policy" in client.get("/static/console/console.js")


@pytest.fixture
def history(alias: IPAlias, nodes: list[Node]) -> None:
    """node2 took VHID 1 over: the cluster page's timeline then has a MASTER span."""
    Transition.objects.create(
        node=nodes[1], vhid=1, interface="eth0", from_state="BACKUP", to_state="MASTER",
        reason="master_down",
    )  # fmt: skip


@pytest.mark.usefixtures("history")
@pytest.mark.parametrize(
    "url",
    [
        "/login/",
        CLUSTER_URL,
        "/system/cluster/nodes/",
        "/system/cluster/nodes/add/",
        "/system/cluster/nodes/{node}/edit/",
        "/system/cluster/nodes/{node}/delete/",
        "/system/advanced/ip-alias/",
        "/system/advanced/ip-alias/add/",
        "/system/advanced/ip-alias/{alias}/edit/",
        "/system/advanced/ip-alias/{alias}/delete/",
        "/system/audit/",
        "/no/such/page/",
        "/admin/",
        "/admin/cluster/ipalias/",
        "/admin/cluster/ipalias/{alias}/change/",
        "/admin/cluster/node/add/",
        "/admin/cluster/transition/",
    ],
)
def test_the_console_and_admin_pages_have_no_inline_script_style_or_handler(
    alice: User, alias: IPAlias, nodes: list[Node], url: str
) -> None:
    client = Client()
    if url != "/login/":
        client.force_login(alice)
    response = client.get(url.format(alias=alias.pk, node=nodes[0].pk))
    assert response.status_code in (200, 404), response.status_code
    found = inline(response)
    assert found.attributes == []
    assert found.scripts == []
    # The only inline style: the cluster page's timeline, under the response's nonce.
    assert all(nonce in nonces(response) for nonce in found.styles), found.styles
    if url != CLUSTER_URL:
        assert found.styles == []


@pytest.mark.usefixtures("history")
def test_the_timeline_spans_are_placed_by_a_style_block_under_the_nonce(
    alice: User, alias: IPAlias
) -> None:
    client = Client()
    client.force_login(alice)
    response = client.get(CLUSTER_URL)
    html = response.content.decode()
    (nonce,) = nonces(response)
    assert f"'nonce-{nonce}'" in directives(response)["style-src"]
    block = re.search(rf'<style nonce="{nonce}">(.*?)</style>', html, re.S)
    assert block is not None
    assert re.search(rf"#span-{alias.pk}-1 {{ left: [\d.]+%; width: [\d.]+%; }}", block.group(1))
    assert f'<span class="span" id="span-{alias.pk}-1"' in html


@pytest.mark.usefixtures("history")
def test_a_page_that_renders_no_nonce_allows_none(alice: User) -> None:
    client = Client()
    client.force_login(alice)
    response = client.get("/system/cluster/nodes/")
    assert "nonce" not in response["Content-Security-Policy"]


def test_the_swagger_ui_runs_its_start_up_script_under_the_nonce(alice: User) -> None:
    client = Client()
    client.force_login(alice)
    response = client.get("/api/docs/")
    assert response.status_code == 200
    found = inline(response)
    assert found.styles == []
    assert found.attributes == []
    assert len(found.scripts) == 1
    assert found.scripts == list(nonces(response))
    assert "SwaggerUIBundle(" in response.content.decode()
    # Its icons are data: URLs; the console's pages do without.
    assert directives(response)["img-src"] == ["'self'", "data:"]
    # A new nonce for every response.
    assert nonces(client.get("/api/docs/")) != nonces(response)
