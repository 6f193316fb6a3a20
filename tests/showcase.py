"""Nine nodes and a dozen aliases on the console, for the browser.

:class:`Showcase` serves the console under uvicorn (the status page's event
stream needs ASGI) with a SQLite file and a private Redis of its own, fills the
database through ``cluster.services`` (nine nodes, twelve aliases, a day of
history), and writes the live state the engines would (``cluster.statekeys``):
a node in maintenance, one demoted by two sources, one killed, an alias whose
MASTER is not its expected owner (preemption off), a disabled one. No namespace,
no root: what the browser sees is the console's rendering of that state.

The browser test at nine nodes (tests/pages/test_nine_nodes_browser.py) uses it,
and so does ``make screenshots`` (``python -m tests.showcase --out docs``),
which takes the README's screenshots at 1280 px and, for a look, 1920 px.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster import statekeys
from cluster.carp.types import DemotionSource
from cluster.lab.lab import stored_secret
from cluster.lab.redisd import RedisServer

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
ADMIN, PASSWORD = "admin", "showcase-password-1"
NODES = [f"node{n}" for n in range(1, 10)]
CHROMIUM_ARGS = ["--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


@dataclass(frozen=True)
class ShowAlias:
    vhid: int
    primary: str
    secondary: str
    backups: tuple[str, ...] = ()
    interface: str = "eth0"
    ipv6: bool = False
    enabled: bool = True
    preempt: bool = True
    description: str = ""

    @property
    def members(self) -> list[str]:
        return [self.primary, self.secondary, *self.backups]

    def addresses(self) -> list[str]:
        found = [f"192.0.2.{100 + self.vhid}/24"]
        if self.ipv6:
            found.append(f"2001:db8::{100 + self.vhid}/64")
        return found


def _ring(k: int, *offsets: int) -> tuple[str, ...]:
    return tuple(NODES[(k - 1 + offset) % len(NODES)] for offset in offsets)


# VHIDs 1..9: node k Primary, the next Secondary, two more Backups (the other five
# are not members); VHID 10 has all nine; 11 runs with preemption off; 12 is disabled.
ALIASES = [
    *(
        ShowAlias(
            k,
            NODES[k - 1],
            _ring(k, 1)[0],
            _ring(k, 2, 3),
            ipv6=k in (1, 2),
            description=f"mail {k}",
        )
        for k in range(1, 10)
    ),
    ShowAlias(10, "node1", "node2", tuple(NODES[2:]), description="submission, all nodes"),
    ShowAlias(
        11,
        "node2",
        "node7",
        ("node8",),
        interface="eth1",
        preempt=False,
        description="webmail, no preemption",
    ),
    ShowAlias(12, "node3", "node4", enabled=False, description="spare"),
]
MAINTENANCE = "node4"
DEMOTED = "node6"
DEMOTION = (
    DemotionSource("link:eth1", 240, "link eth1 down"),
    DemotionSource("health:smtp", 50, "health check smtp failing"),
)
KILLED = "node9"
NOT_PREEMPTED = 11  # its Primary came back and is BACKUP: the Secondary holds it


def setup_database() -> None:
    """The nodes, aliases and history (run inside the console's environment)."""
    import django

    django.setup()
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from cluster import access, services
    from cluster.models import Node, Transition

    admin = get_user_model().objects.create_user(ADMIN, password=PASSWORD)
    access.make_administrator(admin)
    for ordinal, name in enumerate(NODES, start=1):
        services.create_node(
            admin,
            {
                "name": name,
                "address": f"192.0.2.{10 + ordinal}",
                "interface": "eth0",
                "ordinal": ordinal,
            },
        )
    for alias in ALIASES:
        tiers = ["primary", "secondary"] + ["backup"] * len(alias.backups)
        services.create_alias(
            admin,
            {
                "vhid": alias.vhid,
                "interface": alias.interface,
                "advbase": 1,
                "password": f"showcase-{alias.vhid}",
                "addresses": alias.addresses(),
                "enabled": alias.enabled,
                "preempt": alias.preempt,
                "description": alias.description,
                "priorities": [
                    {"node": node, "priority": tier}
                    for node, tier in zip(alias.members, tiers, strict=True)
                ],
            },
        )
    node = Node.objects.get(name=MAINTENANCE)
    services.update_node(admin, node, {"maintenance": True}, partial=True)
    now = timezone.now()
    nodes = {n.name: n for n in Node.objects.all()}
    history = []
    for alias in ALIASES:
        if alias.enabled:
            history.append((alias, alias.primary, "INIT", "MASTER", "startup", 300))
    history += [
        (ALIASES[3], "node4", "MASTER", "BACKUP", "maintenance", 40),
        (ALIASES[3], "node5", "BACKUP", "MASTER", "preempted", 40),
        (ALIASES[5], "node6", "MASTER", "BACKUP", "link_down", 25),
        (ALIASES[5], "node7", "BACKUP", "MASTER", "preempted", 25),
        (ALIASES[10], "node2", "MASTER", "INIT", "shutdown", 60),
        (ALIASES[10], "node7", "BACKUP", "MASTER", "bow_out", 60),
        (ALIASES[10], "node2", "INIT", "BACKUP", "startup", 50),
        (ALIASES[8], "node1", "BACKUP", "MASTER", "master_down", 3),
    ]
    for alias, name, old, new, reason, minutes in history:
        Transition.objects.create(
            node=nodes[name], vhid=alias.vhid, interface=alias.interface, from_state=old,
            to_state=new, reason=reason, at=now - timedelta(minutes=minutes),
        )  # fmt: skip


def expected_states(gone: set[str]) -> dict[str, dict[tuple[str, int], str]]:
    """What each node's engine runs and in which state, as the scene has it, with
    ``gone`` (and ``KILLED``) dead: their VHIDs held by the next member up."""
    states: dict[str, dict[tuple[str, int], str]] = {name: {} for name in NODES}
    for alias in ALIASES:
        if not alias.enabled:
            continue
        down = {MAINTENANCE, DEMOTED}
        up = [m for m in alias.members if m not in down | gone and m != KILLED]
        master = up[0] if up else ""
        if alias.vhid == NOT_PREEMPTED:
            master = alias.secondary
        for member in alias.members:
            state = "MASTER" if member == master else "BACKUP"
            states[member][(alias.interface, alias.vhid)] = state
    return states


@dataclass
class Scene:
    """Writes what the engines would into the showcase's Redis."""

    url: str
    client: Any = None
    holders: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    silenced: set[str] = field(default_factory=set)  # nodes that no longer beat
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.client = statekeys.sync_client(self.url)

    def write(self, node: str, hosts: dict[tuple[str, int], str], *, beat: bool = True,
              demotion: Sequence[DemotionSource] = (), client: str = "") -> None:  # fmt: skip
        """``node`` runs ``hosts`` ((interface, vhid) -> state); its heartbeat
        (unless ``beat`` is off: it stopped reporting) names ``client``."""
        now = time.time()
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(statekeys.node_vhosts_key(node))
        for (interface, vhid), state in hosts.items():
            vhost = statekeys.VhostState.from_hash(
                {"node": node, "interface": interface, "vhid": vhid, "state": state,
                 "advbase": 1, "last_reason": "startup", "last_at": now - 600,
                 "updated_at": now})  # fmt: skip
            pipe.hset(statekeys.vhost_key(node, interface, vhid), mapping=vhost.to_hash())
            pipe.sadd(statekeys.node_vhosts_key(node), statekeys.vhost_member(interface, vhid))
        if beat:
            heartbeat = statekeys.Heartbeat(
                node=node, at=now, pid=1000 + NODES.index(node), config_version="5d41402abc4b2a76",
                config_source="database", demotion=tuple(demotion), client=client,
            )  # fmt: skip
            pipe.set(statekeys.heartbeat_key(node), heartbeat.encode(), ex=statekeys.HEARTBEAT_TTL)
            # As the node host does: the status hub learns of news from these.
            message = statekeys.HeartbeatMessage(node, now)
            pipe.publish(statekeys.EVENTS_CHANNEL, statekeys.encode_message(message))
        else:
            pipe.delete(statekeys.heartbeat_key(node))
        pipe.execute()

    def hold_connection(self, node: str) -> subprocess.Popen[str]:
        """A process holding ``node``'s named Redis connection, as its worker does."""
        code = (
            "import sys, time\n"
            "from cluster import statekeys\n"
            "c = statekeys.sync_client(sys.argv[1], client_name=sys.argv[2])\n"
            "c.ping()\nprint('ready', flush=True)\ntime.sleep(3600)\n"
        )
        name = statekeys.node_client_name(node)
        proc = subprocess.Popen([PYTHON, "-c", code, self.url, name], stdout=subprocess.PIPE,
                                text=True, cwd=BASE_DIR)  # fmt: skip
        self.holders[node] = proc
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        return proc

    def beat_all(self) -> None:
        """Every live node's heartbeat and state, once (a second's worth)."""
        states = expected_states(set(self.silenced))
        for node in NODES:
            if node == KILLED or node in self.silenced:
                continue
            demotion: Sequence[DemotionSource] = ()
            if node == MAINTENANCE:
                demotion = (DemotionSource("maintenance", 240, "maintenance"),)
            elif node == DEMOTED:
                demotion = DEMOTION
            self.write(node, states[node], demotion=demotion,
                       client=statekeys.node_client_name(node))  # fmt: skip

    def start(self) -> None:
        """The scene: every node but ``KILLED`` reporting with its connection open;
        ``KILLED`` stopped reporting, its hashes left as they were (MASTER of its VHID)."""
        for node in NODES:
            if node != KILLED:
                self.hold_connection(node)
        self.write(KILLED, {("eth0", 9): "MASTER", ("eth0", 8): "BACKUP", ("eth0", 7): "BACKUP",
                            ("eth0", 6): "BACKUP", ("eth0", 10): "BACKUP"}, beat=False)  # fmt: skip
        self.beat_all()
        self._thread = threading.Thread(target=self._beat, name="showcase-beat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        # Its own client: redis-py's is not to be shared between threads mid-pipeline.
        beats = Scene(self.url, silenced=self.silenced)
        try:
            while not self._stop.wait(statekeys.HEARTBEAT_INTERVAL):
                beats.beat_all()
        finally:
            beats.client.close()

    def kill(self, node: str) -> None:
        """``node``'s worker dies hard: no more heartbeats, its connection closed by
        the kernel, its last state left in Redis as it was."""
        self.silenced.add(node)
        holder = self.holders[node]
        holder.kill()
        holder.wait(timeout=10)
        self.beat_all()  # the others take its VHIDs over

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for proc in self.holders.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        self.holders.clear()
        self.client.close()


class Showcase:
    """The console on a free port, its database filled, its Redis private."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.var_dir = workdir / "var"
        self.redis = RedisServer(workdir / "redis")
        self.web: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.scene: Scene | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("DATABASE_URL", None)
        env.update(
            DJANGO_SETTINGS_MODULE="appliance.settings", VAR_DIR=str(self.var_dir),
            REDIS_URL=self.redis.url, DEBUG="0", DEMO_MODE="0",
            SECRET_KEY_FILE=str(self.var_dir / "secret-key"),
            CLUSTER_SECRET_KEY_FILE=str(self.var_dir / "cluster-secret-key"),
            PYTHONUNBUFFERED="1", TZ="UTC",
        )  # fmt: skip
        return env

    def __enter__(self) -> Showcase:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        from tests.e2e.console import free_port

        self.var_dir.mkdir(parents=True, exist_ok=True)
        stored_secret(self.var_dir / "secret-key", 48)
        stored_secret(self.var_dir / "cluster-secret-key", 48)
        self.redis.start()
        env = self.env()
        manage = [PYTHON, str(BASE_DIR / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, check=True,
                       cwd=BASE_DIR)  # fmt: skip
        subprocess.run([PYTHON, "-m", "tests.showcase", "--setup-database"], env=env, check=True,
                       cwd=BASE_DIR)  # fmt: skip
        self.port = free_port()
        log = (self.workdir / "web.log").open("wb")
        self.web = subprocess.Popen(
            [str(Path(PYTHON).parent / "uvicorn"), "appliance.asgi:application",
             "--host", "127.0.0.1", "--port", str(self.port), "--timeout-graceful-shutdown", "1"],
            env=env, cwd=BASE_DIR, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not self._answers():
            if self.web.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the console did not start; see {self.workdir / 'web.log'}")
            time.sleep(0.1)
        self.scene = Scene(self.redis.url)
        self.scene.start()

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/login/", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.scene is not None:
            self.scene.close()
            self.scene = None
        if self.web is not None:
            if self.web.poll() is None:
                os.kill(self.web.pid, signal.SIGTERM)
                try:
                    self.web.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.kill(self.web.pid, signal.SIGKILL)
                    self.web.wait(timeout=10)
            self.web = None
        self.redis.stop()

    def log_in(self, page: Any) -> None:
        page.goto(self.url + "/login/")
        page.get_by_label("User name").fill(ADMIN)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(self.url + "/system/advanced/ip-alias/")


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


PAGES = {"cluster-status": "/system/cluster/", "ip-alias": "/system/advanced/ip-alias/"}


def screenshots(out: Path, widths: Sequence[int] = (1280, 1920)) -> list[Path]:
    """Each page at each width, full length, once the live stream is connected."""
    taken = []
    with (
        tempfile.TemporaryDirectory(prefix="showcase-") as tmp,
        Showcase(Path(tmp)) as show,
        chromium() as browser,
    ):
        for width in widths:
            page = browser.new_page(viewport={"width": width, "height": 900})
            show.log_in(page)
            for name, path in PAGES.items():
                page.goto(show.url + path)
                page.wait_for_selector('#live-indicator[data-live="connected"]')
                page.wait_for_timeout(300)
                shot = out / (f"{name}.png" if width == 1280 else f"{name}-{width}.png")
                page.screenshot(path=str(shot), full_page=True)
                taken.append(shot)
            page.close()
    return taken


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=BASE_DIR / "docs")
    parser.add_argument("--setup-database", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.setup_database:
        setup_database()
        return
    args.out.mkdir(parents=True, exist_ok=True)
    for shot in screenshots(args.out):
        print(shot)


if __name__ == "__main__":
    main()
