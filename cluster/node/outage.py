"""One log line when a dependency goes away, one a minute while it stays away, one
when it is back: an outage of Redis or the database must not write a line per
message. The node host's publishers and the event stream all use this."""

from __future__ import annotations

import logging
import time

from cluster.carp.ratelimit import LogLimiter

OUTAGE_LOG_INTERVAL = 60.0  # seconds between two "still unreachable" lines


class RateLimitedOutage:
    """Tracks one dependency's outage and logs it without flooding."""

    def __init__(
        self, what: str, logger: logging.Logger, interval: float = OUTAGE_LOG_INTERVAL
    ) -> None:
        self.what = what
        self.log = logger
        self.interval = interval
        self.down_since: float | None = None
        self._limit = LogLimiter(interval)

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
            self._limit.allow(self.what, now)
            self.log.warning("%s unreachable (%s); going on without it", self.what, exc)
        elif self._limit.allow(self.what, now):
            self.log.warning("%s still unreachable after %.0f s", self.what, now - self.down_since)

    def succeeded(self) -> bool:
        """Record a success; True when it ends an outage."""
        if self.down_since is None:
            return False
        self.log.warning("%s is back after %.0f s", self.what, time.monotonic() - self.down_since)
        self.down_since = None
        self._limit.reset(self.what)
        return True
