"""What health checks cost the protocol loop: timer lateness with and without checks.

The engine's loop (cluster/carp/runner.py) sleeps in ``select()`` until its next
deadline; what matters for failover is how late it wakes. This runs a thread that
does the same (``select()`` on an eventfd with a 20 ms timeout) and measures how
late each wake-up is, alternately without and with a `HealthRunner` in the same
process probing a real SMTP service (the lab's stand-in, in its own process, on
127.0.0.1), the way a node's worker runs them. Rounds alternate so that the load
of a shared machine falls on both sides alike.

It also counts what the checks told the runner (``set_demotion``): while every
check passes, nothing after the boot gate lifts.

Needs no root: ``.venv/bin/python bench/health_overhead.py [--checks 3]
[--interval-ms 2000] [--rounds 4] [--seconds 5]``.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cluster.checks import CheckSpec  # noqa: E402
from cluster.node.health import HealthRunner  # noqa: E402

TICK = 0.02  # seconds the loop-like thread sleeps each time


def lateness(seconds: float) -> list[float]:
    """Microseconds each wake-up came after its deadline, for ``seconds``."""
    fd = os.eventfd(0, os.EFD_NONBLOCK)
    late: list[float] = []
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            deadline = time.monotonic() + TICK
            select.select([fd], [], [], TICK)
            late.append((time.monotonic() - deadline) * 1e6)
    finally:
        os.close(fd)
    return late


def line(name: str, values: list[float]) -> str:
    values = sorted(values)

    def pick(q: float) -> float:
        return values[min(len(values) - 1, int(len(values) * q))]

    return (
        f"{name}: n={len(values)} median {statistics.median(values):.0f} µs, "
        f"p95 {pick(0.95):.0f} µs, p99 {pick(0.99):.0f} µs, max {values[-1]:.0f} µs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=3)
    parser.add_argument("--interval-ms", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    smtp = subprocess.Popen(
        [sys.executable, "-m", "cluster.lab.smtp", "node1", "--host", "127.0.0.1",
         "--port", str(port)],
        cwd=REPO,
    )  # fmt: skip
    told: list[tuple[str, int, str]] = []
    off: list[float] = []
    on: list[float] = []
    try:
        time.sleep(1.0)
        checks = tuple(
            CheckSpec(f"smtp-{i}", "smtp", port=port, interval_ms=args.interval_ms,
                      timeout_ms=min(1000, args.interval_ms - 50))
            for i in range(args.checks)
        )  # fmt: skip
        for _ in range(args.rounds):
            off += lateness(args.seconds)
            health = HealthRunner(lambda *change: told.append(change))
            health.start()
            health.configure(checks, "127.0.0.1")
            on += lateness(args.seconds)
            statuses = health.statuses()
            health.stop()
            failing = [s for s in statuses if s.passing is not True]
            if failing:
                print(f"checks not passing: {failing}")
    finally:
        smtp.terminate()
        smtp.wait(5)
    print(f"{args.checks} smtp check(s) every {args.interval_ms} ms, {args.rounds} rounds")
    print(line("without checks", off))
    print(line("with checks   ", on))
    after_boot = [c for c in told if not c[2].endswith("(boot)") and c[1] != 0]
    print(f"demotion changes sent to the runner while passing: {len(after_boot)}")


if __name__ == "__main__":
    main()
