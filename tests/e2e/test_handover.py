"""One handover, one holder, on the demo cluster with five nodes (root, namespaces).

Each test makes an alias with a Primary, a Secondary and three Backups through
the REST API, then changes the control plane (maintenance on a node, the alias
disabled) and watches every node's address events (tests/addrwatch.py): who
added the VIP, who removed it, how many held it at once. What counts is the
order of things, not their speed (figures belong to the benchmarks).

The lab is this module's own (five nodes; tests/e2e/conftest.py starts three),
built once for its tests; the ``console`` fixture deletes the aliases after
each test, and each test takes its node out of maintenance again.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from cluster.lab.lan import wait_until
from tests.addrwatch import AddressWatch
from tests.e2e.console import Console, alias_body, cell, checked_cluster, vip

pytestmark = pytest.mark.netns

NODES = [f"node{i}" for i in range(1, 6)]
ELECTION = 20.0  # wait for an outcome this long at most: a bound for a busy machine, not a figure
SETTLE = 2.0  # seconds the outcome must hold: a late contender would show by then


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """Five nodes instead of conftest's three, torn down and checked the same way."""
    with checked_cluster(tmp_path_factory.mktemp("handover"), nodes=len(NODES)) as console:
        yield console


def watch(console: Console) -> AddressWatch:
    return AddressWatch({node: console.lab.ns(node) for node in NODES})


def node_id(console: Console, node: str) -> int:
    answer = console.call("GET", f"/api/v1/nodes/?name={node}")
    rows = answer["results"] if isinstance(answer, dict) else answer
    return int(next(row["id"] for row in rows if row["name"] == node))


@contextmanager
def maintenance(console: Console, node: str) -> Iterator[None]:
    """``node`` in maintenance (PATCH through the API) until the block ends."""
    ident = node_id(console, node)
    console.call("PATCH", f"/api/v1/nodes/{ident}/", {"maintenance": True})
    try:
        yield
    finally:
        console.call("PATCH", f"/api/v1/nodes/{ident}/", {"maintenance": False})


@contextmanager
def paused(console: Console, nodes: list[str]) -> Iterator[None]:
    """The workers of ``nodes`` stopped (SIGSTOP, by pid) until the block ends: their
    engines read nothing and their queues hold the apply tasks meanwhile."""
    pids = [console.lab.workers[node].pid for node in nodes]
    stopped: list[int] = []
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        yield
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)


def settled(console: Console, alias: dict[str, Any], master: str) -> None:
    """``master`` alone holds the alias's VIP and the status shows every other member
    in BACKUP: each engine runs the alias, so each could contend for it."""
    console.lab.wait_holder(vip(alias), master, ELECTION)

    def all_running() -> bool:
        status = console.status()
        states = {node: cell(status, alias["vhid"], node)["state"] for node in NODES}
        return states == {node: "MASTER" if node == master else "BACKUP" for node in NODES}

    wait_until(all_running, ELECTION, what=f"{master} MASTER and the others BACKUP")


def steady(console: Console, address: str, holders: list[str], seconds: float = SETTLE) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert console.lab.holders(address) == holders
        time.sleep(0.1)


def advskews(alias: dict[str, Any]) -> dict[str, int]:
    return {p["node"]: int(p["advskew"]) for p in alias["priorities"]}


def test_maintenance_on_the_master_hands_the_vip_to_the_secondary_alone(console):
    alias = console.create_alias(alias_body(20, ["192.0.2.120/24"], "node1", "node2", NODES))
    address = vip(alias)
    settled(console, alias, "node1")
    with watch(console) as events:
        since = time.time()
        with maintenance(console, "node1"):
            console.lab.wait_holder(address, "node2", ELECTION)
            steady(console, address, ["node2"])
            timeline = events.timeline(address, since)
            # The three Backups are better than a node in maintenance too (advskew
            # 240), but only the Secondary, the best of them, may take over.
            assert events.adders(address, since) == {"node2"}, timeline
            assert events.removers(address, since) == {"node1"}, timeline
            assert events.most_holders(address, ["node1"], since) <= 2, timeline
        # Out of maintenance, the Primary preempts the Secondary again.
        console.lab.wait_holder(address, "node1", ELECTION)


def test_maintenance_with_preemption_off_still_hands_the_vip_over(console):
    body = alias_body(21, ["192.0.2.121/24"], "node3", "node4", NODES)
    alias = console.create_alias({**body, "preempt": False})
    address = vip(alias)
    # Without preemption the first node to time out keeps the VIP: whoever that is.
    wait_until(lambda: len(console.lab.holders(address)) == 1, ELECTION, what="one holder")
    master = console.lab.holders(address)[0]
    settled(console, alias, master)
    skews = advskews(alias)
    successor = min((n for n in NODES if n != master), key=skews.__getitem__)
    with watch(console) as events:
        since = time.time()
        with maintenance(console, master):
            # A demoted master asks to be replaced (OpenBSD's demote byte): the best
            # other node takes over although no one may preempt.
            console.lab.wait_holder(address, successor, ELECTION)
            steady(console, address, [successor])
            timeline = events.timeline(address, since)
            assert events.adders(address, since) == {successor}, timeline
            assert events.removers(address, since) == {master}, timeline
            assert events.most_holders(address, [master], since) <= 2, timeline
        # Preemption is off: leaving maintenance does not take the VIP back.
        steady(console, address, [successor])


def test_disabling_an_alias_removes_the_vip_and_no_backup_takes_it(console):
    alias = console.create_alias(alias_body(22, ["192.0.2.122/24"], "node1", "node2", NODES))
    address = vip(alias)
    settled(console, alias, "node1")
    backups = NODES[1:]
    with watch(console) as events:
        since = time.time()
        # The Backups get the change after the Primary (their workers busy for a
        # moment, here paused): whatever the Primary sends on its way out reaches
        # engines that still run the alias. It must not make them take over.
        with paused(console, backups):
            console.update_alias(alias["id"], {"enabled": False})
            wait_until(lambda: not console.lab.holders(address), ELECTION, what="VIP removed")
            time.sleep(0.2)  # anything the Primary sent waits in the Backups' sockets
        # Longer than a master-down interval: a Backup still running the alias
        # would time out and take it now.
        steady(console, address, [], 3 + 182 / 256 + SETTLE)
        timeline = events.timeline(address, since)
        # Disabled everywhere: each engine stops the alias without a bow-out, so
        # no Backup takes over.
        assert events.adders(address, since) == set(), timeline
        assert events.removers(address, since) == {"node1"}, timeline
