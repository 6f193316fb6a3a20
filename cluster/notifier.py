"""The notifier process (``manage.py notifier``): detect cluster events, deliver them.

Two threads (and the status hub's), each with its own database connection:

- *detection*: each new live status of the process's status hub (cluster/hub.py
  computes it once per change: a message on ``carp:events``, a heartbeat that
  says something new or expires, a desired change), and the newest again at least
  once a second; ``cluster.events.detect`` compares it with the previous one and
  with what was stored last; ``cluster.notify.store_events`` stores each event
  once, with its deliveries, and wakes the sender. Each event stored is then
  announced on ``carp:events`` (`Announcer`, a thread of its own) so that every
  open status page lists it at once.
- *delivery*: claims due deliveries by compare-and-set and sends them, with
  retries and back-off; it also polls, so that a retry comes due, and a delivery
  stored by another notifier, or before this one started, is sent; and, at most
  once an hour, it prunes old events and deliveries (cluster/retention.py).

Any number may run (say one beside each web server): each event is stored once and
each delivery sent once. SIGTERM or SIGINT stops it after the delivery in hand.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection
from redis.exceptions import RedisError

from cluster import events, live, notify, retention, services, statekeys
from cluster.api.serializers import ClusterEventSerializer
from cluster.hub import BackgroundHub
from cluster.models import ClusterEvent

log = logging.getLogger(__name__)

TICK = 1.0  # detection at least this often
DELIVERY_POLL = 1.0  # the sender looks for due deliveries at least this often
DESIRED_EVERY = 30.0  # seconds between two reads of the desired versions with no news
MEMORY_EVERY = 30.0  # re-read what was stored last per subject (other notifiers store too)
SENDERS = 4  # deliveries sent side by side
ANNOUNCE_BACKLOG = 100  # batches of stored events waiting to be announced, at most


class Announcer:
    """Tells the status pages about stored events: one ``cluster_event`` message per
    event on ``carp:events`` (the hubs forward it to each open page's stream).

    In a thread of its own, after the commit: a Redis that is down or slow never
    holds up detection or fails it (the database is the record; a page shows the
    event at its next load). A backlog beyond ``ANNOUNCE_BACKLOG`` batches is dropped.
    """

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.dropped = 0  # batches not announced: Redis too slow for too long
        self._pending = 0
        self._lock = threading.Lock()
        self._client: Any = None
        # Its thread starts at the first announcement and ends with the executor.
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "notifier-announce")

    def announce(self, rows: Sequence[ClusterEvent]) -> None:
        """Queue the announcement of ``rows`` (committed already); never waits."""
        try:
            messages = [
                statekeys.ClusterEventMessage.from_public(ClusterEventSerializer(row).data)
                for row in rows
            ]
        except statekeys.Unreadable:
            log.exception("a stored event cannot be announced")
            return
        with self._lock:
            if self._pending >= ANNOUNCE_BACKLOG:
                self.dropped += 1
                log.warning("%d stored event(s) not announced: Redis is behind", len(rows))
                return
            self._pending += 1
        try:
            self._executor.submit(self._publish, messages)
        except RuntimeError:  # closed: the notifier is stopping
            with self._lock:
                self._pending -= 1

    def _publish(self, messages: list[statekeys.ClusterEventMessage]) -> None:
        try:
            if self._client is None:
                self._client = statekeys.sync_client(self.redis_url, timeout=live.REDIS_TIMEOUT)
            pipe = self._client.pipeline(transaction=False)
            for message in messages:
                pipe.publish(statekeys.EVENTS_CHANNEL, statekeys.encode_message(message))
            pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("%d stored event(s) not announced to the pages: %s", len(messages), exc)
        finally:
            with self._lock:
                self._pending -= 1

    def flush(self, timeout: float = 5.0) -> None:
        """Wait for the announcements queued so far (tests)."""
        self._executor.submit(lambda: None).result(timeout)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._client is not None:
            with contextlib.suppress(RedisError, OSError):
                self._client.close()


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
        self.announcer = Announcer(settings.REDIS_URL)

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
            self.announcer.announce(stored)
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
            self.announcer.close()
            log.info("notifier %s stopped", self.name)

    def shutdown(self) -> None:
        self.stop.set()
        self.wake.set()
