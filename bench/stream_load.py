"""An unrelated API call while many status pages are open (issue 11).

Runs the demo cluster (cluster.lab, ``--nodes`` nodes, default 9, the console
under uvicorn), then times ``GET /api/v1/nodes/`` with the administrator's
token: first with no status page open, then with ``--streams`` event streams
open (``/system/cluster/events/``, read as a browser's EventSource does, each
with its own connection). Every stream must have had its first status before
the timing starts. Prints median and p95 for both, and the ratio.

Target (issue 11): with 100 open event streams, p95 < 50 ms. Run as root:
``.venv/bin/python bench/stream_load.py [--streams 100] [--requests 60]``;
exits 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cluster.lab.lan import wait_until
from tests.e2e.console import Console, EventStream, figures, machine, running_cluster

TARGET_P95_MS = 50.0
PATH = "/api/v1/nodes/"


def timed_calls(console: Console, count: int, pause: float = 0.05) -> list[float]:
    """Seconds per ``GET /api/v1/nodes/``, one after the other with a short pause
    (a script polling the API, not a load generator)."""
    values = []
    for _ in range(count):
        request = urllib.request.Request(console.url + PATH)
        request.add_header("Authorization", f"Token {console.token}")
        request.add_header("Accept", "application/json")
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
        values.append(time.perf_counter() - started)
        time.sleep(pause)
    return values


def open_streams(console: Console, count: int, timeout: float = 120.0) -> list[EventStream]:
    cookie = console.session_cookie()
    streams = [EventStream(console.url, cookie) for _ in range(count)]

    def all_have_a_status() -> bool:
        return all(any(e.name == "status" for e in s.since(0)) for s in streams)

    wait_until(all_have_a_status, timeout, interval=0.2, what="every stream's first status")
    return streams


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=9)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--requests", type=int, default=60)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    print(machine())
    with (
        tempfile.TemporaryDirectory(prefix="stream-load-") as tmp,
        running_cluster(Path(tmp), nodes=args.nodes) as console,
    ):
        timed_calls(console, 5)  # warm-up: the first calls load code and fill caches
        idle = timed_calls(console, args.requests)
        started = time.perf_counter()
        streams = open_streams(console, args.streams)
        print(f"{args.streams} streams opened, each with its first status, in "
              f"{time.perf_counter() - started:.1f} s")  # fmt: skip
        try:
            time.sleep(2)  # past the first statuses: the steady state
            loaded = timed_calls(console, args.requests)
            statuses = sum(1 for s in streams for e in s.since(0) if e.name == "status")
        finally:
            for stream in streams:
                stream.close()
    print(f"{args.nodes} nodes; {statuses} status events reached the {args.streams} streams")
    line, _ = figures(f"{PATH} with no stream open", idle, TARGET_P95_MS)
    print(line)
    line, met = figures(f"{PATH} with {args.streams} streams open", loaded, TARGET_P95_MS)
    print(line)
    ratio = statistics.median(loaded) / statistics.median(idle)
    print(f"median with streams / median without: {ratio:.1f}x")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
