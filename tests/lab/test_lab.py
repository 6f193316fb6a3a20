"""The demo lab (cluster/lab): built and torn down in namespaces, as root.

Each test builds its own LAN with a unique prefix, so it never touches a
running ``make demo`` (prefix ``demo-``) nor another test run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from cluster.lab.lab import Lab, process_start_time
from cluster.lab.lan import in_netns, list_namespaces, sh
from cluster.lab.smtp import send_message
from cluster.lab.supervisor import Supervisor, clean_stale, send_control, state_path

pytestmark = pytest.mark.netns


def alive(pid: int) -> bool:
    return process_start_time(pid) is not None


def build_then_fail(tmp_path: Path, seen: dict[str, Any]) -> None:
    with Lab(tmp_path, nodes=2, migrate=False) as lab:
        lab.start_smtp("node1")
        lab.start_smtp("node2")
        seen.update(prefix=lab.prefix, pids=list(lab.pids()), namespaces=list_namespaces())
        seen["ours"] = {lab.ns("node1"), lab.ns("node2"), lab.client, lab.lan.bridge}
        raise RuntimeError("the test body failed")


def test_the_lab_leaves_no_namespace_nor_process_even_when_the_body_raises(tmp_path):
    seen: dict[str, Any] = {}
    with pytest.raises(RuntimeError, match="the test body failed"):
        build_then_fail(tmp_path, seen)
    assert len(seen["pids"]) == 3  # two mail services and the private Redis
    assert seen["ours"] <= set(seen["namespaces"])
    assert not [name for name in list_namespaces() if name.startswith(seen["prefix"])]
    assert not [pid for pid in seen["pids"] if alive(pid)]


def test_the_client_sees_each_nodes_banner(tmp_path):
    with Lab(tmp_path, nodes=2, migrate=False) as lab:
        for node in lab.node_names:
            lab.start_smtp(node)
        assert lab.smtp_banner("192.0.2.11") == "220 node1 ESMTP demo mail service (node1 answers)"
        assert lab.smtp_banner("192.0.2.12") == "220 node2 ESMTP demo mail service (node2 answers)"
        # A VIP on node2's eth0 is answered by node2's service, which listens on every address.
        sh("ip", "-n", lab.ns("node2"), "addr", "add", "192.0.2.101/24", "dev", "eth0")
        assert lab.addresses("node2") == {"192.0.2.101"}
        assert lab.holders("192.0.2.101") == ["node2"]
        assert "node2 answers" in lab.smtp_banner("192.0.2.101")


def test_fail_and_restore_through_the_control_channel(tmp_path):
    with Lab(tmp_path, nodes=2) as lab:
        for node in lab.node_names:
            lab.start_smtp(node)
            lab.start_worker(node, wait=False)
        for node in lab.node_names:
            lab.wait_worker_ready(node)
        # A VIP the engine would have added: a dead box must not keep it.
        sh("ip", "-n", lab.ns("node1"), "addr", "add", "192.0.2.101/24", "dev", "eth0")
        supervisor = Supervisor(lab, lab.var_dir)
        state_path(lab.var_dir).parent.mkdir(parents=True, exist_ok=True)
        supervisor.write_state()
        runner = threading.Thread(target=supervisor.run)
        runner.start()
        try:
            assert supervisor.listening.wait(timeout=10)
            worker, smtp = lab.workers["node1"].pid, lab.smtp["node1"].pid
            # What `make demo-fail NODE=node1` does: publish, wait for the state file.
            send_control(lab.var_dir, "fail", "node1", timeout=20)
            assert not alive(worker)
            assert not alive(smtp)
            assert lab.node_failed("node1")
            assert lab.addresses("node1") == set()
            with pytest.raises(TimeoutError):  # nobody answers: the link is down
                lab.smtp_banner("192.0.2.11", timeout=0.5)
            assert lab.workers["node2"].poll() is None  # the other node is untouched

            send_control(lab.var_dir, "restore", "node1", timeout=60)
            assert not lab.node_failed("node1")
            assert lab.workers["node1"].pid != worker
            assert lab.workers["node1"].poll() is None
            assert "node1 answers" in lab.smtp_banner("192.0.2.11")
            log = (lab.log_dir / "worker-node1.log").read_text()
            assert log.count(" ready.") == 2  # it started again, and said so
        finally:
            supervisor.stopping.set()
            runner.join(timeout=10)


def test_mail_stop_and_mail_start_through_the_control_channel(tmp_path):
    with Lab(tmp_path, nodes=1, migrate=False) as lab:
        lab.start_smtp("node1")
        supervisor = Supervisor(lab, lab.var_dir)
        state_path(lab.var_dir).parent.mkdir(parents=True, exist_ok=True)
        supervisor.write_state()
        runner = threading.Thread(target=supervisor.run)
        runner.start()
        try:
            assert supervisor.listening.wait(timeout=10)
            # The message a client sends is recorded with the node that accepted it.
            sent = in_netns(lab.client, lambda: send_message("192.0.2.11", "<one@test>"))
            assert sent.banner == "220 node1 ESMTP demo mail service (node1 answers)"
            assert [(r["node"], r["message_id"]) for r in lab.mail_received()] == [
                ("node1", "<one@test>")
            ]
            mail = lab.smtp["node1"].pid
            # What `make demo-mail-stop NODE=node1` does.
            said = send_control(lab.var_dir, "mail-stop", "node1", timeout=20)
            assert said.startswith("node1's mail service is stopped")
            assert not alive(mail)
            assert not lab.node_failed("node1")  # the box is up: its link too
            with pytest.raises(ConnectionRefusedError):
                lab.smtp_banner("192.0.2.11", timeout=2)

            said = send_control(lab.var_dir, "mail-start", "node1", timeout=20)
            assert said.startswith("node1's mail service is running")
            assert "node1 answers" in lab.smtp_banner("192.0.2.11")
        finally:
            supervisor.stopping.set()
            runner.join(timeout=10)


def test_a_graceful_stop_lets_the_worker_exit_by_itself(tmp_path):
    with Lab(tmp_path, nodes=1) as lab:
        lab.start_worker("node1")
        assert lab.stop_worker("node1", timeout=10) == 0


def test_clean_stale_kills_exactly_what_the_crashed_demo_recorded(tmp_path):
    prefix = f"ct{os.getpid()}stale-"
    sh("ip", "netns", "add", f"{prefix}n1")
    leftover = subprocess.Popen(["sleep", "60"], start_new_session=True)
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        path = state_path(tmp_path)
        path.parent.mkdir(parents=True)
        path.write_text(
            f'{{"pid": 999999999, "started": 1, "processes": {{"{leftover.pid}": '
            f"{process_start_time(leftover.pid)}, "
            # A recorded pid whose start time differs is another process now: spared.
            f'"{bystander.pid}": 1}}}}'
        )
        done = clean_stale(tmp_path, prefix)
        assert f"killed stale process {leftover.pid}" in done
        assert f"deleted stale namespace {prefix}n1" in done
        assert leftover.wait(timeout=5) == -signal.SIGKILL
        assert bystander.poll() is None
        assert not path.exists()
        assert f"{prefix}n1" not in list_namespaces()
    finally:
        bystander.kill()
        bystander.wait()
        leftover.kill()
        leftover.wait()
        sh("ip", "netns", "del", f"{prefix}n1", check=False)
