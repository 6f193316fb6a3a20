"""The demo cluster as a Python object: ``make demo``, the end-to-end tests and
the benchmarks all drive one of these.

``with Lab(workdir) as lab:`` builds the LAN (cluster.lab.lan), starts a
private Redis unless ``redis_url`` is given, makes the secrets and migrates a
SQLite database in ``var_dir``; the processes (node workers, the aiosmtpd mail
services, the web) are then started and stopped by method. Leaving the block
SIGKILLs every pid the lab started and deletes every namespace, also when the
body raised. Needs root (see :func:`require_root`).

Nodes are named ``node1`` .. ``nodeN`` like the demo database's, and node *i*
lives in namespace ``<prefix>n<i>`` at 192.0.2.(10+i).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cluster import statekeys
from cluster.lab.lan import Built, Interface, Lan, in_netns, node_ip, sh, wait_until
from cluster.lab.procs import Proc, Processes
from cluster.lab.redisd import RedisServer
from cluster.lab.smtp import read_banner, read_records

logger = logging.getLogger("cluster.lab")

REPO = Path(__file__).resolve().parents[2]
# The interpreter running the lab is the project's (.venv/bin/python under make);
# its neighbours are the venv's celery and uvicorn.
PYTHON = sys.executable
MAX_NODES = 9
SMTP_PORT = 25
# demo_setup's health check (services.CheckData): the smtp check on port 25 every
# node runs on itself (scope all): a node whose
# mail service stops answering is demoted and hands its VIPs over (issue 10).
# Faster than the model's defaults (2000 ms, timeout 1000 ms) so that the demo's
# "Stop mail service" button shows the handover within about 4 s:
# fall x interval + timeout + one advert interval = 3 x 1 s + 0.5 s + 1 s at most.
DEMO_CHECK: dict[str, Any] = {
    "name": "smtp-25",
    "kind": "smtp",
    "port": 25,
    "interval_ms": 1000,
    "timeout_ms": 500,
    "rise": 2,
    "fall": 3,
    "weight": 240,
    "scope": "all",
    "enabled": True,
}
WHY_ROOT = (
    "it creates network namespaces and veth pairs (one per node, "
    "so nothing touches this machine's own network), the CARP engine in each "
    "node's worker opens raw sockets (IP protocol 112), and it moves the virtual "
    "addresses with netlink. Run it as root (e.g. sudo make demo)."
)


class NeedsRoot(SystemExit):
    pass


def require_root(what: str = "The demo") -> None:
    """Exit with a plain explanation when not running as root."""
    if os.geteuid() != 0:
        raise NeedsRoot(f"{what} needs root (this is uid {os.geteuid()}): {WHY_ROOT}")


def stored_secret(path: Path, nbytes: int = 12) -> str:
    """The secret kept in ``path`` (mode 0600), generated on first use."""
    if path.exists():
        text = path.read_text().strip()
        if text:
            return text
    secret = secrets.token_urlsafe(nbytes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(secret + "\n")
    return secret


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks after boot), None if gone.

    A pid with the start time recorded when it was spawned is that same
    process, never a later one that reused the number: the only safe way to
    kill what a crashed demo left behind.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after it.
    return int(stat.rsplit(")", 1)[1].split()[19])


class Lab(Built):
    """Namespaces, Redis, the database and the processes of one demo cluster."""

    def __init__(
        self,
        workdir: Path,
        nodes: int = 3,
        prefix: str | None = None,
        redis_url: str | None = None,
        web_port: int | None = None,
        demo_mode: bool = True,
        var_dir: Path | None = None,
        migrate: bool = True,
    ) -> None:
        if not 1 <= nodes <= MAX_NODES:
            raise ValueError(f"nodes must be 1 to {MAX_NODES}, not {nodes}")
        self.workdir = Path(workdir).resolve()
        self.var_dir = Path(var_dir).resolve() if var_dir else self.workdir / "var"
        self.log_dir = self.workdir / "logs"
        self.prefix = prefix or f"ct{os.getpid()}{secrets.token_hex(2)}-"
        self.node_names = [f"node{i}" for i in range(1, nodes + 1)]
        self.lan = Lan(self.prefix, nodes, client=True)
        self.redis: RedisServer | None = None
        if redis_url is None:
            self.redis = RedisServer(self.workdir)
            redis_url = self.redis.url
        self.redis_url = redis_url
        self.demo_mode = demo_mode
        self.migrate = migrate
        self.processes = Processes(REPO)
        self.workers: dict[str, Proc] = {}
        self.smtp: dict[str, Proc] = {}
        # Where each node's mail service records the messages it accepted (smtp.py).
        self.mail_dir = self.workdir / "mail"
        self.web: Proc | None = None
        self.web_port = web_port
        self.notifiers: dict[str, Proc] = {}

    # -- names ---------------------------------------------------------------------
    @property
    def client(self) -> str:
        """The client namespace (192.0.2.2), where "who answers" is asked from."""
        assert self.lan.client is not None
        return self.lan.client

    def index(self, node: str) -> int:
        if node not in self.node_names:
            raise KeyError(f"no node {node!r} in this lab ({', '.join(self.node_names)})")
        return self.node_names.index(node) + 1

    def ns(self, node: str) -> str:
        return self.lan.ns(self.index(node))

    @property
    def web_url(self) -> str:
        if self.web_port is None:
            raise RuntimeError("the web process has no port yet: call start_web()")
        return f"http://127.0.0.1:{self.web_port}/"

    @property
    def env(self) -> dict[str, str]:
        """The environment every process of the lab runs with (a copy: add to it freely).

        ``manage.py``, celery and uvicorn started with it share this lab's Redis
        and its SQLite database (namespaces share the filesystem).
        """
        env = dict(os.environ)
        # The lab's database is its own SQLite file, never a DATABASE_URL from outside.
        env.pop("DATABASE_URL", None)
        env.update(
            DJANGO_SETTINGS_MODULE="appliance.settings",
            VAR_DIR=str(self.var_dir),
            REDIS_URL=self.redis_url,
            DEBUG="0",
            DEMO_MODE="1" if self.demo_mode else "0",
            SECRET_KEY_FILE=str(self.var_dir / "secret-key"),
            CLUSTER_SECRET_KEY_FILE=str(self.var_dir / "cluster-secret-key"),
            PYTHONUNBUFFERED="1",
        )
        return env

    # -- building ------------------------------------------------------------------
    def build(self) -> None:
        require_root("The lab")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.var_dir.mkdir(parents=True, exist_ok=True)
        logger.info("building the LAN: %s (prefix %s)", ", ".join(self.node_names), self.prefix)
        self.lan.build()
        if self.redis is not None:
            self.start_redis()
        # The settings refuse to start with DEBUG off and no keys; 48 bytes as before.
        stored_secret(self.var_dir / "secret-key", 48)
        stored_secret(self.var_dir / "cluster-secret-key", 48)
        if self.migrate:
            self.manage("migrate", "--noinput")
        if self.web_port is not None:
            self.start_web(self.web_port)

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``manage.py <args>`` against the lab's database and Redis; raises on failure."""
        done = subprocess.run(
            [PYTHON, "manage.py", *args], cwd=REPO, env=self.env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done

    def exec_in(
        self, namespace: str, argv: Sequence[str], check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside ``namespace`` and wait for it (output captured)."""
        return sh("ip", "netns", "exec", namespace, *argv, check=check)

    def _spawn(
        self, name: str, argv: Sequence[str], namespace: str | None, env: Mapping[str, str] | None
    ) -> Proc:
        return self.processes.spawn(
            argv, self.log_dir / f"{name}.log", namespace, {**self.env, **(env or {})}
        )

    # -- Redis ---------------------------------------------------------------------
    def _own_redis(self) -> RedisServer:
        if self.redis is None:
            raise RuntimeError("this lab uses an outside Redis (redis_url=...): not ours to stop")
        return self.redis

    def start_redis(self) -> None:
        self._own_redis().start()
        logger.info("redis started (pid %s) on %s", self._own_redis().pid, self.redis_url)

    def stop_redis(self) -> None:
        """SIGKILL the private Redis (the socket path, and so the URL, stay the same)."""
        self._own_redis().stop()
        logger.info("redis stopped")

    # -- node processes ------------------------------------------------------------
    def start_worker(
        self, node: str, env: Mapping[str, str] | None = None, wait: bool = True
    ) -> Proc:
        """Start ``node``'s Celery worker (the CARP engine lives in it) in its namespace.

        ``env`` adds to :attr:`env` (e.g. a DATABASE_URL that cannot be reached).
        With ``wait``, returns once the worker logs that it is ready.
        """
        if node in self.workers and self.workers[node].poll() is None:
            raise RuntimeError(f"{node}'s worker is already running (pid {self.workers[node].pid})")
        argv = [
            str(Path(PYTHON).parent / "celery"), "-A", "appliance", "worker",
            "-Q", statekeys.apply_queue(node), "--pool", "threads", "--concurrency", "2",
            "--hostname", f"{node}@{self.prefix.rstrip('-')}", "--loglevel", "INFO",
        ]  # fmt: skip
        proc = self._spawn(
            f"worker-{node}", argv, self.ns(node), {**(env or {}), "CLUSTER_NODE": node}
        )
        self.workers[node] = proc
        logger.info("%s: worker started (pid %d)", node, proc.pid)
        if wait:
            self.wait_worker_ready(node)
        return proc

    def wait_worker_ready(self, node: str, timeout: float = 60) -> None:
        """Wait for the worker's "ready." log line; fail early if it exits."""
        proc = self.workers[node]

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"{node}'s worker exited ({proc.returncode}); see its log:\n"
                                   + self.processes.log_text(proc)[-3000:])  # fmt: skip
            # The log is appended to across restarts: read from this start's header on.
            text = self.processes.log_text(proc)
            return " ready." in text[text.rfind("--- ") :]

        wait_until(ready, timeout, interval=0.1, what=f"{node}'s worker to be ready")

    def kill_worker(self, node: str) -> None:
        """SIGKILL ``node``'s worker: no bow-out, its VIPs stay on eth0 (NOTES.md)."""
        self.processes.stop(self.workers.pop(node), signal.SIGKILL)
        logger.info("%s: worker killed (SIGKILL)", node)

    def stop_worker(self, node: str, timeout: float = 10) -> int:
        """SIGTERM ``node``'s worker (the engine bows out); SIGKILL after ``timeout`` s."""
        status = self.processes.stop(self.workers.pop(node), signal.SIGTERM, timeout)
        logger.info("%s: worker stopped (exit status %d)", node, status)
        return status

    def start_smtp(self, node: str, wait: bool = True) -> Proc:
        """Start ``node``'s mail service (aiosmtpd, cluster.lab.smtp) on port 25 in its
        namespace; it records what it accepts in :attr:`mail_dir`."""
        if self.running(self.smtp, node):
            raise RuntimeError(f"{node}'s mail service is already running")
        argv = [PYTHON, "-m", "cluster.lab.smtp", node, "--port", str(SMTP_PORT),
                "--record", str(self.mail_dir)]  # fmt: skip
        proc = self._spawn(f"smtp-{node}", argv, self.ns(node), None)
        self.smtp[node] = proc
        if wait:
            ip = node_ip(self.index(node))

            def answers() -> bool:
                with contextlib.suppress(OSError):
                    return in_netns(self.ns(node), lambda: read_banner(ip, SMTP_PORT)) != ""
                if proc.poll() is not None:
                    raise RuntimeError(f"{node}'s mail service exited ({proc.returncode})")
                return False

            wait_until(answers, 10, interval=0.05, what=f"{node}'s mail service")
        logger.info("%s: mail service started (pid %d)", node, proc.pid)
        return proc

    def kill_smtp(self, node: str) -> None:
        """SIGKILL ``node``'s mail service: it dies, the box and its worker stay up."""
        self.processes.stop(self.smtp.pop(node), signal.SIGKILL)
        logger.info("%s: mail service killed", node)

    def mail_received(self) -> list[dict[str, Any]]:
        """Every message the lab's mail services accepted (cluster.lab.smtp.read_records)."""
        return read_records(self.mail_dir)

    def smtp_banner(self, vip: str, port: int = SMTP_PORT, timeout: float = 2.0) -> str:
        """The greeting of whoever answers on ``vip``, asked from the client namespace.

        Raises ``OSError`` when nobody answers.
        """
        return in_netns(self.client, lambda: read_banner(vip, port, timeout))

    # -- a node as a box -----------------------------------------------------------
    def node_failed(self, node: str) -> bool:
        return not self.lan.link_up(self.index(node))

    def fail_node(self, node: str) -> None:
        """The box dies: SIGKILL its worker and mail service, its link goes down, and
        it forgets its VIPs (a dead box holds nothing; addresses on a down link
        would otherwise still be listed by :meth:`addresses`)."""
        for table, kill in ((self.workers, self.kill_worker), (self.smtp, self.kill_smtp)):
            if node in table:
                kill(node)
        index = self.index(node)
        self.lan.set_link(index, up=False)
        for vip in self._vip_interfaces(index):
            sh("ip", "-n", self.ns(node), "addr", "del", str(vip), "dev", "eth0", check=False)
        logger.info("%s: failed (worker and mail service killed, link down)", node)

    def restore_node(self, node: str, wait: bool = True) -> None:
        """The box is back: link up, then its mail service and its worker start."""
        self.lan.set_link(self.index(node), up=True)
        # A process that exited (a worker that did not start, one that died by
        # itself and was not noticed yet) is started again, not taken as running.
        if not self.running(self.smtp, node):
            self.start_smtp(node, wait=wait)
        if not self.running(self.workers, node):
            self.start_worker(node, wait=wait)
        logger.info("%s: restored (link up, mail service and worker started)", node)

    @staticmethod
    def running(table: Mapping[str, Proc], node: str) -> bool:
        """Whether ``node`` has a process in ``table`` (workers, smtp) that has not exited."""
        proc = table.get(node)
        return proc is not None and proc.poll() is None

    # -- observing -----------------------------------------------------------------
    def _vip_interfaces(self, index: int) -> list[Interface]:
        own = self.lan.own_addresses(index)
        return [
            iface
            for iface in self.lan.interface_addresses(index)
            if str(iface.ip) not in own and not iface.ip.is_link_local
        ]

    def addresses(self, node: str) -> set[str]:
        """The VIPs (without prefix) on ``node``'s eth0: neither its own address nor
        link-local ones."""
        return {str(iface.ip) for iface in self._vip_interfaces(self.index(node))}

    def holders(self, vip: str) -> list[str]:
        """The nodes whose eth0 carries ``vip``."""
        vip = str(ipaddress.ip_address(vip))
        return [node for node in self.node_names if vip in self.addresses(node)]

    def wait_holder(self, vip: str, node: str, timeout: float) -> None:
        """Wait until ``node`` and only it holds ``vip``."""
        wait_until(lambda: self.holders(vip) == [node], timeout, what=f"{vip} held by {node} only")

    def pids(self) -> dict[int, int]:
        """Every process the lab runs now: pid -> kernel start time (:func:`process_start_time`)."""
        # Only those not reaped: a reaped pid may be another process's by now, and
        # clean_stale would kill whatever holds it with that start time.
        pids = [pid for pid, proc in self.processes.running.items() if proc.poll() is None]
        if self.redis is not None and self.redis.pid is not None:
            pids.append(self.redis.pid)
        return {pid: t for pid in pids if (t := process_start_time(pid)) is not None}

    # -- the web -------------------------------------------------------------------
    def start_web(self, port: int, wait: bool = True) -> Proc:
        """Serve the console on 127.0.0.1:``port`` on the host, under uvicorn (the
        live page's server-sent events need ASGI)."""
        self.web_port = port
        argv = [
            str(Path(PYTHON).parent / "uvicorn"), "appliance.asgi:application",
            "--host", "127.0.0.1", "--port", str(port),
            # An open event stream would otherwise keep uvicorn from exiting (NOTES.md).
            "--timeout-graceful-shutdown", "1",
        ]  # fmt: skip
        self.web = self._spawn("web", argv, None, None)
        logger.info("web started (pid %d) on %s", self.web.pid, self.web_url)
        if wait:
            wait_until(self._web_answers, 30, interval=0.1, what=f"the console on {self.web_url}")
        return self.web

    def _web_answers(self) -> bool:
        if self.web is not None and self.web.poll() is not None:
            raise RuntimeError(f"the web process exited ({self.web.returncode}); see its log:\n"
                               + self.processes.log_text(self.web)[-3000:])  # fmt: skip
        try:
            with urllib.request.urlopen(self.web_url + "login/", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # it answered
        except OSError:
            return False

    def stop_web(self, timeout: float = 5) -> None:
        if self.web is not None:
            self.processes.stop(self.web, signal.SIGTERM, timeout)
            self.web = None
            logger.info("web stopped")

    def start_notifier(
        self, name: str = "notifier", env: Mapping[str, str] | None = None, wait: bool = True
    ) -> Proc:
        """``manage.py notifier`` on the host, beside the console (README,
        "Notifications"): a webhook receiver on the host's 127.0.0.1 gets its posts.
        Several may run (``name`` tells them apart); each event is still sent once."""
        argv = [PYTHON, "manage.py", "notifier", "--name", name]
        proc = self.notifiers[name] = self._spawn(name, argv, None, env)
        logger.info("%s started (pid %d)", name, proc.pid)
        if wait:
            wait_until(lambda: self._notifier_running(proc), 30, interval=0.1, what=name)
        return proc

    def _notifier_running(self, proc: Proc) -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the notifier exited ({proc.returncode}); see its log:\n"
                               + self.processes.log_text(proc)[-3000:])  # fmt: skip
        text = self.processes.log_text(proc)
        return "running" in text[text.rfind("--- ") :]  # this run's part of the log

    def stop_notifier(self, name: str = "notifier", timeout: float = 10) -> None:
        """SIGTERM: it finishes the delivery in hand and exits."""
        if name in self.notifiers:
            self.processes.stop(self.notifiers.pop(name), signal.SIGTERM, timeout)
            logger.info("%s stopped", name)

    # -- teardown ------------------------------------------------------------------
    def close(self, grace: float = 0) -> None:
        """Stop every process (with ``grace`` s for a clean exit after SIGTERM, so the
        workers bow out; SIGKILL for the rest), Redis, and delete the namespaces."""
        try:
            if grace > 0:
                self.processes.stop_all(list(self.processes.running.values()), signal.SIGTERM,
                                        grace)  # fmt: skip
            self.processes.close()
            self.workers.clear()
            self.smtp.clear()
            self.web = None
            self.notifiers.clear()
            if self.redis is not None:
                self.redis.stop()
        finally:
            if self.lan.namespaces:  # close() is idempotent: say it once
                self.lan.close()
                logger.info("lab %s torn down", self.prefix)
