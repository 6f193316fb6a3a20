"""The demo cluster as the end-to-end tests and the benchmarks drive it.

:func:`running_cluster` starts a :class:`~cluster.lab.lab.Lab` the way
``make demo`` does (``demo_setup``: three nodes, the two active/active aliases
and the administrator; a worker and a mail service per node; the console under
uvicorn on a free port), and hands back a :class:`Console`: the REST API with
the administrator's token, a session cookie for the pages, and the event
stream of the status page (:class:`EventStream`). Only the standard library
speaks HTTP here, as a script on the appliance would.
"""

from __future__ import annotations

import contextlib
import http.client
import http.cookiejar
import json
import os
import platform
import re
import socket
import statistics
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from cluster import statekeys
from cluster.carp.timers import master_down_interval
from cluster.lab.lab import Lab, process_start_time
from cluster.lab.lan import list_namespaces, wait_until

ADMIN = "admin"  # demo_setup's administrator
EVENTS_PATH = "/system/cluster/events/"


def machine() -> str:
    """What the figures were measured on: CPU, cores, kernel, Python."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"machine: {model or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def figures(name: str, seconds: list[float], target_ms: float) -> tuple[str, bool]:
    """``name: n, median, p95, max`` in ms, and whether the p95 is under ``target_ms``."""
    ms = sorted(value * 1000 for value in seconds)
    p95 = statistics.quantiles(ms, n=100, method="inclusive")[94] if len(ms) > 1 else ms[0]
    line = (
        f"{name}: n={len(ms)} median {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms, "
        f"min {ms[0]:.1f} ms, max {ms[-1]:.1f} ms; target p95 < {target_ms:.0f} ms: "
        f"{'met' if p95 < target_ms else 'MISSED'}"
    )
    return line, p95 < target_ms


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ApiError(AssertionError):
    pass


@dataclass
class Console:
    """The lab's web console, reached from the host as a browser or a script would."""

    lab: Lab
    password: str
    token: str = ""
    created: list[int] = field(default_factory=list)  # alias ids, for the clean-up

    @property
    def url(self) -> str:
        return self.lab.web_url.rstrip("/")

    # -- REST ------------------------------------------------------------------------
    def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        """One API request with the administrator's token; the decoded JSON answer.

        Raises :class:`ApiError` (with the body) when the status is not ``expect``.
        """
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Token {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode(errors="replace")
        if status != expect:
            raise ApiError(f"{method} {path}: {status} (expected {expect}): {text[:2000]}")
        return json.loads(text) if text else None

    def log_in_api(self) -> None:
        """Get a token as automation does. Each call makes a new one (only its digest
        is stored, so an old key cannot be handed out again), and the endpoint is
        throttled per address: one call per lab."""
        answer = self.call(
            "POST", "/api/v1/auth/token/", {"username": ADMIN, "password": self.password}
        )
        self.token = answer["token"]

    def create_alias(self, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = self.call("POST", "/api/v1/aliases/", body, expect=201)
        self.created.append(created["id"])
        return created

    def update_alias(self, alias_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        updated: dict[str, Any] = self.call("PATCH", f"/api/v1/aliases/{alias_id}/", changes)
        return updated

    def delete_alias(self, alias_id: int) -> None:
        self.call("DELETE", f"/api/v1/aliases/{alias_id}/", expect=204)
        self.created.remove(alias_id)

    def clean_up(self) -> None:
        """Delete the aliases made through :meth:`create_alias` and bring back every
        node, worker, mail service and Redis a test stopped: the next test finds the
        demo as it was."""
        lab = self.lab
        if lab.redis is not None and lab.redis.pid is None:
            lab.start_redis()
        for node in lab.node_names:
            if lab.node_failed(node) or node not in lab.workers or not lab.running(lab.smtp, node):
                lab.restore_node(node)
        for alias_id in list(self.created):
            self.delete_alias(alias_id)
        self.wait_workers_listening()

    def wait_workers_listening(self, timeout: float = 20.0) -> None:
        """Until every running worker answers a Celery ping: after a Redis outage its
        consumer reconnects on its own schedule, and an apply task sent before that
        waits in the queue (the next test's timing would pay for it)."""
        from celery import Celery

        # Not the process's current app: the appliance's app must stay current for
        # the tests that follow (a shared task and current_app resolve through it).
        app = Celery(broker=self.lab.redis_url, set_as_current=False)
        wanted = {f"{node}@" for node in self.lab.node_names if Lab.running(self.lab.workers, node)}
        try:

            def all_answer() -> bool:
                # A connection of its own each time: kombu's process-wide producer
                # pools would hand back one opened before Redis restarted (broken pipe).
                with app.connection_for_write() as connection:
                    replies = app.control.ping(timeout=0.5, connection=connection) or []
                answered = {name.split("@")[0] + "@" for reply in replies for name in reply}
                return wanted <= answered

            wait_until(all_answer, timeout, interval=0.2, what="every worker to answer a ping")
        finally:
            app.close()

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.call("GET", "/api/v1/status/")
        return status

    # -- the pages -------------------------------------------------------------------
    def session_cookie(self) -> str:
        """Log in through the login form, as a browser does; the ``Cookie`` header."""
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        login = self.url + "/login/"
        with opener.open(login, timeout=10) as response:
            page = response.read().decode()
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert found, "no CSRF token in the login form"
        form = {"username": ADMIN, "password": self.password, "csrfmiddlewaretoken": found[1]}
        request = urllib.request.Request(
            login, data=urllib.parse.urlencode(form).encode(), headers={"Referer": login}
        )
        with opener.open(request, timeout=10):
            pass
        cookies = {cookie.name: cookie.value for cookie in jar}
        assert "sessionid" in cookies, "the login form did not log the administrator in"
        return "; ".join(f"{name}={value}" for name, value in cookies.items())

    def events(self) -> EventStream:
        return EventStream(self.url, self.session_cookie())


def alias_body(
    vhid: int,
    addresses: list[str],
    primary: str,
    secondary: str,
    nodes: list[str],
) -> dict[str, Any]:
    """An alias with every node a member: ``primary``, ``secondary``, the rest Backup."""
    tiers = {primary: "primary", secondary: "secondary"}
    return {
        "vhid": vhid,
        "interface": "eth0",
        "password": f"e2e-secret-{vhid}",
        "addresses": addresses,
        "priorities": [{"node": n, "priority": tiers.get(n, "backup")} for n in nodes],
        "description": f"end-to-end alias {vhid}",
    }


def tier_advskew(alias: dict[str, Any], tier: str) -> int:
    """The derived advskew of the (first) node in ``tier``, as the API reports it."""
    return int(next(p["advskew"] for p in alias["priorities"] if p["priority"] == tier))


def node_in(alias: dict[str, Any], tier: str) -> str:
    return str(next(p["node"] for p in alias["priorities"] if p["priority"] == tier))


def takeover_bound(alias: dict[str, Any]) -> float:
    """The Secondary's master-down interval (3 x advbase + advskew/256, CARP.md)."""
    return master_down_interval(int(alias["advbase"]), tier_advskew(alias, "secondary"))


def vip(alias: dict[str, Any], index: int = 0) -> str:
    return str(alias["addresses"][index]).split("/")[0]


def heartbeat(lab: Lab, node: str) -> dict[str, Any] | None:
    """``node``'s heartbeat as its engine wrote it to Redis (None: not reporting)."""
    client = statekeys.sync_client(lab.redis_url)
    try:
        raw = client.get(statekeys.heartbeat_key(node))
    finally:
        client.close()
    return json.loads(raw) if raw else None


def cell(status: dict[str, Any], vhid: int, node: str) -> dict[str, Any]:
    alias = next(a for a in status["aliases"] if a["vhid"] == vhid)
    found: dict[str, Any] = next(c for c in alias["cells"] if c["node"] == node)
    return found


@contextlib.contextmanager
def running_cluster(workdir: Path, nodes: int = 3) -> Iterator[Console]:
    """A lab as ``make demo`` runs it; everything is torn down on the way out."""
    with Lab(workdir, nodes=nodes) as lab:
        lab.manage("demo_setup", "--var-dir", str(lab.var_dir), "--nodes", str(nodes))
        for node in lab.node_names:
            lab.start_smtp(node, wait=False)
            lab.start_worker(node, wait=False)  # they boot in parallel
        lab.start_web(free_port())
        for node in lab.node_names:
            lab.wait_worker_ready(node)
        console = Console(lab, (lab.var_dir / "admin-password").read_text().strip())
        console.log_in_api()
        yield console


@dataclass(frozen=True)
class Event:
    """One server-sent event: when its last byte arrived (``time.time()``), its
    name and its ``data`` text, decoded from JSON when first read (not in the
    reader thread: see :class:`EventStream`)."""

    arrived: float
    name: str
    text: str

    @cached_property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.text)
        return data


@dataclass
class EventStream:
    """A plain HTTP client of the status page's event stream, read in a thread.

    Every event is appended to :attr:`received` as it arrives; :meth:`close`
    ends the connection.
    """

    base_url: str
    cookie: str
    received: list[Event] = field(default_factory=list)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.base_url)
        self.connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        self.connection.request(
            "GET", EVENTS_PATH, headers={"Cookie": self.cookie, "Accept": "text/event-stream"}
        )
        self.response = self.connection.getresponse()
        if self.response.status != 200:
            raise AssertionError(f"GET {EVENTS_PATH}: {self.response.status}")
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, name="sse-client", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        # An event's arrival is the time its last bytes were read, taken before
        # anything else is done with them; its JSON is decoded later, when read.
        # A browser decodes on its own CPU; here a hundred streams are threads of
        # one process, and a thread decoding holds the GIL the others need to
        # take their own arrival times (a benchmark would count the client's
        # decoding of every other stream's events).
        pending = b""
        try:
            while chunk := self.response.read1(1 << 16):
                arrived = time.time()
                pending += chunk
                *complete, pending = pending.replace(b"\r\n", b"\n").split(b"\n\n")
                events = [e for e in map(_event, complete) if e is not None]
                if events:
                    with self.lock:
                        self.received.extend(Event(arrived, name, data) for name, data in events)
        except Exception as exc:  # a broken stream, or close() pulling the socket away
            self.error = exc

    def since(self, index: int) -> list[Event]:
        with self.lock:
            return self.received[index:]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.sock and self.connection.sock.shutdown(socket.SHUT_RDWR)
        # The reader thread may be closing the same response (its read ended):
        # http.client is not thread-safe there.
        with contextlib.suppress(OSError, AttributeError):
            self.connection.close()
        self.thread.join(timeout=5)


def _event(raw: bytes) -> tuple[str, str] | None:
    """An event's name and data (the WHATWG rules for the fields it uses: ``event``,
    ``data`` lines joined by newlines; comments and ``retry`` ignored), or None
    when it has no data."""
    name, data = "message", []
    for line in raw.decode().split("\n"):
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    return (name, "\n".join(data)) if data else None


@contextlib.contextmanager
def checked_cluster(workdir: Path, nodes: int = 3) -> Iterator[Console]:
    """A running demo cluster; on the way out, whatever happened, the check that
    no namespace of the lab and no process it started is left."""
    seen: dict[int, int] = {}
    prefix = ""
    try:
        with running_cluster(workdir, nodes=nodes) as console:
            prefix = console.lab.prefix
            try:
                yield console
            finally:
                seen = console.lab.pids()
    finally:
        left = [n for n in list_namespaces() if prefix and n.startswith(prefix)]
        alive = [pid for pid, started in seen.items() if process_start_time(pid) == started]
        assert not left, f"the lab left namespaces behind: {left}"
        assert not alive, f"the lab left processes behind: {alive}"
