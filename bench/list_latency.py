"""Latency of the alias list (API) and the IP ALIAS page with 9 nodes and 255 aliases.

Runs against a throwaway database: a temporary SQLite file by default (the
embedded deployment), or, when DATABASE_URL is set, a test database that
Django's test runner creates next to it and drops afterwards. The data is
written through cluster.services, like any real change.

    .venv/bin/python bench/list_latency.py [--requests 200]

Each endpoint gets a few warm-up requests, then ``--requests`` timed ones
through django.test.Client (the whole Django stack, no network). Prints the
median and p95 per endpoint and exits 1 if a p95 is over the target.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_P95_MS = 100.0
NODES = 9
ALIASES = 255
TIERS = ["secondary", "backup"]


def configure() -> tempfile.TemporaryDirectory[str] | None:
    """Point the settings at a throwaway SQLite file unless DATABASE_URL is set."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appliance.settings")
    os.environ["DEBUG"] = "0"
    # Not django.test.utils.setup_test_environment(): it records every rendered
    # template's context, garbage a deployed server would not make.
    os.environ["ALLOWED_HOSTS"] = "testserver"
    os.environ.setdefault("SECRET_KEY", "bench-" + "x" * 50)
    os.environ.setdefault("CLUSTER_SECRET_KEY", "bench-" + "y" * 40)
    os.environ["CLUSTER_DISPATCH_APPLY"] = "0"  # no broker needed
    os.environ["LOG_LEVEL"] = "WARNING"
    if os.environ.get("DATABASE_URL"):
        return None
    tmp = tempfile.TemporaryDirectory(prefix="appliance-bench-")
    os.environ["VAR_DIR"] = tmp.name
    return tmp


def populate() -> Any:
    from django.contrib.auth.models import User

    from cluster import access, services

    alice = User.objects.create_user("alice")
    access.make_administrator(alice)
    for ordinal in range(1, NODES + 1):
        services.create_node(
            alice,
            {
                "name": f"node{ordinal}",
                "address": f"198.51.100.{ordinal}",
                "interface": "eth0",
                "ordinal": ordinal,
            },
        )
    for vhid in range(1, ALIASES + 1):
        primary = (vhid - 1) % NODES + 1
        priorities = [
            {
                "node": f"node{ordinal}",
                "priority": "primary" if ordinal == primary else TIERS[(vhid + ordinal) % 2],
            }
            for ordinal in range(1, NODES + 1)
        ]
        services.create_alias(
            alice,
            {
                "vhid": vhid,
                "interface": "eth0",
                "password": f"pw-{vhid}",
                "addresses": [f"10.{vhid}.0.1/24", f"2001:db8:{vhid:x}::1/64"],
                "priorities": priorities,
                "description": f"alias {vhid}",
            },
        )
    return alice


def measure(client: Any, url: str, count: int, **headers: str) -> tuple[list[float], int]:
    from django.db import connection

    for _ in range(4):
        response = client.get(url, **headers)
        assert response.status_code == 200, (url, response.status_code)
    # Count through a wrapper: connection.queries is reset at each request start.
    queries: list[str] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        client.get(url, **headers)
    timings = []
    for _ in range(count):
        start = time.perf_counter()
        response = client.get(url, **headers)
        timings.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200
    return timings, len(queries)


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[94]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()

    tmp = configure()
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.urls import Resolver404, resolve

    from appliance.startup import warm_up_and_freeze
    from cluster import services

    old_name = None
    if tmp is None:
        old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    else:
        call_command("migrate", verbosity=0)
    try:
        vendor = connection.vendor
        started = time.perf_counter()
        alice = populate()
        print(
            f"database: {vendor}; {NODES} nodes and {ALIASES} aliases written through the "
            f"services in {time.perf_counter() - started:.1f} s; DEBUG={settings.DEBUG}"
        )
        key = services.grant_token(alice, alice)
        # As appliance/wsgi.py and asgi.py do before serving.
        warm_up_and_freeze()
        api = Client()
        page = Client()
        page.force_login(alice)
        auth = {"HTTP_AUTHORIZATION": f"Token {key}"}
        endpoints: list[tuple[str, Client, dict[str, str]]] = [
            ("/api/v1/aliases/", api, auth),
            (f"/api/v1/aliases/?page_size={ALIASES}", api, auth),
            ("/system/advanced/ip-alias/", page, {}),
        ]
        print(f"{args.requests} requests each (after 5 warm-up), django.test.Client")
        print(f"{'endpoint':<42} {'median':>9} {'p95':>9} {'max':>9} {'queries':>8}")
        failed = False
        for url, client, headers in endpoints:
            try:
                resolve(url.split("?")[0])
            except Resolver404:
                print(f"{url:<42} skipped: the URL does not resolve")
                continue
            timings, queries = measure(client, url, args.requests, **headers)
            worst = p95(timings)
            failed |= worst > TARGET_P95_MS
            print(
                f"{url:<42} {statistics.median(timings):>7.1f}ms {worst:>7.1f}ms "
                f"{max(timings):>7.1f}ms {queries:>8}"
            )
        print(f"target: p95 < {TARGET_P95_MS:.0f} ms: {'MISSED' if failed else 'met'}")
        return 1 if failed else 0
    finally:
        if old_name is not None:
            connection.creation.destroy_test_db(old_name, verbosity=0)
        if tmp is not None:
            connection.close()
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
