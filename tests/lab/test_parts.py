"""The lab's parts that need no namespace: the root check, the mail service
(aiosmtpd) on loopback, the supervisor's actions on a lab with stand-in
processes, the state file's guard and ``demo_setup --nodes``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import Any, TypeVar

import pytest
from django.core.management import call_command

from cluster import services
from cluster.lab import lab as lab_module
from cluster.lab import procs, smtp
from cluster.lab.lab import REPO, Lab, process_start_time
from cluster.lab.supervisor import Supervisor, clean_stale, send_control, state_path
from cluster.models import HealthCheck, IPAlias, Node

T = TypeVar("T")


def test_the_demo_says_plainly_that_it_needs_root_and_why(tmp_path):
    argv = [sys.executable, "-m", "cluster.lab", "--var-dir", str(tmp_path), "demo"]
    if os.geteuid() == 0:  # drop to an unprivileged user, as a developer would run it
        argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "python -m cluster.lab demo needs root" in done.stderr
    for reason in ("network namespaces", "raw sockets", "netlink"):
        assert reason in done.stderr
    assert not list(tmp_path.iterdir())  # it refused before doing anything


def with_mail_service(node: str, record_dir: Path | None, client: Callable[[int], T]) -> T:
    """Run the real mail service (aiosmtpd) on 127.0.0.1 and ``client(port)`` in a
    thread against it; the client's result."""

    async def run() -> T:
        server = await smtp.start(node, "127.0.0.1", 0, record_dir)
        async with server:
            port = server.sockets[0].getsockname()[1]
            return await asyncio.to_thread(client, port)

    return asyncio.run(run())


def test_the_mail_service_greets_with_the_nodes_name_and_answers_ehlo():
    def dialogue(port: int) -> tuple[str, tuple[int, bytes]]:
        banner = smtp.read_banner("127.0.0.1", port)
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            return banner, client.ehlo("checker.example")

    banner, (code, ehlo) = with_mail_service("node3", None, dialogue)
    assert banner == "220 node3 ESMTP demo mail service (node3 answers)" == smtp.banner_for("node3")
    assert code == 250
    assert ehlo.splitlines()[0] == b"node3"


def test_the_mail_service_records_which_node_accepted_each_message_before_saying_250(tmp_path):
    def send_two(port: int) -> list[smtp.Sent]:
        sent = [smtp.send_message("127.0.0.1", f"<m{i}@bench.example>", port) for i in (1, 2)]
        # Read as soon as the client has its 250: the record must already be there.
        assert [r["message_id"] for r in smtp.read_records(tmp_path)] == [
            "<m1@bench.example>",
            "<m2@bench.example>",
        ]
        return sent

    sent = with_mail_service("node2", tmp_path, send_two)
    assert [(s.code, s.banner) for s in sent] == [(250, smtp.banner_for("node2"))] * 2
    assert "node2" in sent[0].reply
    records = smtp.read_records(tmp_path)
    assert [r["node"] for r in records] == ["node2", "node2"]
    assert records[0]["rcpt_tos"] == ["postmaster@example.org"]
    assert records[0]["mail_from"] == "client@example.com"
    assert (tmp_path / "node2.jsonl").exists()


def test_a_record_line_cut_short_by_a_kill_is_skipped_and_the_others_read(tmp_path):
    (tmp_path / "node1.jsonl").write_text('{"node": "node1", "message_id": "<a>"}\n{"node": "no')
    (tmp_path / "node2.jsonl").write_text('{"node": "node2", "message_id": "<b>"}\n')
    assert [(r["node"], r["message_id"]) for r in smtp.read_records(tmp_path)] == [
        ("node1", "<a>"),
        ("node2", "<b>"),
    ]


def test_sending_to_a_stopped_mail_service_is_refused(tmp_path):
    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    with pytest.raises(ConnectionRefusedError):
        smtp.send_message("127.0.0.1", "<x@y>", free_port(), timeout=2)


def test_clean_stale_refuses_while_the_demo_runs(tmp_path):
    path = state_path(tmp_path)
    path.parent.mkdir(parents=True)
    me = os.getpid()
    path.write_text(f'{{"pid": {me}, "started": {process_start_time(me)}, "processes": {{}}}}')
    with pytest.raises(SystemExit, match="already running"):
        clean_stale(tmp_path, f"ct{me}none-")
    assert path.exists()


def test_fail_says_plainly_when_the_demos_redis_is_down(tmp_path):
    # `make demo-fail` while Redis is stopped: a sentence, not a traceback.
    path = state_path(tmp_path)
    path.parent.mkdir(parents=True)
    me = os.getpid()
    state: dict[str, Any] = {"pid": me, "started": process_start_time(me), "nodes": {"node1": "up"}}
    state["redis_url"] = f"redis+socket://{tmp_path}/gone.sock"
    path.write_text(json.dumps(state))
    with pytest.raises(SystemExit, match=r"Nothing was done to node1: the demo's Redis .* cannot"):
        send_control(tmp_path, "fail", "node1", timeout=1)


def test_a_labs_names_and_environment(tmp_path):
    lab = Lab(tmp_path / "w", nodes=3, migrate=False)
    assert lab.var_dir == Path(tmp_path / "w" / "var").resolve()
    assert lab.node_names == ["node1", "node2", "node3"]
    assert lab.ns("node3") == f"{lab.prefix}n3"
    assert lab.env["REDIS_URL"] == f"redis+socket://{lab.workdir}/redis.sock"
    assert lab.env["VAR_DIR"] == str(lab.var_dir)
    assert "DATABASE_URL" not in lab.env
    with pytest.raises(KeyError):
        lab.index("node4")
    with pytest.raises(ValueError, match="1 to 9"):
        Lab(tmp_path, nodes=10)


def tiers() -> dict[int, dict[str, str]]:
    return {
        alias.vhid: {p.node.name: p.priority for p in alias.priorities.all()}
        for alias in IPAlias.objects.all()
    }


def test_demo_setup_nodes_makes_every_further_node_a_backup(db, tmp_path):
    call_command("demo_setup", var_dir=str(tmp_path), nodes=5, stdout=StringIO())
    assert [(n.name, n.address) for n in Node.objects.order_by("ordinal")] == [
        (f"node{i}", f"192.0.2.{10 + i}") for i in range(1, 6)
    ]
    backups = {f"node{i}": "backup" for i in (3, 4, 5)}
    assert tiers() == {
        1: {"node1": "primary", "node2": "secondary", **backups},
        2: {"node2": "primary", "node1": "secondary", **backups},
    }


def test_demo_setup_with_one_node_makes_it_primary_of_both(db, tmp_path):
    out = StringIO()
    call_command("demo_setup", var_dir=str(tmp_path), nodes=1, stdout=out)
    assert "created 1 node(s) and 2 aliases" in out.getvalue()
    assert tiers() == {1: {"node1": "primary"}, 2: {"node1": "primary"}}


def test_a_reaped_process_is_never_signalled_again(tmp_path, monkeypatch):
    # stop_all() signals, reaps, then SIGKILLs "those left": a pid already reaped
    # may belong to another process by then, which must not be hit.
    processes = procs.Processes(tmp_path)
    proc = processes.spawn(["sleep", "30"], tmp_path / "sleep.log")
    sent: list[tuple[int, int]] = []
    kill = os.kill

    def recording_kill(pid: int, sig: int) -> None:
        sent.append((pid, sig))
        kill(pid, sig)

    monkeypatch.setattr(os, "kill", recording_kill)
    processes.stop_all([proc], signal.SIGTERM, timeout=5)
    assert proc.returncode == -signal.SIGTERM
    assert sent == [(proc.pid, signal.SIGTERM)]
    processes.send(proc, signal.SIGKILL)
    assert sent == [(proc.pid, signal.SIGTERM)]


def test_the_state_file_lists_only_processes_not_yet_reaped(tmp_path, monkeypatch):
    lab = Lab(tmp_path / "w", nodes=1, redis_url="redis+socket:///nowhere.sock")
    done = lab.processes.spawn(["true"], tmp_path / "true.log")
    done.wait()
    alive = lab.processes.spawn(["sleep", "30"], tmp_path / "sleep.log")
    try:
        # Its pid reused by some other process: the start time read is that process's.
        monkeypatch.setattr(lab_module, "process_start_time", lambda pid: 12345)
        assert lab.pids() == {alive.pid: 12345}
    finally:
        lab.processes.close()


def test_restore_starts_again_a_worker_that_exited(tmp_path, monkeypatch):
    # A restore whose worker did not start leaves its exited process in the table;
    # the next restore (queued before the supervisor's watch noticed) must start
    # it again, not report the node restored with no worker.
    lab = Lab(tmp_path / "w", nodes=1, redis_url="redis+socket:///nowhere.sock")
    lab.workers["node1"] = dead = lab.processes.spawn(["true"], tmp_path / "true.log")
    dead.wait()
    lab.smtp["node1"] = alive = lab.processes.spawn(["sleep", "30"], tmp_path / "sleep.log")
    started: list[str] = []
    monkeypatch.setattr(lab.lan, "set_link", lambda index, up: None)
    monkeypatch.setattr(lab, "start_smtp", lambda node, wait=True: started.append("smtp"))
    monkeypatch.setattr(lab, "start_worker", lambda node, wait=True: started.append("worker"))
    supervisor = Supervisor(lab, tmp_path)
    monkeypatch.setattr(supervisor, "write_state", lambda: None)
    try:
        supervisor.handle({"action": "restore", "node": "node1"})
        assert started == ["worker"]
        assert alive.poll() is None
    finally:
        lab.processes.close()


def lab_with_sleepers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Lab, list[str]]:
    """A one-node lab, not built, whose worker and mail service are ``sleep``
    processes; starting either spawns another and is recorded."""
    lab = Lab(tmp_path / "w", nodes=1, redis_url="redis+socket:///nowhere.sock")
    started: list[str] = []

    def sleeper(table: dict[str, procs.Proc], what: str) -> Callable[..., procs.Proc]:
        def start(node: str, wait: bool = True) -> procs.Proc:
            started.append(what)
            table[node] = lab.processes.spawn(["sleep", "30"], tmp_path / f"{what}.log")
            return table[node]

        return start

    monkeypatch.setattr(lab.lan, "set_link", lambda index, up: None)
    monkeypatch.setattr(lab, "start_smtp", sleeper(lab.smtp, "smtp"))
    monkeypatch.setattr(lab, "start_worker", sleeper(lab.workers, "worker"))
    lab.start_worker("node1")
    lab.start_smtp("node1")
    started.clear()
    state_path(tmp_path).parent.mkdir(parents=True)
    return lab, started


def test_mail_stop_kills_only_the_mail_service_and_mail_start_starts_it_again(
    tmp_path, monkeypatch
):
    lab, started = lab_with_sleepers(tmp_path, monkeypatch)
    supervisor = Supervisor(lab, tmp_path)
    worker, mail = lab.workers["node1"], lab.smtp["node1"]
    try:
        supervisor.handle({"action": "mail-stop", "node": "node1", "at": 1.0})
        assert mail.returncode == -signal.SIGKILL
        assert worker.poll() is None  # the box and its worker stay up
        state = json.loads(state_path(tmp_path).read_text())
        assert state["nodes"] == {"node1": "up"}
        assert state["mail"] == {"node1": "stopped"}
        assert state["last_request"]["action"] == "mail-stop"
        assert "node1's mail service is stopped" in state["last_request"]["result"]

        supervisor.handle({"action": "mail-start", "node": "node1", "at": 2.0})
        assert started == ["smtp"]
        assert lab.smtp["node1"].poll() is None
        state = json.loads(state_path(tmp_path).read_text())
        assert state["mail"] == {"node1": "up"}
        assert state["last_request"]["result"] == "node1's mail service is running"

        supervisor.handle({"action": "mail-start", "node": "node1", "at": 3.0})
        assert started == ["smtp"]  # already running: not a second one
    finally:
        lab.processes.close()


def test_restore_starts_a_dead_mail_service_instead_of_saying_nothing_to_do(tmp_path, monkeypatch):
    lab, started = lab_with_sleepers(tmp_path, monkeypatch)
    supervisor = Supervisor(lab, tmp_path)
    try:
        supervisor.handle({"action": "mail-stop", "node": "node1"})
        supervisor.handle({"action": "restore", "node": "node1"})
        assert started == ["smtp"]
        assert lab.smtp["node1"].poll() is None
        result = json.loads(state_path(tmp_path).read_text())["last_request"]["result"]
        assert result == "node1 is up"
        supervisor.handle({"action": "restore", "node": "node1"})
        assert started == ["smtp"]
        result = json.loads(state_path(tmp_path).read_text())["last_request"]["result"]
        assert result == "node1 is up, its mail service too: nothing to do"
    finally:
        lab.processes.close()


def test_mail_start_on_a_failed_box_does_nothing_and_says_to_restore_it(tmp_path, monkeypatch):
    lab, started = lab_with_sleepers(tmp_path, monkeypatch)
    monkeypatch.setattr(lab, "_vip_interfaces", lambda index: [])
    supervisor = Supervisor(lab, tmp_path)
    try:
        supervisor.handle({"action": "fail", "node": "node1"})
        supervisor.handle({"action": "mail-start", "node": "node1"})
        assert started == []
        state = json.loads(state_path(tmp_path).read_text())
        assert state["nodes"] == {"node1": "failed"}
        assert state["mail"] == {"node1": "stopped"}
        assert "make demo-restore NODE=node1 first" in state["last_request"]["result"]
    finally:
        lab.processes.close()


def test_the_command_line_offers_every_action_the_supervisor_carries_out():
    from cluster.lab import __main__ as cli
    from cluster.lab import supervisor

    assert cli.ACTIONS == supervisor.ACTIONS


def test_demo_setup_gives_every_node_an_smtp_check_on_port_25_once(db, tmp_path):
    out = StringIO()
    call_command("demo_setup", var_dir=str(tmp_path), nodes=3, stdout=out)
    assert "health check smtp-25 (smtp, port 25) on every node" in out.getvalue()
    check = HealthCheck.objects.get()
    assert (check.name, check.kind, check.port, check.scope, check.enabled) == (
        "smtp-25",
        "smtp",
        25,
        "all",
        True,
    )
    for node in ("node1", "node2", "node3"):
        specs = services.desired_node(node).checks
        assert [(c.name, c.kind, c.port) for c in specs] == [("smtp-25", "smtp", 25)]
    call_command("demo_setup", var_dir=str(tmp_path), nodes=3, stdout=StringIO())
    assert HealthCheck.objects.count() == 1
