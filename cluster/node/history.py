"""The transition history: one `Transition` row per state change, from a thread of its own.

`TransitionRecorder.add` only appends to a bounded buffer (the protocol loop
calls it); the thread writes the buffer through `cluster/services.py` when woken
and, while the database is down, retries every `retry_interval` s, dropping the
oldest rows beyond `buffer_size` (counted in `dropped`). About once an hour it
prunes rows older than `retention_days`, even on a quiet cluster.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import logging
import threading
import time
from dataclasses import dataclass

from cluster import services
from cluster.node.outage import RateLimitedOutage

log = logging.getLogger("cluster.node")

DB_RETRY_INTERVAL = 3.0  # seconds between two writes while the database is unreachable
TRANSITION_BUFFER_SIZE = 10_000  # transitions kept while the database is down
PRUNE_INTERVAL = 3600.0


@dataclass(frozen=True)
class _Pending:
    seq: int
    row: services.TransitionData


class TransitionRecorder:
    """Writes the node's transitions to the database, buffered, from its own thread."""

    def __init__(
        self,
        node: str,
        *,
        retention_days: int,
        buffer_size: int = TRANSITION_BUFFER_SIZE,
        retry_interval: float = DB_RETRY_INTERVAL,
        prune_interval: float = PRUNE_INTERVAL,
    ) -> None:
        self.node = node
        self.retention_days = retention_days
        self.retry_interval = retry_interval
        self.prune_interval = prune_interval
        self.dropped = 0
        self._buffer: collections.deque[_Pending] = collections.deque(maxlen=buffer_size)
        self._lock = threading.Lock()
        self._seq = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._outage = RateLimitedOutage("the database (transition history)", log)

    def add(
        self,
        interface: str,
        vhid: int,
        old: str,
        new: str,
        reason: str,
        at: float,
        source: str = "",
    ) -> None:
        row: services.TransitionData = {
            "vhid": vhid,
            "interface": interface,
            "from_state": old,
            "to_state": new,
            "reason": reason,
            "source": source,
            "at": datetime.datetime.fromtimestamp(at, tz=datetime.UTC),
        }
        with self._lock:
            if len(self._buffer) == self._buffer.maxlen:
                self.dropped += 1  # the deque drops the oldest
            self._seq += 1
            self._buffer.append(_Pending(self._seq, row))
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def flush(self) -> bool:
        """Write what is buffered; False (and the rows kept) if the database refused."""
        from django.db import close_old_connections

        with self._lock:
            batch = list(self._buffer)
        if not batch:
            return True
        close_old_connections()
        try:
            kept = services.record_transitions(self.node, [p.row for p in batch])
            if not kept:
                log.warning("node %s is not in the database: %d transitions not kept",
                            self.node, len(batch))  # fmt: skip
        except Exception as exc:
            self._outage.failed(exc)
            return False
        finally:
            close_old_connections()
        self._outage.succeeded()
        with self._lock:
            while self._buffer and self._buffer[0].seq <= batch[-1].seq:
                self._buffer.popleft()
        return True

    def prune(self) -> int:
        from django.db import close_old_connections

        close_old_connections()
        try:
            deleted = services.prune_transitions(self.retention_days)
        finally:
            close_old_connections()
        if deleted:
            log.info("pruned %d transitions older than %d days", deleted, self.retention_days)
        return deleted

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="carp-history", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def _run(self) -> None:
        from django.db import connection

        next_prune = time.monotonic()
        try:
            while True:
                # Idle, it still wakes for the next prune: a quiet cluster writes no
                # transitions, and its old rows must go all the same.
                until_prune = max(0.0, next_prune - time.monotonic())
                self._wake.wait(
                    timeout=min(self.retry_interval, until_prune) if self.pending else until_prune
                )
                if not self._stopping.is_set():
                    self._wake.clear()
                ok = self.flush()
                if self._stopping.is_set():
                    return
                if ok and time.monotonic() >= next_prune:
                    with contextlib.suppress(Exception):
                        self.prune()
                    next_prune = time.monotonic() + self.prune_interval
        finally:
            connection.close()
