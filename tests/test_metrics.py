"""``/metrics`` (cluster/metrics.py): who may scrape it, and what it says.

A scrape is rendered in a thread of its own, which sees only committed rows:
these tests use the transactional database.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from cluster import live, metrics, services, statekeys
from cluster.carp.types import DemotionSource, State
from cluster.checks import CheckStatus
from cluster.models import IPAlias, Node, Transition
from tests.factories import alias_data

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus"
SCRAPE_TOKEN = "scrape-" + "k" * 40
THREE_TIERS = [
    {"node": "node1", "priority": "primary"},
    {"node": "node2", "priority": "secondary"},
    {"node": "node3", "priority": "backup"},
]


@pytest.fixture
def alias(alice: User, nodes: list[Node]) -> IPAlias:
    return services.create_alias(alice, alias_data(1, priorities=THREE_TIERS))


@pytest.fixture
def scrape_token(settings: Any) -> str:
    settings.METRICS_BEARER_TOKEN = SCRAPE_TOKEN
    return SCRAPE_TOKEN


def scrape(**headers: Any) -> Any:
    return Client().get("/metrics", **headers)


def token_of(user: User) -> str:
    return f"Token {services.grant_token(None, user)}"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


# ---- who may scrape --------------------------------------------------------------------
def test_a_scrape_without_credentials_is_refused_with_401(scrape_token, engines):
    answer = scrape()
    assert answer.status_code == 401
    assert answer["WWW-Authenticate"].startswith("Bearer")
    assert b"carp_" not in answer.content


def test_a_wrong_bearer_token_is_refused_with_401(scrape_token, engines):
    assert scrape(HTTP_AUTHORIZATION="Bearer " + SCRAPE_TOKEN[:-1] + "x").status_code == 401


def test_no_bearer_token_is_accepted_when_none_is_configured(settings, engines):
    settings.METRICS_BEARER_TOKEN = ""
    assert scrape(HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_the_scrape_bearer_token_is_accepted(scrape_token, engines, alias):
    answer = scrape(HTTP_AUTHORIZATION=f"Bearer {SCRAPE_TOKEN}")
    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b"carp_vip_is_master" in answer.content


@pytest.mark.parametrize("who", ["alice", "sam"])
def test_api_tokens_of_administrators_and_support_are_accepted(request, engines, alias, who):
    user = request.getfixturevalue(who)
    assert scrape(HTTP_AUTHORIZATION=token_of(user)).status_code == 200


def test_an_api_token_of_a_user_without_a_role_is_refused_with_403(charlie, engines):
    assert scrape(HTTP_AUTHORIZATION=token_of(charlie)).status_code == 403


def test_an_unknown_api_token_is_refused_with_401(engines):
    assert scrape(HTTP_AUTHORIZATION="Token " + "0" * 64).status_code == 401


def test_a_logged_in_session_alone_is_not_enough(alice, engines):
    client = Client()
    client.force_login(alice)
    assert client.get("/metrics").status_code == 401


# ---- what it says ----------------------------------------------------------------------
def test_the_metrics_name_each_cell_its_state_master_and_advskews(scrape_token, engines, alias):
    engines.report("node1", {1: "MASTER"})
    engines.report("node2", {1: "BACKUP"})
    engines.beat("node2", demotion=[DemotionSource("maintenance", 240, "maintenance")])
    engines.overwrite("node1", 1, advskew="0", adverts_sent="17", adverts_received="2")
    engines.overwrite("node2", 1, advskew="255", adverts_sent="1", adverts_received="30")
    # node3 is not reporting.
    found = samples(scrape(HTTP_AUTHORIZATION=f"Bearer {SCRAPE_TOKEN}").content.decode())
    vip = {"vhid": "1", "interface": "eth0"}
    assert value(found, "carp_vip_is_master", **vip, node="node1") == 1
    assert value(found, "carp_vip_is_master", **vip, node="node2") == 0
    assert value(found, "carp_vip_state", **vip, node="node1", state="MASTER") == 1
    assert value(found, "carp_vip_state", **vip, node="node2", state="BACKUP") == 1
    assert value(found, "carp_vip_state", **vip, node="node3", state=live.NOT_REPORTING) == 1
    assert value(found, "carp_vip_advskew_configured", **vip, node="node2") == 26
    assert value(found, "carp_vip_advskew_effective", **vip, node="node2") == 255
    assert value(found, "carp_vip_masters", **vip) == 1
    assert value(found, "carp_vip_expected_owner_is_master", **vip) == 1
    assert value(found, "carp_adverts_sent_total", **vip, node="node1") == 17
    assert value(found, "carp_adverts_received_total", **vip, node="node2") == 30
    assert value(found, "carp_node_up", node="node1") == 1
    assert value(found, "carp_node_up", node="node3") == 0
    assert value(found, "carp_node_demotion", node="node2", source="maintenance") == 240
    assert value(found, "carp_alerts", kind=live.NODE_NOT_REPORTING) == 1
    assert value(found, "carp_live_state_available") == 1


def test_transitions_are_counted_by_node_state_and_reason(scrape_token, engines, nodes):
    node1, node2 = nodes[0], nodes[1]
    now = timezone.now()
    Transition.objects.create(node=node1, vhid=1, from_state="BACKUP", to_state="MASTER",
                              reason="master_down", at=now)  # fmt: skip
    Transition.objects.create(node=node1, vhid=2, from_state="BACKUP", to_state="MASTER",
                              reason="master_down", at=now)  # fmt: skip
    Transition.objects.create(node=node2, vhid=1, from_state="MASTER", to_state="BACKUP",
                              reason="preempted", at=now)  # fmt: skip
    found = samples(scrape(HTTP_AUTHORIZATION=f"Bearer {SCRAPE_TOKEN}").content.decode())
    counted = {"node": "node1", "to_state": "MASTER", "reason": "master_down"}
    assert value(found, "carp_transitions_total", **counted) == 2
    counted = {"node": "node2", "to_state": "BACKUP", "reason": "preempted"}
    assert value(found, "carp_transitions_total", **counted) == 1


def test_a_takeover_with_its_silence_lands_in_the_failover_histogram(scrape_token, engines):
    def observed(found: dict[Any, float], bucket: str) -> float:
        labels = {"reason": "master_down", "le": bucket}
        return value(found, "carp_failover_duration_seconds_bucket", **labels) or 0.0

    before = samples(scrape(HTTP_AUTHORIZATION=f"Bearer {SCRAPE_TOKEN}").content.decode())
    takeover = statekeys.TransitionMessage(
        "node2", "eth0", 1, State.BACKUP, State.MASTER, "master_down", time.time(), silence=3.3
    )
    metrics.observe_message(takeover)
    # A transition without a silence (a start-up) is no failover.
    metrics.observe_message(statekeys.TransitionMessage(
        "node2", "eth0", 1, State.INIT, State.BACKUP, "startup", time.time()))  # fmt: skip
    after = samples(scrape(HTTP_AUTHORIZATION=f"Bearer {SCRAPE_TOKEN}").content.decode())
    assert observed(after, "3.0") == observed(before, "3.0")
    assert observed(after, "3.5") == observed(before, "3.5") + 1
    assert observed(after, "+Inf") == observed(before, "+Inf") + 1


def test_the_checks_a_heartbeat_reports_are_exported(engines):
    # Heartbeat.checks comes with the health-check issue; a heartbeat that has it.
    @dataclass(frozen=True)
    class CheckingHeartbeat(statekeys.Heartbeat):
        checks: tuple[CheckStatus, ...] = ()

    beat = CheckingHeartbeat(
        node="node1",
        at=time.time(),
        drops={"bad_hmac": 3},
        checks=(
            CheckStatus("smtp", "tcp", passing=False, demotion=240),
            CheckStatus("disk", "disk", passing=True),
            CheckStatus("web", "http"),  # no result yet
        ),
    )
    snapshot = metrics.Counters({"node1": beat}, {})
    text = "".join(family.text() for family in metrics._counter_metrics(snapshot))
    found = samples(text)
    check = {"node": "node1", "kind": "tcp", "check": "smtp"}
    assert value(found, "carp_check_passing", **check) == 0
    assert value(found, "carp_check_demotion", **check) == 240
    assert value(found, "carp_check_passing", node="node1", check="disk", kind="disk") == 1
    assert value(found, "carp_check_passing", node="node1", check="web", kind="http") is None
    assert value(found, "carp_adverts_dropped_total", node="node1", reason="bad_hmac") == 3


def test_label_values_are_escaped_as_the_text_format_asks():
    family = metrics.gauge("carp_test", "A test.")
    family.add(metrics.labels(node='a"b\\c\nd'), 1)
    assert list(samples(family.text())) == [("carp_test", frozenset({("node", 'a"b\\c\nd')}))]


def test_without_redis_the_scrape_says_the_live_state_is_unavailable(scrape_token, settings, alias):
    settings.REDIS_URL = "redis+socket:///nonexistent/redis.sock"
    answer = scrape(HTTP_AUTHORIZATION=f"Bearer {SCRAPE_TOKEN}")
    assert answer.status_code == 200
    assert value(samples(answer.content.decode()), "carp_live_state_available") == 0


# ---- the example alert rules -------------------------------------------------------------
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian package prometheus)"
)


@needs_promtool
def test_the_example_alert_rules_pass_promtool_check_rules():
    result = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(RULES / "alerts.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_the_example_alerts_fire_in_promtools_rule_tests():
    result = subprocess.run(
        [str(PROMTOOL), "test", "rules", "alerts.test.yml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=RULES,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_metric_the_alert_rules_use_is_one_the_console_exports(scrape_token, engines, alias):
    engines.report("node1", {1: "MASTER"})
    engines.beat("node1")
    exported = {
        family.name
        for family in text_string_to_metric_families(
            scrape(HTTP_AUTHORIZATION=f"Bearer {SCRAPE_TOKEN}").content.decode()
        )
    }
    # The families' names: counters and histograms without their suffixes.
    exported |= {f"{name}_total" for name in exported} | {f"{name}_bucket" for name in exported}
    rules = (RULES / "alerts.yml").read_text()
    used = set(re.findall(r"\b(carp_[a-z_]+)", rules))
    assert used
    assert used <= exported, used - exported
