"""The desired state's generation in this process: a counter the services' writes
bump after their commit (``cluster.dispatch.announce_desired_change``) and the
status hub reads, so that a reader right after its own write waits for a status
that includes it.

A leaf module: the dispatch (called by the services) and the hub (which reads the
services' data) both import it, and neither imports the other.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

_counter = itertools.count(1)
_generation = 0
_lock = threading.Lock()
_listeners: list[Callable[[], None]] = []


def generation() -> int:
    return _generation


def changed() -> None:
    """A commit changed the desired state: a new generation, and each listener told."""
    global _generation
    with _lock:
        _generation = next(_counter)
    for listener in list(_listeners):
        listener()


def listen(listener: Callable[[], None]) -> None:
    """Call ``listener`` (cheap, non-blocking) after every change."""
    if listener not in _listeners:
        _listeners.append(listener)
