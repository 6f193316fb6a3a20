"""Live state on the pages: the cluster matrix, the IP ALIAS and nodes pages,
the event stream's view, and demo mode's Fail / Restore buttons."""

from __future__ import annotations

import json
import logging
import re
from typing import Any, cast

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.test import AsyncClient, Client
from django.utils.html import escape

from cluster import statekeys
from cluster.carp.types import DemotionSource
from cluster.models import IPAlias, Node
from tests.livestate import FakeEngines
from tests.pages.helpers import ALIAS_URL, NODES_URL

CLUSTER_URL = "/system/cluster/"
EVENTS_URL = "/system/cluster/events/"


@pytest.fixture
def failed_over(engines: FakeEngines, alias: IPAlias) -> FakeEngines:
    """node1 (Primary) stopped reporting; node2 took VHID 1 over; node3 runs nothing."""
    engines.report("node1", {1: "MASTER"}, heartbeat=False)
    engines.report("node2", {1: "MASTER"})
    engines.report("node3", {})
    return engines


def cell(html: str, node: str, vhid: int = 1) -> str:
    match = re.search(
        rf'<td class="cell" data-node="{node}" data-vhid="{vhid}" data-interface="eth0" '
        r'data-state="([^"]*)">',
        html,
    )
    assert match, f"no cell for {node}"
    return match.group(1)


def test_the_matrix_shows_each_cells_live_state_and_the_owners(
    alice_client: Client, failed_over: FakeEngines
) -> None:
    html = alice_client.get(CLUSTER_URL).content.decode()
    assert [cell(html, n) for n in ("node1", "node2", "node3")] == [
        "not reporting",
        "MASTER",
        "not running",
    ]
    row = html[html.index('<tr data-alias-id="') :].split("</tr>")[0]
    # node1 is down: node2 is both the expected and the actual owner.
    assert 'data-mismatch="false"' in row
    assert '<td data-role="expected-owner"><strong>node2</strong>' in row
    assert '<td data-role="actual-owner"><strong>node2</strong>' in row
    assert re.search(r'data-alert="not_reporting">Node node1 is not reporting[ .]', html)
    assert 'id="live-unavailable" hidden' in html
    assert 'data-live="connecting"' in html
    assert 'data-events-url="/system/cluster/events/"' in html


def test_a_master_other_than_the_expected_owner_is_highlighted_and_two_alerted(
    alice_client: Client, engines: FakeEngines, alias: IPAlias
) -> None:
    engines.report("node1", {1: "MASTER"})
    engines.report("node2", {1: "MASTER"})
    engines.report("node3", {1: "BACKUP"})
    html = alice_client.get(CLUSTER_URL).content.decode()
    assert 'data-mismatch="true"' in html
    assert "Split brain: VHID 1 on eth0 is MASTER on node1 and node2." in html
    listing = alice_client.get(ALIAS_URL).content.decode()
    assert ">MASTER on node1, node2 (split brain)<" in listing


def test_the_ip_alias_page_says_who_is_master(
    alice_client: Client, failed_over: FakeEngines, alias: IPAlias
) -> None:
    html = alice_client.get(ALIAS_URL).content.decode()
    assert f'data-alias-summary="{alias.pk}" data-mismatch="false">MASTER on node2<' in html


def test_the_nodes_page_shows_each_heartbeat(
    alice_client: Client, failed_over: FakeEngines
) -> None:
    html = alice_client.get(NODES_URL).content.decode()
    assert re.search(
        r'data-node-summary="node1" data-reporting="false">'
        r"not reporting · last seen \d\d:\d\d:\d\d<",
        html,
    )
    assert (
        'data-node-summary="node2" data-reporting="true">'
        "reporting · configuration from the database<"
    ) in html
    assert 'title="the digest of the configuration this node applied">3f9a0c1d<' in html


def test_without_redis_every_page_is_200_and_says_live_state_is_unavailable(
    alice_client: Client, alias: IPAlias
) -> None:
    html = alice_client.get(CLUSTER_URL).content.decode()
    assert 'id="live-unavailable" hidden' not in html
    assert "Live state is unavailable" in html
    assert cell(html, "node1") == "unknown"
    for url in (ALIAS_URL, NODES_URL):
        response = alice_client.get(url)
        assert response.status_code == 200
        assert "live state unavailable" in response.content.decode()


def test_the_timeline_lists_the_history_of_each_vip(
    alice_client: Client, alias: IPAlias, nodes: list[Node]
) -> None:
    from cluster.models import Transition

    Transition.objects.create(
        node=nodes[1], vhid=1, interface="eth0", from_state="BACKUP", to_state="MASTER",
        reason="master_down",
    )  # fmt: skip
    html = alice_client.get(CLUSTER_URL).content.decode()
    section = html[html.index('<section class="timeline"') :].split("</section>")[0]
    text = re.sub(r"<[^>]+>", "", section)
    assert re.search(r"\d\d:\d\d:\d\d node2 BACKUP → MASTER \(Master down\)", text)
    assert 'class="span"' in section  # node2 is MASTER until now


# Demo mode's buttons.


def test_demo_buttons_are_for_administrators_in_demo_mode_only(
    settings: Any, alice_client: Client, sam_client: Client, alias: IPAlias
) -> None:
    assert "Fail node" not in alice_client.get(CLUSTER_URL).content.decode()
    settings.DEMO_MODE = True
    html = alice_client.get(CLUSTER_URL).content.decode()
    assert html.count('data-demo="fail"') == 3
    assert html.count('data-demo="restore"') == 3
    assert 'action="/system/cluster/nodes/node1/fail"' in html
    assert "Fail node" not in sam_client.get(CLUSTER_URL).content.decode()


def test_fail_publishes_a_request_to_the_demo_supervisor(
    settings: Any, alice_client: Client, engines: FakeEngines, alias: IPAlias
) -> None:
    settings.DEMO_MODE = True
    supervisor = statekeys.sync_client(settings.REDIS_URL)
    pubsub = supervisor.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(statekeys.DEMO_CONTROL_CHANNEL)
    pubsub.get_message(timeout=1)  # the subscribe confirmation: subscribed from here on
    try:
        response = alice_client.post("/system/cluster/nodes/node1/fail", follow=True)
        message = pubsub.get_message(timeout=2)
    finally:
        pubsub.close()
        supervisor.close()
    assert message is not None
    request = json.loads(message["data"])
    assert (request["action"], request["node"]) == ("fail", "node1")
    assert isinstance(request["at"], float)
    assert "node1 failed: its worker was killed" in response.content.decode()


def test_without_a_demo_supervisor_the_button_says_so(
    settings: Any, alice_client: Client, engines: FakeEngines, alias: IPAlias
) -> None:
    settings.DEMO_MODE = True
    response = alice_client.post("/system/cluster/nodes/node2/restore", follow=True)
    assert "Nothing was done to node2: the demo supervisor is not running." in (
        response.content.decode()
    )


def test_the_pages_script_gets_the_answer_as_json_and_no_redirect(
    settings: Any, alice_client: Client, engines: FakeEngines, alias: IPAlias
) -> None:
    # live.js posts with fetch() and Accept: application/json so the live page is
    # not reloaded; the answer is the same text the redirect would flash.
    settings.DEMO_MODE = True
    response = alice_client.post(
        "/system/cluster/nodes/node2/restore", headers={"Accept": "application/json"}
    )
    assert response.status_code == 503
    assert response.json() == {
        "done": False,
        "message": "Nothing was done to node2: the demo supervisor is not running.",
    }
    supervisor = statekeys.sync_client(settings.REDIS_URL)
    pubsub = supervisor.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(statekeys.DEMO_CONTROL_CHANNEL)
    pubsub.get_message(timeout=1)
    try:
        response = alice_client.post(
            "/system/cluster/nodes/node1/fail", headers={"Accept": "application/json"}
        )
    finally:
        pubsub.close()
        supervisor.close()
    assert response.status_code == 200
    assert response.json()["done"] is True
    assert "node1 failed: its worker was killed" in response.json()["message"]


def test_demo_actions_need_demo_mode_an_administrator_a_post_and_a_node(
    settings: Any, alice_client: Client, sam_client: Client, nodes: list[Node]
) -> None:
    assert alice_client.post("/system/cluster/nodes/node1/fail").status_code == 404
    settings.DEMO_MODE = True
    assert sam_client.post("/system/cluster/nodes/node1/fail").status_code == 403
    assert alice_client.get("/system/cluster/nodes/node1/fail").status_code == 405
    assert alice_client.post("/system/cluster/nodes/node9/fail").status_code == 404
    # Redis is down here (no redis_url): said, not a 500.
    response = alice_client.post("/system/cluster/nodes/node1/fail", follow=True)
    assert "Nothing was done: Redis cannot be reached" in response.content.decode()


def test_demo_actions_check_csrf(settings: Any, alice: User, nodes: list[Node]) -> None:
    settings.DEMO_MODE = True
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post("/system/cluster/nodes/node1/fail").status_code == 403


# The event stream's view (the generator itself: tests/test_live.py).


def test_the_stream_is_for_users_with_a_role(sam: User, charlie: User) -> None:
    async def status_of(user: User | None) -> int:
        client = AsyncClient()
        if user is not None:
            await client.aforce_login(user)
        response = await client.get(EVENTS_URL)
        return int(response.status_code)

    assert async_to_sync(status_of)(None) == 403
    assert async_to_sync(status_of)(charlie) == 403


def test_the_stream_opens_with_the_status_and_unbuffered_headers(
    transactional_db: None, sam: User, failed_over: FakeEngines
) -> None:
    # The status hub computes in a thread of its own: it sees committed rows only.
    async def first_event() -> tuple[Any, str]:
        client = AsyncClient()
        await client.aforce_login(sam)
        response = await client.get(EVENTS_URL)
        chunks = cast(Any, response).streaming_content
        text = ""
        async for chunk in chunks:
            text += chunk.decode() if isinstance(chunk, bytes) else chunk
            if "event: status" in text:
                break
        await chunks.aclose()
        return response, text

    response, text = async_to_sync(first_event)()
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Content-Encoding"] == "identity"
    assert response["Cache-Control"] == "no-cache"
    assert response["X-Accel-Buffering"] == "no"
    data = json.loads(text.split("event: status\ndata: ", 1)[1].split("\n", 1)[0])
    assert data["aliases"][0]["masters"] == ["node2"]
    assert data["trigger"] == []


# Demotion, unreadable live state, aliases a node leaves out.


def node_summary(html: str, node: str) -> str:
    """The heartbeat summary of ``node`` (the matrix's header, the nodes page's column)."""
    match = re.search(rf'data-node-summary="{node}"[^>]*>([^<]*)<', html)
    assert match, f"no summary for {node}"
    return match.group(1)


def cell_text(html: str, node: str, vhid: int = 1) -> str:
    """What a matrix cell says in words (its state, or why there is none)."""
    match = re.search(
        rf'<td class="cell" data-node="{node}" data-vhid="{vhid}" [^>]*>.*?'
        r'<span class="state"[^>]*>([^<]*)</span>',
        html,
    )
    assert match, f"no cell for {node}"
    return match.group(1)


def test_a_demoted_node_says_by_how_much_and_why_on_the_cluster_and_nodes_pages(
    alice_client: Client, engines: FakeEngines, alias: IPAlias
) -> None:
    for node in ("node1", "node2", "node3"):
        engines.report(node, {1: "BACKUP" if node == "node1" else "MASTER"})
    engines.beat("node1", demotion=[DemotionSource("maintenance", 240, "maintenance")])
    expected = "reporting · configuration from the database · demoted by 240: maintenance"
    cluster = alice_client.get(CLUSTER_URL).content.decode()
    assert node_summary(cluster, "node1") == expected
    assert node_summary(cluster, "node2") == "reporting · configuration from the database"
    nodes_page = alice_client.get(NODES_URL).content.decode()
    assert node_summary(nodes_page, "node1") == expected


def test_every_source_of_a_demotion_is_named(
    alice_client: Client, engines: FakeEngines, alias: IPAlias
) -> None:
    engines.report("node1", {1: "BACKUP"})
    engines.beat(
        "node1",
        demotion=[
            DemotionSource("link:eth0", 240, "link eth0 down"),
            DemotionSource("maintenance", 240, "maintenance"),
        ],
    )
    html = alice_client.get(NODES_URL).content.decode()
    assert node_summary(html, "node1").endswith(" · demoted by 480: link eth0 down, maintenance")


UNREADABLE = [
    pytest.param("vhost", {"updated_at": "soon"}, id="updated_at-not-a-number"),
    pytest.param("vhost", {"updated_at": "1e300"}, id="updated_at-past-year-9999"),
    pytest.param("vhost", {"last_at": "yesterday"}, id="last_at-not-a-number"),
    pytest.param("vhost", {"last_at": "9" * 400}, id="last_at-huge"),
    pytest.param("vhost", {"state": "PRIMARY"}, id="unknown-state"),
    pytest.param("heartbeat", '{"node": "node2", "at": "nan"}', id="heartbeat-at-nan"),
    pytest.param("heartbeat", '{"node": "node2", "at": NaN}', id="heartbeat-at-NaN-literal"),
    pytest.param("heartbeat", "node2 is alive {", id="heartbeat-not-json"),
]


@pytest.mark.parametrize(("where", "value"), UNREADABLE)
def test_unreadable_state_is_a_cell_that_says_so_on_every_page_and_is_logged_once(
    alice_client: Client,
    alice: User,
    engines: FakeEngines,
    alias: IPAlias,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    where: str,
    value: Any,
) -> None:
    from cluster import live
    from tests.api.conftest import token_client

    monkeypatch.setattr(live, "_LOGGED_UNREADABLE", set())  # module state: once per process
    engines.report("node1", {1: "MASTER"})
    engines.report("node2", {1: "BACKUP"})
    engines.report("node3", {1: "BACKUP"})
    if where == "vhost":
        engines.overwrite("node2", 1, **value)
    else:
        engines.beat_raw("node2", value)
    caplog.set_level(logging.WARNING, logger="cluster.live")
    pages = {url: alice_client.get(url) for url in (CLUSTER_URL, NODES_URL, ALIAS_URL)}
    api = token_client(alice).get("/api/v1/status/")
    again = alice_client.get(CLUSTER_URL)
    for response in (*pages.values(), api, again):
        assert response.status_code == 200
    html = pages[CLUSTER_URL].content.decode()
    assert cell(html, "node2") == "unreadable"
    assert cell_text(html, "node2") == "unreadable state from node2"
    assert (cell(html, "node1"), cell(html, "node3")) == ("MASTER", "BACKUP")  # the rest shows
    (row,) = api.json()["aliases"]
    node2 = next(c for c in row["cells"] if c["node"] == "node2")
    assert (node2["state"], node2["detail"]) == ("unreadable", "unreadable state from node2")
    assert row["masters"] == ["node1"]
    listing = pages[ALIAS_URL].content.decode()
    assert f'data-alias-summary="{alias.pk}" data-mismatch="false">MASTER on node1<' in listing
    if where == "heartbeat":
        summary = node_summary(pages[NODES_URL].content.decode(), "node2")
        assert summary.startswith("unreadable state from node2 (")
        (node_status,) = [n for n in api.json()["nodes"] if n["name"] == "node2"]
        assert node_status["unreadable"]
    said = [r for r in caplog.records if "unreadable live state from node2" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in said]


def test_an_alias_a_node_cannot_run_is_an_alert_naming_node_alias_and_cause(
    alice_client: Client, engines: FakeEngines, alias: IPAlias
) -> None:
    from cluster import services

    engines.report("node1", {})
    engines.beat(
        "node1", problems=[statekeys.ConfigProblem(1, "eth0", services.UNDECRYPTABLE_CAUSE)]
    )
    html = alice_client.get(CLUSTER_URL).content.decode()
    message = f"Node node1 cannot run VHID 1 on eth0: {services.UNDECRYPTABLE_CAUSE}."
    assert f'data-alert="alias_left_out">{escape(message)}</li>' in html
