"""``make demo``'s supervisor: runs a :class:`~cluster.lab.lab.Lab` until Ctrl-C
and carries out the "fail node" / "restore node" / "stop mail service" / "start
mail service" requests.

Requests arrive on ``statekeys.DEMO_CONTROL_CHANNEL`` (from the status page's
buttons, or ``make demo-fail`` through :func:`send_control`). A listener thread
only queues them; the main thread carries them out one at a time, so two
requests never race on one node and signals are handled in one place.

The supervisor writes ``<var>/demo/state.json`` while it runs: its pid, the
Redis URL (how ``make demo-fail`` finds the demo), the nodes' status and every
pid it started with that process's start time. After a crash, the next start
kills exactly those processes (:func:`clean_stale`) and deletes the namespaces
with the demo's prefix.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import threading
import time
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from cluster import statekeys
from cluster.lab.lab import Lab, process_start_time, require_root
from cluster.lab.lan import in_netns, remove_namespaces, wait_until
from cluster.lab.smtp import read_banner

logger = logging.getLogger("cluster.lab")

PREFIX = "demo-"  # the demo's namespaces: demo-br, demo-n1.., demo-client
GRACE = 5.0  # seconds the workers get to bow out on Ctrl-C before SIGKILL
# fail / restore: the box dies (worker and mail service killed, link down) / is back.
# mail-stop / mail-start: only the node's mail service dies / starts; the box and
# its worker stay up, so the node's smtp health check is what notices.
ACTIONS = ("fail", "restore", "mail-stop", "mail-start")


def demo_dir(var_dir: Path) -> Path:
    return var_dir / "demo"


def state_path(var_dir: Path) -> Path:
    return demo_dir(var_dir) / "state.json"


def read_state(var_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(state_path(var_dir).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def running_supervisor(state: dict[str, Any] | None) -> int | None:
    """The pid of the supervisor that wrote ``state``, if that very process still runs."""
    if not state:
        return None
    pid, started = state.get("pid"), state.get("started")
    if isinstance(pid, int) and process_start_time(pid) == started:
        return pid
    return None


def clean_stale(var_dir: Path, prefix: str = PREFIX) -> list[str]:
    """Remove what a crashed demo left: its processes (by pid and start time, so a
    reused pid is never hit), its namespaces and its state file. Returns what was
    done, one line each. Refuses while that demo's supervisor still runs."""
    state = read_state(var_dir)
    if (pid := running_supervisor(state)) is not None:
        raise SystemExit(f"A demo is already running (supervisor pid {pid}): stop it first.")
    done = []
    for pid_text, started in (state or {}).get("processes", {}).items():
        pid = int(pid_text)
        if process_start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            done.append(f"killed stale process {pid}")
    done += [f"deleted stale namespace {name}" for name in remove_namespaces(prefix)]
    with contextlib.suppress(FileNotFoundError):
        state_path(var_dir).unlink()
        done.append("removed the stale state file")
    return done


class Supervisor:
    """Carries out control requests on a built lab and keeps the state file current."""

    def __init__(self, lab: Lab, var_dir: Path) -> None:
        self.lab = lab
        self.var_dir = var_dir
        self.requests: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stopping = threading.Event()
        self.listening = threading.Event()  # subscribed: a request published now arrives
        self.failed: set[str] = set()
        self.reported_exit: set[int] = set()
        # The last request carried out and what came of it: send_control waits for it.
        self.last_request: dict[str, Any] = {}

    # -- state file ----------------------------------------------------------------
    def write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "started": process_start_time(os.getpid()),
            "prefix": self.lab.prefix,
            "client": self.lab.client,
            "redis_url": self.lab.redis_url,
            "web_url": self.lab.web_url if self.lab.web_port else None,
            "nodes": {n: "failed" if n in self.failed else "up" for n in self.lab.node_names},
            "mail": {
                n: "up" if self.lab.running(self.lab.smtp, n) else "stopped"
                for n in self.lab.node_names
            },
            "last_request": self.last_request,
            "processes": {str(pid): started for pid, started in self.lab.pids().items()},
            "updated_at": time.time(),
        }
        path = state_path(self.var_dir)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1) + "\n")
        tmp.replace(path)  # atomic: a reader never sees half a file

    # -- requests ------------------------------------------------------------------
    def listen(self) -> None:
        """Queue every control message; reconnect when Redis goes away (a test may stop it)."""
        while not self.stopping.is_set():
            try:
                client = statekeys.sync_client(self.lab.redis_url, timeout=2.0)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(statekeys.DEMO_CONTROL_CHANNEL)
                self.listening.set()
                while not self.stopping.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None:
                        self._queue(message.get("data"))
            except Exception as exc:  # any Redis or socket error: wait and reconnect
                self.listening.clear()
                logger.debug("control channel: %s; reconnecting", exc)
                self.stopping.wait(1.0)

    def _queue(self, raw: Any) -> None:
        try:
            request = json.loads(raw)
        except (TypeError, ValueError):
            logger.warning("control channel: ignored a message that is not JSON: %.200r", raw)
            return
        if isinstance(request, dict):
            self.requests.put(request)

    def handle(self, request: dict[str, Any]) -> None:
        action, node = request.get("action"), request.get("node")
        if action not in ACTIONS or node not in self.lab.node_names:
            logger.warning(
                "control channel: ignored %s (action must be one of %s, node one of %s)",
                json.dumps(request),
                ", ".join(ACTIONS),
                ", ".join(self.lab.node_names),
            )
            return
        at = request.get("at")
        age = (
            f" (sent {(time.time() - at) * 1000:.0f} ms ago)" if isinstance(at, float | int) else ""
        )
        logger.info("request: %s %s%s", action, node, age)
        self.last_request = {"action": action, "node": node, "at": at, "result": ""}
        try:
            result = self.carry_out(action, node)
        except Exception as exc:
            # Said in the state file too, so `make demo-...` does not wait in vain.
            self.last_request["result"] = f"could not {action} {node}: {exc}"
            self.write_state()
            raise
        logger.info("%s", result)
        self.last_request["result"] = result
        self.write_state()

    def carry_out(self, action: str, node: str) -> str:
        """Do ``action`` to ``node``; one sentence saying what was done (or why nothing)."""
        lab = self.lab
        if action == "fail":
            if node in self.failed:
                return f"{node} is already failed: nothing to do"
            lab.fail_node(node)
            self.failed.add(node)
            return f"{node} is failed"
        if action == "restore":
            # A dead mail service is restored too: the box is not "up" without it.
            if (
                node not in self.failed
                and lab.running(lab.workers, node)
                and lab.running(lab.smtp, node)
            ):
                return f"{node} is up, its mail service too: nothing to do"
            lab.restore_node(node)
            self.failed.discard(node)
            return f"{node} is up"
        if node in self.failed:
            return f"{node} is failed (the whole box): make demo-restore NODE={node} first"
        if action == "mail-stop":
            if not lab.running(lab.smtp, node):
                return f"{node}'s mail service is already stopped: nothing to do"
            lab.kill_smtp(node)
            return f"{node}'s mail service is stopped (killed; the box and its worker stay up)"
        if lab.running(lab.smtp, node):
            return f"{node}'s mail service is already running: nothing to do"
        lab.start_smtp(node)
        return f"{node}'s mail service is running"

    def watch(self) -> None:
        """Say so once when a worker or a mail service dies on its own (it is not
        restarted: the demo shows what happens then; ``make demo-restore`` starts
        it again)."""
        for what, table in (("worker", self.lab.workers), ("mail service", self.lab.smtp)):
            for node, proc in list(table.items()):
                if proc.poll() is not None and proc.pid not in self.reported_exit:
                    self.reported_exit.add(proc.pid)
                    del table[node]
                    logger.warning(
                        "%s: %s exited by itself (status %s); see %s; "
                        "make demo-restore NODE=%s starts it again",
                        node,
                        what,
                        proc.returncode,
                        self.lab.processes.logs[proc.pid],
                        node,
                    )
                    self.write_state()

    def run(self) -> None:
        """Serve requests until SIGINT or SIGTERM (which raise KeyboardInterrupt in the
        main thread), or until :attr:`stopping` is set (a test runs it in a thread)."""
        listener = threading.Thread(target=self.listen, name="demo-control", daemon=True)
        listener.start()
        try:
            while not self.stopping.is_set():
                try:
                    request = self.requests.get(timeout=0.5)
                except queue.Empty:
                    self.watch()
                    continue
                try:
                    self.handle(request)
                except Exception:
                    # One failed action (say, a worker that did not start) must not end the demo.
                    logger.exception("could not carry out %s", json.dumps(request))
        finally:
            self.stopping.set()
            listener.join(timeout=3)


def run_demo(var_dir: Path, nodes: int, port: int, redis_url: str | None) -> None:
    """``make demo``: build, set up, start, serve until Ctrl-C, remove everything."""
    require_root("make demo")
    # SIGTERM must unwind like Ctrl-C, also during start-up, so the lab is always torn down.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir = demo_dir(var_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    setup_logging(workdir / "logs" / "supervisor.log")
    for line in clean_stale(var_dir):
        logger.info("%s", line)
    if redis_url and not statekeys.is_unix_socket(redis_url):
        # Each namespace has its own loopback (NOTES.md): 127.0.0.1 there is not the host's.
        logger.warning(
            "REDIS_URL=%s: the node namespaces reach Redis only at an address on the demo "
            "LAN or through a Unix socket (redis+socket:///path); unset it for a private one",
            redis_url,
        )
    url = f"http://127.0.0.1:{port}/"
    lab = Lab(workdir, nodes=nodes, prefix=PREFIX, redis_url=redis_url, var_dir=var_dir)
    supervisor = Supervisor(lab, var_dir)
    try:
        with lab:
            supervisor.write_state()
            lab.manage("collectstatic", "--noinput", "--verbosity", "0")
            setup = lab.manage("demo_setup", "--var-dir", str(var_dir), "--url", url,
                               "--nodes", str(nodes))  # fmt: skip
            for node in lab.node_names:
                lab.start_smtp(node)
                supervisor.write_state()
            # Start every worker before waiting for any: they boot in parallel.
            for node in lab.node_names:
                lab.start_worker(node, wait=False)
                supervisor.write_state()
            for node in lab.node_names:
                lab.wait_worker_ready(node)
            lab.start_web(port)
            lab.start_notifier()  # beside the console, in the host's namespace
            supervisor.write_state()
            print(setup.stdout.rstrip("\n"))
            print(instructions(lab, var_dir), flush=True)
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C or SIGTERM: the way out
                supervisor.run()
            # A second Ctrl-C must not cut the bow-out short and leave namespaces behind.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            logger.info("stopping: workers get %.0f s to bow out", GRACE)
            lab.close(grace=GRACE)
    except KeyboardInterrupt:
        logger.info("interrupted during start-up; everything started was removed")
    finally:
        with contextlib.suppress(FileNotFoundError):
            state_path(var_dir).unlink()
    logger.info("the demo has stopped; its namespaces are removed")


def instructions(lab: Lab, var_dir: Path) -> str:
    first, vip = lab.node_names[0], "192.0.2.101"
    return "\n".join(
        [
            f"  Nodes:          {', '.join(lab.node_names)} in namespaces "
            f"{lab.ns(first)}..{lab.ns(lab.node_names[-1])}; client in {lab.client}",
            f"  Who answers:    .venv/bin/python -m cluster.lab smtp {vip}   (or 192.0.2.102)",
            f"  Fail a node:    make demo-fail NODE={first}     (or the status page's button)",
            f"  Restore it:     make demo-restore NODE={first}",
            f"  Its mail only:  make demo-mail-stop NODE={first}   /   make demo-mail-start "
            f"NODE={first}",
            f"  Mail received:  {lab.mail_dir}/<node>.jsonl",
            f"  Inside a node:  ip netns exec {lab.ns(first)} ip addr show eth0",
            f"  Logs:           {lab.log_dir}/",
            "",
            "Ctrl-C stops everything and removes the namespaces.",
            "",
        ]
    )


def setup_logging(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter("%(asctime)s demo: %(message)s", "%H:%M:%S")
    for handler in (logging.StreamHandler(), logging.FileHandler(path)):
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def send_control(var_dir: Path, action: str, node: str, timeout: float = 60) -> str:
    """What ``make demo-fail`` / ``demo-restore`` / ``demo-mail-stop`` /
    ``demo-mail-start`` do: publish the request the status page's buttons publish,
    then wait for the supervisor to report it carried out; what came of it."""
    state = read_state(var_dir)
    if running_supervisor(state) is None or state is None:
        raise SystemExit(f"No demo is running (no live supervisor in {state_path(var_dir)}).")
    if node not in state["nodes"]:
        raise SystemExit(f"No node {node!r} in the running demo: {', '.join(state['nodes'])}.")
    sent_after = time.time()
    try:
        receivers = statekeys.request_demo_action(state["redis_url"], action, node)
    except (RedisError, OSError) as exc:
        raise SystemExit(
            f"Nothing was done to {node}: the demo's Redis ({state['redis_url']}) cannot be"
            f" reached, and requests go to the supervisor through it ({exc})."
        ) from None
    if receivers == 0:
        raise SystemExit("The demo's supervisor is not listening on its control channel.")

    def done() -> bool:
        last = (read_state(var_dir) or {}).get("last_request") or {}
        at = last.get("at")
        return (
            last.get("action") == action
            and last.get("node") == node
            and isinstance(at, float | int)
            and at >= sent_after
            and bool(last.get("result"))
        )

    wait_until(done, timeout, interval=0.1, what=f"the demo to carry out {action} {node}")
    result = (read_state(var_dir) or {})["last_request"]["result"]
    return f"{result} (see {demo_dir(var_dir) / 'logs' / 'supervisor.log'})"


def client_banner(var_dir: Path, vip: str, port: int = 25) -> str:
    """The banner whoever holds ``vip`` greets the running demo's client with."""
    state = read_state(var_dir)
    if running_supervisor(state) is None or state is None:
        raise SystemExit(f"No demo is running (no live supervisor in {state_path(var_dir)}).")
    return in_netns(state["client"], lambda: read_banner(vip, port))


__all__ = ["PREFIX", "Supervisor", "clean_stale", "client_banner", "run_demo", "send_control"]
