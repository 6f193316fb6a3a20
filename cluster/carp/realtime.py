"""Real-time scheduling for the protocol loop, as keepalived's ``vrrp_rt_priority``.

keepalived.conf(5) (acassen/keepalived, doc/man/man5/keepalived.conf.5.in,
``global_defs``): ``vrrp_rt_priority <1..99>`` runs the VRRP process "to use
real-time scheduling at the specified priority" (SCHED_RR in
keepalived/core/process.c), ``vrrp_rlimit_rttime`` sets RLIMIT_RTTIME, "the limit
on CPU time between blocking system calls", and ``vrrp_no_swap`` locks the
process in memory (mlockall). Its reason is ours: "a backup vrrp instance becoming
master even when the master is still running, because the master or backup system
is too busy to process vrrp packets". NOTES.md measured a busy 2-core machine
stalling our loop for 80-140 ms, the adverts leaving late.

What we do, and how it fails softly:

* `enter` puts the *calling thread* (Linux schedules threads: the standalone
  daemon's one loop, or the worker's engine thread, not the whole worker) in
  SCHED_RR at `DEFAULT_PRIORITY`, with SCHED_RESET_ON_FORK so that the hook
  scripts and the threads started later (hooks, link watcher) run as normal
  tasks. Without CAP_SYS_NICE (or an RLIMIT_RTPRIO that allows it) it logs one
  line and the loop runs as before.
* ``lock_memory``: ``mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`` through
  ctypes, keepalived's vrrp_no_swap. MCL_ONFAULT locks pages as they are touched
  rather than faulting in every mapping (a thread's 8 MiB stack reserve), so the
  resident size does not grow. For the standalone daemon only: in a worker it
  would lock Django and Celery too.
* `guard_cpu`: RLIMIT_RTTIME (keepalived's vrrp_rlimit_rttime) with a SIGXCPU
  handler that returns the thread to normal scheduling: should the loop ever run
  for `CPU_LIMIT` s without sleeping (a bug, a flood), it stops starving the
  machine. The kernel's RT throttling (95 %) is not relied on. Needs the main
  thread (signal handlers), so the daemon only; the `Runner`'s own spin check
  (``on_spin``) covers the worker's engine thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import resource
import signal
import threading
import time
from types import FrameType
from typing import Any

log = logging.getLogger("cluster.carp")

# Any real-time priority runs before every normal task; a low one stays below the
# kernel's threaded interrupt handlers (SCHED_FIFO 50), which deliver our adverts.
DEFAULT_PRIORITY = 10
MAX_PRIORITY = 99
# RLIMIT_RTTIME: CPU seconds without sleeping before SIGXCPU. A takeover of 255
# VIPs costs tens of ms; keepalived's 10 ms default is for C.
CPU_LIMIT = 1.0

_MCL_CURRENT, _MCL_FUTURE, _MCL_ONFAULT = 1, 2, 4


class Realtime:
    """The real-time state of one thread: `enter`, `leave`, and what happened."""

    def __init__(self) -> None:
        self.tid: int | None = None
        self.priority = 0  # 0: normal scheduling
        self.memory_locked = False

    def enter(self, priority: int = DEFAULT_PRIORITY, *, lock_memory: bool = False) -> bool:
        """Run the calling thread in SCHED_RR at ``priority`` (0: do nothing); True if it
        does. Failing is logged once and harmless."""
        if not 0 <= priority <= MAX_PRIORITY:
            raise ValueError(f"realtime priority must be 0..{MAX_PRIORITY}, not {priority}")
        if priority == 0:
            return False
        tid = threading.get_native_id()
        policy = os.SCHED_RR | os.SCHED_RESET_ON_FORK
        try:
            os.sched_setscheduler(tid, policy, os.sched_param(priority))
        except OSError as exc:
            log.info(
                "real-time scheduling not available (%s): the CARP loop runs at normal"
                " priority, and adverts may leave late while the machine is busy",
                exc.strerror or exc,
                extra={"event": "realtime", "priority": 0},
            )
            return False
        self.tid, self.priority = tid, priority
        if lock_memory:
            self.memory_locked = lock_all_memory()
        log.info(
            "CARP loop in real-time scheduling (SCHED_RR %d%s)",
            priority,
            ", memory locked" if self.memory_locked else "",
            extra={"event": "realtime", "priority": priority, "memory": self.memory_locked},
        )
        return True

    def leave(self, why: str) -> None:
        """Back to normal scheduling (any thread; once)."""
        tid, self.tid, self.priority = self.tid, None, 0
        if tid is None:
            return
        try:
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        except OSError as exc:
            log.error("could not leave real-time scheduling: %s", exc)
            return
        log.warning(
            "CARP loop back to normal scheduling: %s",
            why,
            extra={"event": "realtime", "priority": 0, "reason": why},
        )

    def on_spin(self) -> None:
        """The runner's ``on_spin``: its loop stopped sleeping, so leave real-time."""
        self.leave("the loop stopped sleeping")

    def guard_cpu(self, limit: float = CPU_LIMIT) -> bool:
        """Leave real-time scheduling if the loop runs ``limit`` s of CPU without sleeping
        (RLIMIT_RTTIME, SIGXCPU). Main thread only; True when the guard is set."""
        if self.tid is None or threading.current_thread() is not threading.main_thread():
            return False

        def on_xcpu(_signum: int, _frame: FrameType | None) -> None:
            self.leave(f"it ran {limit:g} s of CPU without sleeping (RLIMIT_RTTIME)")

        try:
            signal.signal(signal.SIGXCPU, on_xcpu)
            _soft, hard = resource.getrlimit(resource.RLIMIT_RTTIME)
            resource.setrlimit(resource.RLIMIT_RTTIME, (int(limit * 1_000_000), hard))
        except (OSError, ValueError) as exc:
            log.info("no CPU guard for real-time scheduling (%s)", exc)
            return False
        return True


def lock_all_memory() -> bool:
    """mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT); False (logged) if refused."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.mlockall(_MCL_CURRENT | _MCL_FUTURE | _MCL_ONFAULT) == 0:
            return True
        error = ctypes.get_errno()
    except (OSError, AttributeError) as exc:
        log.info("memory not locked: %s", exc)
        return False
    log.info("memory not locked: %s", os.strerror(error))
    return False


# gc.set_threshold: a gen-0 collection every this many net allocations (default 700).
# The loop's short-lived objects (packets, adverts, actions) are freed at once and
# never count; what survives a step is little, so this mostly thins out the gen-1/2
# passes over the heap.
GC_THRESHOLDS = (10_000, 20, 20)


def quiet_gc() -> None:
    """After start-up: collect once, then `gc.freeze` what is left (the modules,
    configuration and sockets live as long as the process), so that later full
    collections do not walk them, and raise the gen-0 threshold."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class GcPauses:
    """How long the garbage collector paused the process, per generation (gc.callbacks)."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.total = [0.0, 0.0, 0.0]
        self.longest = [0.0, 0.0, 0.0]
        self._began = 0.0

    def install(self) -> None:
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        generation = int(info.get("generation", 2))
        pause = time.perf_counter() - self._began
        self.count[generation] += 1
        self.total[generation] += pause
        self.longest[generation] = max(self.longest[generation], pause)

    def log(self) -> None:
        log.info(
            "garbage collections (gen 0/1/2): %s; total %s ms; longest %s ms",
            "/".join(map(str, self.count)),
            "/".join(f"{t * 1000:.1f}" for t in self.total),
            "/".join(f"{t * 1000:.2f}" for t in self.longest),
            extra={
                "event": "gc",
                "count": list(self.count),
                "total_ms": [round(t * 1000, 3) for t in self.total],
                "longest_ms": [round(t * 1000, 3) for t in self.longest],
            },
        )


__all__ = [
    "CPU_LIMIT",
    "DEFAULT_PRIORITY",
    "GcPauses",
    "Realtime",
    "lock_all_memory",
    "quiet_gc",
]
