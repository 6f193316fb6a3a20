"""Demo mode's "Stop mail service" / "Start mail service" buttons on the status
page: rendered next to Fail / Restore for administrators, and each posts its
request to the demo supervisor on the control channel."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client

from cluster import statekeys
from cluster.models import IPAlias
from tests.livestate import FakeEngines

CLUSTER_URL = "/system/cluster/"


def test_the_mail_buttons_sit_with_each_nodes_demo_actions_for_administrators_only(
    settings: Any, alice_client: Client, sam_client: Client, alias: IPAlias
) -> None:
    assert "Stop mail service" not in alice_client.get(CLUSTER_URL).content.decode()
    settings.DEMO_MODE = True
    html = alice_client.get(CLUSTER_URL).content.decode()
    for node in ("node1", "node2", "node3"):
        block = re.search(
            rf'<div class="node-actions" data-node-actions="{node}">((?:(?!</div>).)*)</div>',
            html,
            re.S,
        )
        assert block, f"no demo actions for {node}"
        buttons = re.findall(r'data-demo="([-a-z]+)" data-node="([^"]+)">([^<]+)<', block.group(1))
        assert buttons == [
            ("fail", node, "Fail node"),
            ("restore", node, "Restore node"),
            ("mail-stop", node, "Stop mail service"),
            ("mail-start", node, "Start mail service"),
        ]
        assert f'action="/system/cluster/nodes/{node}/mail-stop"' in block.group(1)
        assert f'action="/system/cluster/nodes/{node}/mail-start"' in block.group(1)
    assert "Stop mail service" not in sam_client.get(CLUSTER_URL).content.decode()


@pytest.mark.parametrize(
    ("action", "said"),
    [
        ("mail-stop", "node2's mail service was stopped (killed); the box and its worker stay up"),
        ("mail-start", "node2's mail service was started; once its smtp health check passes"),
    ],
)
def test_a_mail_button_publishes_its_request_to_the_demo_supervisor(
    settings: Any,
    alice_client: Client,
    engines: FakeEngines,
    alias: IPAlias,
    action: str,
    said: str,
) -> None:
    settings.DEMO_MODE = True
    supervisor = statekeys.sync_client(settings.REDIS_URL)
    pubsub = supervisor.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(statekeys.DEMO_CONTROL_CHANNEL)
    pubsub.get_message(timeout=1)  # the subscribe confirmation: subscribed from here on
    try:
        response = alice_client.post(
            f"/system/cluster/nodes/node2/{action}", headers={"Accept": "application/json"}
        )
        message = pubsub.get_message(timeout=2)
    finally:
        pubsub.close()
        supervisor.close()
    assert message is not None
    request = json.loads(message["data"])
    assert (request["action"], request["node"]) == (action, "node2")
    assert response.status_code == 200
    assert response.json()["done"] is True
    assert said in response.json()["message"]


def test_mail_actions_need_demo_mode_and_an_administrator(
    settings: Any, alice_client: Client, sam_client: Client, alias: IPAlias
) -> None:
    assert alice_client.post("/system/cluster/nodes/node1/mail-stop").status_code == 404
    settings.DEMO_MODE = True
    assert sam_client.post("/system/cluster/nodes/node1/mail-stop").status_code == 403
    assert alice_client.get("/system/cluster/nodes/node1/mail-start").status_code == 405
    assert alice_client.post("/system/cluster/nodes/node1/mail-restart").status_code == 404
