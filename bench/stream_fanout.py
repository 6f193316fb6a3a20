"""The status hub's fan-out to N status pages, server side only (issue 11).

No cluster: a `StatusHub` that computes nothing is handed updates (a status of
about 8 KB, as the nine-node demo's, with one transition each), and N
``hub.event_stream`` generators send them through Django's
``ASGIHandler.send_response`` and uvicorn (h11), as ``/system/cluster/events/``
does. N clients read the N connections from one thread of another process
(``select``), and stamp each status event when the read that completes it
returns. The latency runs from the hub's publication of an update to each
stream's arrival: the per-stream cost of the fan-out, one stream after the
other on the server's event loop.

Reference, run beside: the same streams sending each update as the stream did
before one chunk per update (``Update.sse``): a chunk per event, the
transition events encoded by each stream.

Target: the last of 100 streams under 20 ms (median), a fifth of issue 11's
100 ms for the whole path. ``.venv/bin/python bench/stream_fanout.py
[--streams 100] [--updates 30]``; exits 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import selectors
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_LAST_MEDIAN_MS = 20.0
GAP = 0.25  # seconds between updates: every stream has sent the last one


def status_body() -> dict[str, Any]:
    """A status the size of the nine-node demo's (about 8 KB of JSON)."""
    nodes = [
        {"name": f"node{i}", "reporting": True, "maintenance": False, "last_seen": 0.0,
         "summary": "reporting", "demotion": {"total": 0, "sources": []}, "checks": []}
        for i in range(1, 10)
    ]  # fmt: skip
    aliases = [
        {"id": a, "vhid": a, "description": "demo alias", "addresses": [f"192.0.2.{100 + a}/24"],
         "owner": "node1", "masters": ["node1"],
         "cells": [{"node": f"node{i}", "state": "BACKUP", "priority": "backup",
                    "advskew": 13 * i, "stale": False} for i in range(1, 10)]}
        for a in range(1, 9)
    ]  # fmt: skip
    return {"available": True, "generated_at": 0.0, "nodes": nodes, "aliases": aliases}


def client(port: int, streams: int, updates: int) -> None:
    """Read every stream in one thread; print, per update, each stream's arrival."""
    selector = selectors.DefaultSelector()
    for index in range(streams):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /events/ HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, index)
    pending = [b""] * streams
    seen = [0] * streams  # status events, the first (on connect) included
    arrivals: list[list[float]] = [[] for _ in range(updates)]
    while min(seen) <= updates:
        for key, _ in selector.select(10):
            data = key.fileobj.recv(1 << 20)  # type: ignore[union-attr]
            arrived = time.time()
            if not data:
                raise SystemExit("a stream ended")
            index = key.data
            # Status events only; chunked transfer framing between them is skipped.
            *complete, pending[index] = (pending[index] + data).split(b"\n\n")
            for event in complete:
                if b"event: status" in event:
                    if 0 < seen[index] <= updates:
                        arrivals[seen[index] - 1].append(arrived)
                    seen[index] += 1
    print(json.dumps(arrivals))


async def per_event(status_hub: Any) -> AsyncGenerator[str, None]:
    """The stream as it was: each update as a chunk per event."""
    from cluster import live, statekeys

    with status_hub.subscribe() as updates:
        first = await status_hub.wait_latest()
        yield live.sse("status", {**first.data, "trigger": []})
        async for update in updates:
            for message in update.transitions:
                yield live.sse("transition", statekeys.message_dict(message))
            yield update.sse_status()


async def serve(streams: int, updates: int, reference: bool) -> list[list[float]]:
    """Publishing times and arrivals: per update, each stream's latency in seconds."""
    import uvicorn
    from django.core.handlers.asgi import ASGIHandler
    from django.http import StreamingHttpResponse

    from cluster import hub, statekeys
    from cluster.carp.types import State

    status_hub = hub.StatusHub("redis://unused")  # never started: nothing is computed
    handler = ASGIHandler()
    body = status_body()

    def update(seq: int) -> hub.Update:
        data = dict(body, generated_at=time.time())
        text = json.dumps(data, separators=(",", ":"))
        message = statekeys.TransitionMessage(
            "node2", "eth0", 1, State.BACKUP, State.MASTER,
            "master_down", time.time(),
        )  # fmt: skip
        return hub.Update(seq, None, data, text, (message,), time.time())  # type: ignore[arg-type]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        stream = per_event(status_hub) if reference else hub.event_stream("", status_hub)
        response = StreamingHttpResponse(stream, content_type="text/event-stream")
        # The streams never end by themselves: the bench cancels them at its end.
        with contextlib.suppress(asyncio.CancelledError):
            await handler.send_response(response, send)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", http="h11")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    status_hub._publish(update(1), fan_out=True)
    argv = [sys.executable, __file__, "--client", str(port), str(streams), str(updates)]
    reader = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    while status_hub.subscribers < streams:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    published = []
    for seq in range(2, updates + 2):
        published.append(time.time())
        status_hub._publish(update(seq), fan_out=True)
        await asyncio.sleep(GAP + random.random() * GAP / 5)
    out, _ = await asyncio.to_thread(reader.communicate, timeout=60)
    server.should_exit = True
    server.force_exit = True  # the streams never end by themselves
    task.cancel()
    arrivals = json.loads(out)
    return [[a - at for a in each] for at, each in zip(published, arrivals, strict=True)]


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--client":
        client(*(int(a) for a in sys.argv[2:]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--updates", type=int, default=30)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appliance.settings")
    os.environ.setdefault("DEBUG", "1")
    import django

    django.setup()
    from tests.e2e.console import machine

    print(machine(), f"load average {os.getloadavg()[0]:.2f}")
    medians = []
    for name, reference in (("one chunk per update", False), ("reference: chunk per event", True)):
        latencies = asyncio.run(serve(args.streams, args.updates, reference))
        print(f"{name}, {args.streams} streams, {args.updates} updates:")
        print(spread("  publication -> every stream", [v for each in latencies for v in each]))
        last = [max(each) for each in latencies]
        print(spread("  publication -> the last stream", last))
        medians.append(statistics.median(last))
    new, old = medians
    met = new * 1000 < TARGET_LAST_MEDIAN_MS
    print(
        f"the last stream, median: {new * 1000:.1f} ms, {new / old:.2f} x the reference; "
        f"target < {TARGET_LAST_MEDIAN_MS:.0f} ms: {'met' if met else 'MISSED'}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    return 0 if met else 1


def spread(name: str, seconds: list[float]) -> str:
    ms = sorted(value * 1000 for value in seconds)
    p95 = statistics.quantiles(ms, n=100, method="inclusive")[94]
    return f"{name}: median {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms, max {ms[-1]:.1f} ms"


if __name__ == "__main__":
    sys.exit(main())
