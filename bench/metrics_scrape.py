"""A scrape of ``/metrics`` with 9 nodes and 255 aliases (issue 11).

The database (a throwaway SQLite file, or DATABASE_URL's test database) gets 9
nodes and 255 aliases through cluster.services (bench/list_latency.py's
``populate``); a private redis-server gets the live state nine engines would
write: a heartbeat per node and a hash per virtual host (255 x 9), with
counters, and 2,000 transitions in the history. Then ``GET /metrics`` with the
scrape bearer token, through django.test.Client (the whole Django stack, no
network), ``--requests`` times, two ways:

- as the web process serves it: the status hub (cluster/hub.py) runs, so the
  scrape reads its status and computes nothing but the counters;
- with no hub (a process that has none falls back to computing the status).

Prints median and p95 of each and exits 1 if the first p95 is over the target.

    .venv/bin/python bench/metrics_scrape.py [--requests 50]
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The same data as the alias-list benchmark (one module per script for mypy: by name).
_list_latency: Any = importlib.import_module("bench.list_latency")
ALIASES: int = _list_latency.ALIASES
NODES: int = _list_latency.NODES
configure, populate = _list_latency.configure, _list_latency.populate

TARGET_P95_MS = 200.0
TOKEN = "bench-scrape-" + "t" * 40
STATES = ("MASTER", "BACKUP")


def write_live_state(url: str) -> None:
    """What nine engines publish: a heartbeat each and a hash per virtual host."""
    from cluster import statekeys
    from cluster.carp.types import State

    client = statekeys.sync_client(url)
    now = time.time()
    pipe = client.pipeline(transaction=False)
    for ordinal in range(1, NODES + 1):
        node = f"node{ordinal}"
        beat = statekeys.Heartbeat(
            node=node, at=now, pid=ordinal, drops={"bad_hmac": ordinal}, config_source="database"
        )
        pipe.set(statekeys.heartbeat_key(node), beat.encode(), ex=3600)
        for vhid in range(1, ALIASES + 1):
            primary = (vhid - 1) % NODES + 1
            state = statekeys.VhostState(
                node=node, interface="eth0", vhid=vhid,
                state=State(STATES[0 if ordinal == primary else 1]),
                advbase=1, advskew=ordinal * 13, adverts_sent=1000 + vhid,
                adverts_received=2000 + vhid, last_reason="startup", last_at=now, updated_at=now,
            )  # fmt: skip
            pipe.hset(statekeys.vhost_key(node, "eth0", vhid), mapping=state.to_hash())
            pipe.sadd(statekeys.node_vhosts_key(node), statekeys.vhost_member("eth0", vhid))
    pipe.execute()
    client.close()


def write_history(count: int = 2000) -> None:
    from cluster.models import Node, Transition

    nodes = list(Node.objects.all())
    at = datetime.datetime.now(tz=datetime.UTC)
    Transition.objects.bulk_create(
        Transition(node=nodes[i % len(nodes)], vhid=i % ALIASES + 1, interface="eth0",
                   from_state="BACKUP", to_state="MASTER", reason="master_down", at=at)
        for i in range(count)
    )  # fmt: skip


CPU: list[float] = []  # CPU seconds of this process per scrape (the machine may be busy)


def measure(count: int) -> list[float]:
    from django.test import Client

    client = Client()
    headers: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
    for _ in range(3):
        assert client.get("/metrics", **headers).status_code == 200
    timings = []
    CPU.clear()
    for _ in range(count):
        started, cpu = time.perf_counter(), time.process_time()
        response = client.get("/metrics", **headers)
        timings.append(time.perf_counter() - started)
        CPU.append(time.process_time() - cpu)
        assert response.status_code == 200
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    tmp = configure()
    os.environ["METRICS_BEARER_TOKEN"] = TOKEN
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from appliance.startup import warm_up_and_freeze
    from cluster import hub
    from cluster.lab.redisd import RedisServer
    from tests.e2e.console import figures, machine

    print(machine())
    old_name = None
    if tmp is None:
        old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    else:
        call_command("migrate", verbosity=0)
    try:
        with tempfile.TemporaryDirectory(prefix="scrape-redis-") as redis_dir:
            redis = RedisServer(Path(redis_dir)).start()
            try:
                settings.REDIS_URL = redis.url
                populate()
                write_live_state(redis.url)
                write_history()
                warm_up_and_freeze()
                background = hub.BackgroundHub(redis.url)
                try:
                    assert next(background.updates(timeout=30)) is not None
                    hub._shared = background.hub  # as the web process's own hub
                    with_hub = measure(args.requests)
                    cpu_with_hub = list(CPU)
                finally:
                    hub._shared = None
                    background.close()
                without_hub = measure(args.requests)
            finally:
                redis.stop()
    finally:
        if old_name is not None:
            connection.creation.destroy_test_db(old_name, verbosity=0)
        if tmp is not None:
            tmp.cleanup()
    print(f"database: {connection.vendor}; {NODES} nodes, {ALIASES} aliases, "
          f"{NODES * ALIASES} virtual hosts in Redis, 2000 transitions")  # fmt: skip
    line, met = figures("GET /metrics, status from the hub", with_hub, TARGET_P95_MS)
    print(line)
    line, _ = figures("  CPU time of the web process per scrape", cpu_with_hub, TARGET_P95_MS)
    print(line)
    line, _ = figures("GET /metrics, no hub (computes the status)", without_hub, TARGET_P95_MS)
    print(line)
    ratio = statistics.median(without_hub) / statistics.median(with_hub)
    print(f"median without the hub / with it: {ratio:.1f}x")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
