"""Webhook latency: a VIP's owner change -> the signed webhook at a receiver.

Runs the demo cluster (cluster.lab, 9 nodes by default, the console under uvicorn)
with the notifier beside the console, as ``make demo`` does, and a webhook receiver
on the host's 127.0.0.1 subscribed to ``owner_changed``. Two aliases per node
(VHIDs 30+k and 50+k, node k Primary, the next node Secondary) are made; then each
node in turn is failed (the box dies: worker killed, link down) and restored. Each
failure and each return changes the owner of that node's two aliases: one webhook
each. An alias changes owner twice only, below the flap rule (3 in a minute), so
every change is sent rather than summarised.

The latency runs from the engine's wall-clock time of the new master's transition
(``detail.transition_at`` in the payload, the ``last_at`` the engine published) to
the receiver's arrival time, on one host clock. Each webhook's signature is checked,
and each change must arrive exactly once.

Target (issue 11): p95 under 1 s. Run as root:
``.venv/bin/python bench/webhook_latency.py [--nodes 9]``; exits 1 when the target
is missed or a change is missing or doubled.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import hmac
import http.server
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cluster.lab.lan import wait_until
from tests.e2e.console import Console, alias_body, figures, machine, running_cluster

TARGET_P95_MS = 1000.0
SECRET = "webhook-latency-benchmark-secret"
SETTLE = 2.0  # seconds after a change for its webhook (and any duplicate) to arrive


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        arrived = time.time()
        self.server.received.append((arrived, dict(self.headers), body))  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def signed(headers: dict[str, str], body: bytes) -> bool:
    timestamp = headers["X-Cluster-Timestamp"]
    mac = hmac.new(SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(headers["X-Cluster-Signature"], f"sha256={mac.hexdigest()}")


def vhids(ordinal: int) -> tuple[int, int]:
    return 30 + ordinal, 50 + ordinal


def make_aliases(console: Console, names: list[str]) -> None:
    for index, node in enumerate(names, 1):
        secondary = names[index % len(names)]
        for vhid in vhids(index):
            body = alias_body(vhid, [f"192.0.2.{100 + vhid}/24"], node, secondary, names)
            console.create_alias(body)
    for index, node in enumerate(names, 1):
        for vhid in vhids(index):
            console.lab.wait_holder(f"192.0.2.{100 + vhid}", node, 30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=9)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    print(machine())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.received = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    expected: list[tuple[int, str, str]] = []  # (vhid, old, new)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="webhook-latency-") as tmp,
            running_cluster(Path(tmp), nodes=args.nodes) as console,
        ):
            lab = console.lab
            names = lab.node_names
            url = f"http://127.0.0.1:{server.server_address[1]}/hook"
            channel = {"name": "bench", "kind": "webhook", "url": url, "secret": SECRET,
                       "events": ["owner_changed"]}  # fmt: skip
            console.call("POST", "/api/v1/notification-channels/", channel, expect=201)
            make_aliases(console, names)
            lab.start_notifier()
            time.sleep(3)  # the notifier has seen every owner (its baseline)
            for index, node in enumerate(names, 1):
                secondary = names[index % len(names)]
                lab.fail_node(node)
                for vhid in vhids(index):
                    lab.wait_holder(f"192.0.2.{100 + vhid}", secondary, 15)
                    expected.append((vhid, node, secondary))
                time.sleep(SETTLE)
                lab.restore_node(node)
                for vhid in vhids(index):
                    lab.wait_holder(f"192.0.2.{100 + vhid}", node, 15)
                    expected.append((vhid, secondary, node))
                time.sleep(SETTLE)
            wanted = {v for v, _o, _n in expected}

            def all_arrived() -> bool:
                received = server.received  # type: ignore[attr-defined]
                ours = [r for r in received if json.loads(r[2])["event"]["vhid"] in wanted]
                return len(ours) >= len(expected)

            wait_until(all_arrived, 10, what="every webhook")
            time.sleep(SETTLE)
            lab.stop_notifier()
    finally:
        server.shutdown()
        server.server_close()
    got: list[tuple[int, str, str]] = []
    values: list[float] = []
    detected: list[float] = []  # transition -> event stored (the detection's part)
    bad_signatures = 0
    for arrived, headers, body in server.received:  # type: ignore[attr-defined]
        event = json.loads(body)["event"]
        if event["vhid"] not in {v for v, _o, _n in expected}:
            continue  # the demo's own aliases change owner too
        bad_signatures += not signed(headers, body)
        got.append((event["vhid"], event["old_owner"], event["new_owner"]))
        values.append(arrived - float(event["detail"]["transition_at"]))
        at = datetime.datetime.fromisoformat(event["at"]).timestamp()
        detected.append(at - float(event["detail"]["transition_at"]))
    missing = sorted(set(expected) - set(got))
    doubled = len(got) - len(set(got))
    print(
        f"{args.nodes} nodes, {len(expected)} owner changes of {len(set(expected))} kinds;"
        f" {len(got)} webhooks, {len(missing)} missing, {doubled} doubled,"
        f" {bad_signatures} with a bad signature"
    )
    if missing:
        print(f"missing: {missing}")
    if not values:
        return 1
    print(figures("  of which owner change -> event detected", detected, TARGET_P95_MS)[0])
    line, met = figures("owner change -> webhook at the receiver", values, TARGET_P95_MS)
    print(line)
    return 0 if met and not missing and not doubled and not bad_signatures else 1


if __name__ == "__main__":
    sys.exit(main())
