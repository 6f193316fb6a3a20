"""The notifier process (``manage.py notifier``): detect cluster events, deliver them.

Two threads (and the status hub's), each with its own database connection:

- *detection*: each new live status of the process's status hub (cluster/hub.py
  computes it once per change: a message on ``carp:events``, a heartbeat that
  says something new or expires, a desired change), and the newest again at least
  once a second; ``cluster.events.detect`` compares it with the previous one and
  with what was stored last; ``cluster.notify.store_events`` stores each event
  once, with its deliveries, and wakes the sender.
- *delivery*: claims due deliveries by compare-and-set and sends them, with
  retries and back-off; it also polls, so that a retry comes due, and a delivery
  stored by another notifier, or before this one started, is sent; and, at most
  once an hour, it prunes old events and deliveries (cluster/retention.py).

Any number may run (say one beside each web server): each event is stored once and
each delivery sent once. SIGTERM or SIGINT stops it after the delivery in hand.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection

from cluster import events, live, notify, retention, services, statekeys
from cluster.hub import BackgroundHub

log = logging.getLogger(__name__)

TICK = 1.0  # detection at least this often
DELIVERY_POLL = 1.0  # the sender looks for due deliveries at least this often
DESIRED_EVERY = 30.0  # seconds between two reads of the desired versions with no news
MEMORY_EVERY = 30.0  # re-read what was stored last per subject (other notifiers store too)
SENDERS = 4  # deliveries sent side by side


class Notifier:
    """One notifier: ``run()`` until ``stop`` is set."""

    def __init__(
        self,
        name: str | None = None,
        status: Callable[[], dict[str, Any]] | None = None,
        drift_grace: float | None = None,
    ) -> None:
        self.name = name or notify.notifier_name()
        self.stop = threading.Event()
        self.wake = threading.Event()
        self._status = status or (lambda: live.compute_status().as_dict())
        self.drift_grace = (
            drift_grace if drift_grace is not None else float(settings.NOTIFY_DRIFT_GRACE_SECONDS)
        )
        self.state = events.DetectorState()
        self.memory: dict[str, str] = {}
        self.previous: dict[str, Any] | None = None
        self._desired: dict[str, str] | None = None
        self._desired_at = 0.0
        self._verified: set[tuple[str, str]] = set()  # differences seen with fresh versions
        self._memory_at = 0.0

    # -- detection --------------------------------------------------------------
    def detect_once(
        self, status: dict[str, Any] | None = None, desired_changed: bool = False
    ) -> list[Any]:
        """Detection on ``status`` (computed here when None), its events stored;
        returns the stored rows. ``desired_changed``: a ``desired`` message came
        with it (the desired versions are read again)."""
        now = time.time()
        if now - self._memory_at >= MEMORY_EVERY:
            self.memory = notify.load_memory()
            self._memory_at = now
        if status is None:
            status = self._status()
        found = events.detect(
            self.previous, status, now, self.memory, self.state, self._desired, self.drift_grace
        )
        self.previous = status
        stored = notify.store_events(found, self.memory)
        if stored:
            self.wake.set()
        # Then, off the path of the events just stored, the desired versions: read
        # again after a desired change, every DESIRED_EVERY, and at once when a node
        # is seen on a version other than the one read (a node that applied a change
        # before this notifier read it must not look drifted: the drift's grace
        # period has only begun). A node that stays drifted is not read again for it.
        differing = self._differing(status)
        stale = self._desired is None or now - self._desired_at >= DESIRED_EVERY
        if stale or desired_changed or not differing <= self._verified:
            try:
                self._desired = services.desired_versions()
                self._desired_at = now
                self._verified = self._differing(status)
            except Exception:  # the database away: no drift detection this round
                log.exception("cannot read the desired configuration versions")
        return stored

    def _differing(self, status: dict[str, Any]) -> set[tuple[str, str]]:
        """(node, applied version) of each reporting node not on the desired version."""
        desired = self._desired or {}
        return {
            (str(node["name"]), str(node["config_version"]))
            for node in status.get("nodes") or []
            if node.get("reporting")
            and node.get("config_version") is not None
            and node.get("config_version") != desired.get(node["name"])
        }

    def _detection_loop(self) -> None:
        """Detection on each status the process's hub computes (one computation per
        change: a transition, a heartbeat that says something new or expires, a
        desired change; cluster/hub.py), and on the newest one at least once a
        second, so that the hold and grace periods run out on time."""
        statuses = BackgroundHub(settings.REDIS_URL)
        try:
            for update in statuses.updates(timeout=TICK):
                if self.stop.is_set():
                    break
                newest = update or statuses.latest()
                if newest is None:
                    continue
                desired = update is not None and any(
                    isinstance(m, statekeys.DesiredMessage) for m in update.trigger
                )
                try:
                    self.detect_once(newest.data, desired_changed=desired)
                except Exception:
                    # The database away: try again at the next status, on a new connection.
                    log.exception("event detection failed")
                    close_old_connections()
                    connection.close()
                    self.stop.wait(TICK)
        finally:
            statuses.close()
            connection.close()

    # -- delivery ---------------------------------------------------------------
    def _delivery_loop(self) -> None:
        # Each sender thread keeps its own database connection (Django's are per thread).
        pruning = retention.Schedule()  # old events and deliveries, at most hourly
        with concurrent.futures.ThreadPoolExecutor(SENDERS, "notifier-send") as pool:
            while not self.stop.is_set():
                self.wake.clear()
                try:
                    notify.deliver_due(self.name, pool=pool)
                except Exception:
                    log.exception("delivery round failed")
                    close_old_connections()
                pruning.run()
                self.wake.wait(DELIVERY_POLL)
            list(pool.map(lambda _: connection.close(), range(SENDERS)))
        connection.close()

    def run(self) -> None:
        log.info("notifier %s started", self.name)
        sender = threading.Thread(target=self._delivery_loop, name="notifier-delivery")
        sender.start()
        try:
            self._detection_loop()
        finally:
            self.stop.set()
            self.wake.set()
            sender.join()
            log.info("notifier %s stopped", self.name)

    def shutdown(self) -> None:
        self.stop.set()
        self.wake.set()
