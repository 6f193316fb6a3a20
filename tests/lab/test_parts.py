"""The lab's parts that need no namespace: the root check, the stand-in mail
service's dialogue, the state file's guard and ``demo_setup --nodes``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from cluster.lab import lab as lab_module
from cluster.lab import procs, smtp
from cluster.lab.lab import REPO, Lab, process_start_time
from cluster.lab.supervisor import Supervisor, clean_stale, send_control, state_path
from cluster.models import IPAlias, Node


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


@pytest.mark.parametrize(
    ("line", "answer", "closes"),
    [
        ("EHLO client.example\r\n", "250 node2", False),
        ("helo x\r\n", "250 node2", False),
        ("NOOP\r\n", "250 OK", False),
        ("MAIL FROM:<a@b.example>\r\n", "502 command not implemented", False),
        ("QUIT\r\n", "221 node2 closing", True),
    ],
)
def test_the_mail_stand_in_speaks_just_enough_smtp(line, answer, closes):
    assert smtp.reply("node2", line) == (answer, closes)


def test_the_mail_stand_in_greets_with_the_nodes_name():
    async def dialogue() -> list[bytes]:
        server = await asyncio.start_server(
            lambda r, w: smtp._session("node3", r, w), "127.0.0.1", 0
        )
        async with server:
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
            writer.write(b"EHLO me\r\nRCPT TO:<x@y.example>\r\nQUIT\r\n")
            # Read to the end: the session has closed its side, so no task is left pending.
            lines = (await reader.read()).splitlines()
            writer.close()
            return lines

    assert asyncio.run(dialogue()) == [
        b"220 node3 ESMTP demo stand-in (node3 answers)",
        b"250 node3",
        b"502 command not implemented",
        b"221 node3 closing",
    ]


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
