"""One node's engine: its runner, its configuration and its publishers, in the worker.

`Engine` joins three things to one `Runner` (cluster/carp/runner.py):

* **Configuration** (DESIGN rule 1, level-triggered): `converge` reads the node's
  whole desired state (`apply.read_database`) and hands the runner a new
  configuration only when its version differs from the applied one; the runner
  itself touches only the virtual hosts whose config changed. Each applied
  configuration is saved to the local copy; a worker whose database does not
  answer at start serves from that copy and converges when the database returns.
* **Live state** (`state.RedisStatePublisher`) and **history**
  (`history.TransitionRecorder`): both fed from the protocol loop through
  `NodePublisher`, both queued, neither ever blocks the loop.
* **Demotion sources**: maintenance is the source ``maintenance`` (240,
  FreeBSD's largest demotion); the runner adds ``link:<ifname>`` itself; each
  health check is ``health:<check>`` (`health.HealthRunner`, in a thread of its
  own, off the protocol loop). Each is set alone and never erases another.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from cluster import statekeys
from cluster.carp.realtime import DEFAULT_PRIORITY, Realtime
from cluster.carp.runner import Runner, RunnerSnapshot
from cluster.carp.types import SOURCE_MAINTENANCE, Reason, State, VirtualHostConfig
from cluster.node.apply import LocalConfigStore, NodeConfig, read_database
from cluster.node.health import HealthRunner
from cluster.node.history import DB_RETRY_INTERVAL, TransitionRecorder
from cluster.node.state import NodeStatus, RedisStatePublisher

log = logging.getLogger("cluster.node")

# Maintenance: FreeBSD's largest demotion, as for an interface that is down
# (net.inet.carp.ifdown_demotion_factor, 240). The advertised advskew becomes
# min(advskew + 240, 240) = 240, above every derived advskew (cluster.advskew keeps
# them all below 240), so every peer not in maintenance preempts at once (CARP.md
# "Demotion"), while a node in maintenance still takes over if it is the last one
# left: maintenance must never leave a VIP unserved.
MAINTENANCE_DEMOTION = 240
DB_STARTUP_TIMEOUT = 3.0  # seconds the start waits for the database before using the file
# The apply task converges a node at once; this periodic re-read only repairs a lost
# task (a broker outage), which makes every message optional (level-triggered).
RESYNC_INTERVAL = 60.0


class NodePublisher:
    """What the runner sees as its `StatePublisher`: Redis and the history, both queued."""

    def __init__(self, state: RedisStatePublisher, history: TransitionRecorder) -> None:
        self.state = state
        self.history = history

    def publish(
        self,
        interface: str,
        vhid: int,
        state: State,
        reason: Reason,
        *,
        old: State,
        at: float,
        source: str = "",
        silence: float | None = None,
    ) -> None:
        self.state.publish(
            interface, vhid, state, reason, old=old, at=at, source=source, silence=silence
        )
        self.history.add(interface, vhid, str(old), str(state), str(reason), at, source)

    def changed(self, interface: str, vhid: int) -> None:
        self.state.changed(interface, vhid)


class EnginePorts(Protocol):
    """What the engine needs from `runner.SystemPorts` (tests pass fakes)."""

    def runner(self, configs: Iterable[VirtualHostConfig], **options: Any) -> Runner: ...

    def watch(self, interfaces: Iterable[str]) -> None: ...

    def start(self) -> None: ...

    def close(self) -> None: ...


class Engine:
    """One node's runner, its configuration and its publishers, in the worker's process."""

    def __init__(
        self,
        node: str,
        ports: EnginePorts,
        *,
        redis_url: str,
        store: LocalConfigStore,
        retention_days: int,
        read_config: Callable[[str], NodeConfig] = read_database,
        startup_timeout: float = DB_STARTUP_TIMEOUT,
        retry_interval: float = DB_RETRY_INTERVAL,
        resync_interval: float = RESYNC_INTERVAL,
        heartbeat_interval: float = statekeys.HEARTBEAT_INTERVAL,
        realtime_priority: int = DEFAULT_PRIORITY,
    ) -> None:
        self.node = node
        self.realtime_priority = realtime_priority
        self.realtime = Realtime()
        self.ports = ports
        self.store = store
        self.read_config = read_config
        self.startup_timeout = startup_timeout
        self.retry_interval = retry_interval
        self.resync_interval = resync_interval
        self.applied: NodeConfig | None = None
        self.saved_version: str | None = None  # what the local file holds
        self.config_source = "none"  # "database", "local", or nothing applied yet
        self.maintenance = False
        self.database_ok = False
        self.history = TransitionRecorder(node, retention_days=retention_days)
        self.state = RedisStatePublisher(
            node,
            redis_url,
            self._snapshot,
            self._status,
            interval=heartbeat_interval,
            on_reconnect=self.resync_now,
        )
        self.runner = ports.runner(
            [],
            publisher=NodePublisher(self.state, self.history),
            on_spin=self.realtime.on_spin,
        )
        # Set from the health thread, as maintenance is from the config thread: the
        # runner's controls are a queue, so neither ever blocks the protocol loop.
        self.health = HealthRunner(self.runner.set_demotion)
        self._lock = threading.Lock()
        self._converging = threading.Lock()
        self._stopping = threading.Event()
        self._resync = threading.Event()
        self._first_read = threading.Event()
        self._threads: list[threading.Thread] = []

    def resync_now(self) -> None:
        """Have the config thread read the database at once (any thread)."""
        self._resync.set()

    def _snapshot(self) -> RunnerSnapshot:
        return self.runner.snapshot()

    def _status(self) -> NodeStatus:
        applied = self.applied
        return NodeStatus(
            config_version=applied.version if applied is not None else "",
            config_source=self.config_source,
            problems=applied.problems if applied is not None else (),
            checks=self.health.statuses(),
        )

    # -- start and stop ----------------------------------------------------------------
    def start(self) -> None:
        """Start serving at once; the configuration follows from the database, or
        from the local file when the database does not answer within
        `startup_timeout` seconds."""
        self.ports.start()
        self.health.start()
        self._spawn(self._serve, "carp-engine", daemon=False)
        self.history.start()
        self.state.start()
        self._spawn(self._config_loop, "carp-config", daemon=True)
        if not self._first_read.wait(self.startup_timeout) or not self.database_ok:
            local = self.store.load()
            if local is None:
                log.warning("no database and no local configuration yet: running nothing")
            else:
                self.saved_version = local.version
                self._apply(local, "local")

    def _serve(self) -> None:
        """The engine thread: real-time scheduling for it alone, then the protocol loop.

        As the standalone daemon's loop (`cluster.carp.realtime`), so that a busy node
        (web, Celery tasks, health checks) does not delay adverts and takeovers; but
        only this thread: the worker's other threads stay normal tasks, no memory lock
        (it would pin all of Django and Celery), and no RLIMIT_RTTIME guard (SIGXCPU
        would go to Celery's main thread): the runner's ``on_spin`` check returns the
        thread to normal scheduling should the loop stop sleeping."""
        self.realtime.enter(self.realtime_priority)
        self.runner.run()

    def _spawn(self, target: Callable[[], None], name: str, daemon: bool) -> None:
        thread = threading.Thread(target=target, name=name, daemon=daemon)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> bool:
        """Bow out, remove the VIPs, publish ``stopped``; True when the runner stopped."""
        self._stopping.set()
        self._resync.set()  # ends the config thread's wait
        # Checks first: a check must not change the demotion during the bow-out, and a
        # running command is killed.
        self.health.stop()
        self.runner.request_stop()
        stopped = self.runner.stopped.wait(timeout)
        if not stopped:
            log.error("the CARP runner did not stop within %s s", timeout)
        self.state.stop()
        self.history.stop()
        self.ports.close()
        return stopped

    # -- configuration -----------------------------------------------------------------
    def _config_loop(self) -> None:
        from django.db import connection

        try:
            while not self._stopping.is_set():
                try:
                    self.converge()
                except Exception as exc:
                    if self.database_ok or not self._first_read.is_set():
                        log.warning("cannot read the configuration from the database: %s", exc)
                    self.database_ok = False
                self._first_read.set()
                wait = self.resync_interval if self.database_ok else self.retry_interval
                self._resync.wait(wait)
                self._resync.clear()
        finally:
            connection.close()

    def converge(self) -> dict[str, Any]:
        """Read the node's desired state from the database and converge to it.

        Level-triggered: the same version twice changes nothing. Raises when the
        database cannot be read (the caller retries). Returns a summary without
        the passwords, for the apply task's log.
        """
        # One converge at a time, read to save: the config thread and apply tasks (the
        # threads pool runs several) would otherwise let an earlier read be applied
        # (and saved) after a newer one, and the node run the older configuration.
        with self._converging:
            wanted = self.read_config(self.node)
            self.database_ok = True
            changed = self._apply(wanted, "database")
            # Compared with what the file holds, not with the last apply: a save that
            # failed (a full disk) is tried again at the next converge, or a restart
            # with the database down would serve an older configuration.
            if wanted.version != self.saved_version:
                try:
                    self.store.save(wanted)
                    self.saved_version = wanted.version
                except Exception:
                    log.exception("could not save the local configuration to %s", self.store.path)
        return {
            "node": self.node,
            "version": wanted.version,
            "changed": changed,
            "virtual_hosts": [[v.interface, v.vhid, v.advskew] for v in wanted.vhosts],
        }

    def _apply(self, wanted: NodeConfig, source: str) -> bool:
        with self._lock:
            if source == "local" and self.config_source == "database":
                return False  # the database answered meanwhile: it wins
            same = self.applied is not None and self.applied.version == wanted.version
            self.config_source = source
            if same:
                self._restart_missing(wanted)
                return False
            self.ports.watch(wanted.interfaces)
            # Before the virtual hosts: at boot, the checks' gating demotion is then
            # set before a virtual host of this configuration starts (and the runner
            # starts a new virtual host already demoted).
            self.health.configure(wanted.checks, wanted.address)
            self.runner.reconfigure(wanted.vhosts, retired=self._retired(wanted, source))
            if wanted.maintenance != self.maintenance:
                level = MAINTENANCE_DEMOTION if wanted.maintenance else 0
                self.runner.set_demotion(SOURCE_MAINTENANCE, level, "maintenance")
                self.maintenance = wanted.maintenance
            self.applied = wanted
        log.info(
            "applied configuration %s from the %s: %d virtual host(s)%s%s",
            wanted.version,
            source,
            len(wanted.vhosts),
            ", maintenance" if wanted.maintenance else "",
            f", {len(wanted.problems)} left out" if wanted.problems else "",
            extra={"event": "config", "version": wanted.version, "source": source},
        )
        return True

    def _retired(self, wanted: NodeConfig, source: str) -> frozenset[tuple[str, int]]:
        """The virtual hosts this node stops that no other node runs either: their
        alias was disabled or deleted, so they stop without a bow-out (no backup
        takes them over in the moment before it applies the same change). One that
        moved to other nodes bows out, so that they take over at once. Only the
        database knows which is which: from the local copy, everything bows out."""
        if self.applied is None or source != "database":
            return frozenset()
        before = {(v.interface, v.vhid) for v in self.applied.vhosts}
        now = {(v.interface, v.vhid) for v in wanted.vhosts}
        return frozenset(before - now - wanted.elsewhere)

    def _restart_missing(self, wanted: NodeConfig) -> None:
        """Hand the runner the applied configuration again when one of its virtual
        hosts is not running: its socket could not be opened (an interface not there
        yet), which the runner logs and leaves. Level-triggered: the version did not
        change, but the node does not run it yet. Harmless when the runner has simply
        not taken the last configuration yet (the same one again touches nothing)."""
        snap = self.runner.snapshot()
        if not snap.running:
            return
        running = {(h.interface, h.vhid) for h in snap.hosts}
        missing = [
            f"vhid {v.vhid} on {v.interface}"
            for v in wanted.vhosts
            if (v.interface, v.vhid) not in running
        ]
        if missing:
            log.info("virtual host(s) not running, applying again: %s", ", ".join(missing))
            self.runner.reconfigure(wanted.vhosts)
