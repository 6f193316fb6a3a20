"""The whole path on the demo cluster (root, network namespaces): REST API ->
database -> apply task through Redis -> the engine in each node's Celery worker
-> VIPs and adverts on the wire -> live state in Redis -> the status API.

One lab serves the module (tests/e2e/conftest.py); every test makes its own
aliases (VHIDs 10 to 15, 192.0.2.110 and up) and the ``console`` fixture
deletes them and restores the nodes afterwards.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cluster.carp import wire
from cluster.carp.types import Advertisement
from cluster.lab.lab import Lab
from cluster.lab.lan import in_netns, node_ip, wait_until
from tests.carp.netns import ETH_P_ALL, Capture
from tests.e2e.console import (
    Console,
    alias_body,
    cell,
    heartbeat,
    node_in,
    takeover_bound,
    vip,
)

pytestmark = pytest.mark.netns

NODES = ["node1", "node2", "node3"]
REDIS_OUTAGE = 30.0  # seconds, as the issue asks


def create_held(console: Console, vhid: int, primary: str, secondary: str) -> dict[str, Any]:
    """An alias on 192.0.2.(100+vhid), waited for until its Primary alone holds it."""
    alias = console.create_alias(
        alias_body(vhid, [f"192.0.2.{100 + vhid}/24"], primary, secondary, NODES)
    )
    console.lab.wait_holder(vip(alias), primary, takeover_bound(alias) + 1)
    return alias


def test_an_alias_created_through_the_api_is_held_by_its_primary_in_time(console):
    body = alias_body(10, ["192.0.2.110/24"], "node3", "node1", NODES)
    alias = console.create_alias(body)
    answered = time.monotonic()
    bound = takeover_bound(alias) + 1  # the Secondary's master-down interval + 1 s

    console.lab.wait_holder("192.0.2.110", "node3", bound)
    took = time.monotonic() - answered
    assert took <= bound, f"held after {took:.2f} s, bound {bound:.2f} s"
    # The client reaches the Primary's mail service on the VIP.
    assert "node3 answers" in console.lab.smtp_banner("192.0.2.110")
    # And the live status says so.
    wait_until(
        lambda: cell(console.status(), 10, "node3")["state"] == "MASTER",
        5,
        what="the status to show node3 MASTER of VHID 10",
    )
    status = console.status()
    row = next(a for a in status["aliases"] if a["vhid"] == 10)
    assert row["masters"] == ["node3"]
    assert row["expected_owner"] == "node3"
    assert [cell(status, 10, n)["state"] for n in ("node1", "node2")] == ["BACKUP", "BACKUP"]


def test_changing_the_primary_through_the_api_moves_the_vip(console):
    alias = create_held(console, 11, "node1", "node2")
    changed = console.update_alias(
        alias["id"],
        {
            "priorities": [
                {"node": "node3", "priority": "primary"},
                {"node": "node1", "priority": "secondary"},
                {"node": "node2", "priority": "backup"},
            ]
        },
    )
    assert node_in(changed, "primary") == "node3"
    answered = time.monotonic()
    # node3 preempts when it hears node1 advertise its new, worse advskew: one
    # advert interval after the apply; the Secondary's master-down + 1 s is ample.
    console.lab.wait_holder("192.0.2.111", "node3", takeover_bound(changed) + 1)
    assert time.monotonic() - answered <= takeover_bound(changed) + 1

    def preempted() -> bool:
        rows = console.call("GET", "/api/v1/transitions/?vhid=11&node=node3")["results"]
        return any(r["to_state"].upper() == "MASTER" and r["reason"] == "preempted" for r in rows)

    wait_until(preempted, 10, interval=0.2, what="node3's transition to MASTER (preempted)")


@dataclass
class CheckedCapture(Capture):
    """The bridge's frames; the adverts of one VHID decoded and checked (HMAC
    included) with the engine's own codec."""

    vhid: int = 0
    password: bytes = b""
    addresses: tuple[wire.AddressLike, ...] = ()
    checked: list[tuple[float, str, Advertisement]] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)

    @classmethod
    def on(cls, lab: Lab, vhid: int, password: str, addresses: list[str]) -> CheckedCapture:
        def open_socket() -> socket.socket:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            sock.bind(("br0", 0))
            sock.setsockopt(socket.SOL_SOCKET, 35, 1)  # SO_TIMESTAMPNS
            return sock

        capture = cls(in_netns(lab.lan.bridge, open_socket), vhid=vhid,
                      password=password.encode(),
                      addresses=tuple(ipaddress.ip_interface(a) for a in addresses))  # fmt: skip
        capture.start()
        return capture

    def _advert(self, stamp: float, source: str, ttl: int, carp: bytes) -> None:
        if len(carp) < wire.HEADER_LEN or carp[1] != self.vhid:
            return
        try:
            wire.check_ttl(ttl)
            advert = wire.decode(carp, self.password, self.addresses)
        except wire.DecodeError as exc:
            with self.lock:
                self.invalid.append(f"{source}: {exc}")
            return
        with self.lock:
            self.checked.append((stamp, source, advert))

    def checked_since(self, since: float = 0.0) -> list[tuple[float, str, Advertisement]]:
        with self.lock:
            return [entry for entry in self.checked if entry[0] >= since]


def test_adding_an_address_to_one_alias_does_not_disturb_another_alias(console):
    lab = console.lab
    changed = create_held(console, 12, "node1", "node2")
    create_held(console, 13, "node2", "node3")
    other_master = node_ip(lab.index("node2"))
    # node2 holds the VIP once its engine has added it; the engine publishes the
    # transition to Redis afterwards, off its loop: the baseline is the published MASTER.
    wait_until(lambda: cell(console.status(), 13, "node2")["state"] == "MASTER", 10,
               interval=0.1, what="the status to show node2 MASTER of VHID 13")  # fmt: skip
    last_at = cell(console.status(), 13, "node2")["last_at"]
    capture = CheckedCapture.on(lab, 13, f"e2e-secret-{13}", ["192.0.2.113/24"])
    try:
        wait_until(lambda: len(capture.checked_since()) >= 3 or capture.invalid, 10,
                   what="three adverts of VHID 13")  # fmt: skip
        assert not capture.invalid, capture.invalid
        versions = {node: (heartbeat(lab, node) or {}).get("config_version") for node in NODES}

        console.update_alias(
            changed["id"],
            {"addresses": ["192.0.2.112/24", "192.0.2.114/24"]},
        )
        # Every node has applied the change (each one's configuration version
        # moved), and the master of VHID 12 carries the new address.
        wait_until(
            lambda: all(
                (heartbeat(lab, node) or {}).get("config_version") not in (None, versions[node])
                for node in NODES
            ),
            10,
            what="every node to apply the change",
        )
        applied = time.time()
        lab.wait_holder("192.0.2.114", "node1", 5)
        # Three more adverts of VHID 13 after the last node applied it.
        wait_until(
            lambda: len(capture.checked_since(applied)) >= 3, 10, what="adverts after the change"
        )
    finally:
        capture.close()

    adverts = capture.checked_since()
    assert not capture.invalid, capture.invalid
    assert {source for _, source, _ in adverts} == {other_master}, "VHID 13's master changed"
    interval = adverts[0][2].interval
    gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(adverts)]
    assert max(gaps) <= 1.5 * interval, f"a gap of {max(gaps):.3f} s in VHID 13's adverts"
    assert adverts[0][0] < applied - 2 * interval, "the capture did not cover the change"
    status = console.status()
    assert cell(status, 13, "node2")["state"] == "MASTER"
    assert cell(status, 13, "node2")["last_at"] == last_at, "VHID 13 had a transition"
    assert lab.holders("192.0.2.113") == ["node2"]


def test_with_redis_down_the_vip_moves_and_the_status_catches_up_afterwards(console):
    lab = console.lab
    alias = create_held(console, 14, "node3", "node1")
    lab.stop_redis()
    stopped = time.monotonic()
    lab.fail_node("node3")  # its worker SIGKILLed, its link down

    lab.wait_holder("192.0.2.114", "node1", takeover_bound(alias) + 1)
    # node1 keeps it for the rest of the outage (no flapping while Redis is away).
    while time.monotonic() - stopped < REDIS_OUTAGE:
        assert lab.holders("192.0.2.114") == ["node1"]
        time.sleep(0.25)
    lab.start_redis()

    def caught_up() -> bool:
        status = console.status()
        return (
            status["available"]
            and cell(status, 14, "node1")["state"] == "MASTER"
            and cell(status, 14, "node3")["state"] == "not reporting"
            and next(a for a in status["aliases"] if a["vhid"] == 14)["masters"] == ["node1"]
            and not next(n for n in status["nodes"] if n["name"] == "node3")["reporting"]
            # every live node has republished since Redis came back
            and all(n["reporting"] for n in status["nodes"] if n["name"] != "node3")
        )

    wait_until(caught_up, 10, interval=0.2, what="the status to show node1 MASTER, node3 silent")
    status = console.status()
    assert [a["node"] for a in status["alerts"] if a["kind"] == "not_reporting"] == ["node3"]
    assert all(n["reporting"] for n in status["nodes"] if n["name"] != "node3")


def test_a_worker_started_while_the_database_is_down_serves_its_local_configuration(console):
    # The lab's database is SQLite; tests/node/test_engine.py has the same start
    # without namespaces, run on SQLite and PostgreSQL alike.
    lab = console.lab
    create_held(console, 15, "node2", "node3")
    database = lab.var_dir / "appliance.sqlite3"
    away = database.with_name("appliance.sqlite3.away")
    lab.stop_worker("node2")  # bows out: node3 takes the VIP at once
    lab.wait_holder("192.0.2.115", "node3", 5)
    os.rename(database, away)
    database.mkdir()  # SQLite cannot open a directory: the database is unreachable
    try:
        worker = lab.start_worker("node2")

        def local() -> bool:
            beat = heartbeat(lab, "node2") or {}
            return beat.get("pid") == worker.pid and beat.get("config_source") == "local"

        wait_until(local, 10, interval=0.1, what="node2's heartbeat to say config_source local")
        lab.wait_holder("192.0.2.115", "node2", 5)  # preempts with its Primary skew
        assert "from the local" in log_of(lab, "node2")
    finally:
        database.rmdir()
        os.rename(away, database)
    # When the database is back, the engine reads it again.
    wait_until(
        lambda: (heartbeat(lab, "node2") or {}).get("config_source") == "database",
        10,
        interval=0.1,
        what="node2 to converge from the database again",
    )
    assert lab.holders("192.0.2.115") == ["node2"]


def log_of(lab: Lab, node: str) -> str:
    """This start's part of ``node``'s worker log."""
    text = Path(lab.log_dir / f"worker-{node}.log").read_text(errors="replace")
    return text[text.rfind("--- ") :]
