"""The one rate limit for log lines, for the engine and the node host alike.

A peer with the wrong password sends a bad advert every second, and a Redis
outage fails every message: each must be said, but not once per packet. Pure:
the caller passes ``now`` (its own monotonic clock).
"""

from __future__ import annotations


class LogLimiter:
    """At most one line per key every ``interval`` seconds."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}

    def allow(self, key: str, now: float) -> bool:
        """True (and the key's clock restarted) when a line for ``key`` may go out now."""
        if now - self._last.get(key, float("-inf")) < self.interval:
            return False
        self._last[key] = now
        return True

    def reset(self, key: str) -> None:
        """The next line for ``key`` goes out at once (its condition ended)."""
        self._last.pop(key, None)
