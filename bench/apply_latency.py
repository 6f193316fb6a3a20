"""Apply latency: saving an alias through the REST API -> its VIP on the master's eth0.

Runs the demo cluster (cluster.lab, 3 nodes, the console under uvicorn) and,
``--aliases`` times, creates an alias through ``POST /api/v1/aliases/`` (the
Primary rotating over the nodes), waits for its VIP on the Primary's eth0
(``ip addr`` polled every 5 ms in the node's namespace), then deletes it.

The clock starts before the POST is sent and stops when the VIP is seen. It
must not start when the POST has answered: the apply task goes out at commit,
before the response is written, so the engine may already be converging (or
the VIP be on its way) by then, and that part would not be counted.

A new virtual host becomes MASTER no sooner than one master-down interval
after the engine starts it (CARP.md: 3 x advbase + advskew/256, the Primary's
own, advskew 0: 3 s with advbase 1), so what the control plane adds is
(VIP on the interface - POST sent) - that interval: the request and its
validation, the commit, the apply task through Redis, the engine reading the
database, and netlink.

Target (issue 4): p95 under 1 s on top of the master-down interval. Run as
root: ``.venv/bin/python bench/apply_latency.py [--aliases 20]``; exits 1
when the target is missed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cluster.carp.timers import master_down_interval
from cluster.lab.lan import wait_until
from tests.e2e.console import (
    Console,
    alias_body,
    figures,
    machine,
    node_in,
    running_cluster,
    tier_advskew,
    vip,
)

TARGET_P95_MS = 1000.0
FIRST_VHID = 30
POLL = 0.005


def trial(console: Console, i: int) -> tuple[float, float]:
    """One alias created, its VIP waited for, deleted: (seconds from the POST
    being sent to the VIP on the Primary, the Primary's master-down interval)."""
    lab, nodes = console.lab, console.lab.node_names
    body = alias_body(FIRST_VHID + i, [f"192.0.2.{FIRST_VHID + 100 + i}/24"], nodes[i % 3],
                      nodes[(i + 1) % 3], nodes)  # fmt: skip
    sent = time.monotonic()  # before the request: the commit sends the apply task
    alias = console.create_alias(body)
    primary, address = node_in(alias, "primary"), vip(alias)
    wait_until(lambda: address in lab.addresses(primary), 10, POLL, f"{address} on {primary}")
    took = time.monotonic() - sent
    bound = master_down_interval(alias["advbase"], tier_advskew(alias, "primary"))
    print(f"VHID {alias['vhid']} on {primary}: {took * 1000:7.1f} ms from the POST, "
          f"{(took - bound) * 1000:6.1f} ms on top of {bound:.3f} s", flush=True)  # fmt: skip
    console.delete_alias(alias["id"])
    wait_until(lambda: not lab.holders(address), 10, what=f"{address} released")
    return took, bound


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aliases", type=int, default=20)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    print(machine())
    with (
        tempfile.TemporaryDirectory(prefix="apply-latency-") as tmp,
        running_cluster(Path(tmp)) as console,
    ):
        trials = [trial(console, i) for i in range(args.aliases)]
    bound = max(b for _, b in trials)
    print(f"resolution: the interface is polled every {POLL * 1000:.0f} ms (plus `ip` run time)")
    print(figures("POST sent -> VIP on the Primary", [t for t, _ in trials],
                  1000 * (bound + 1))[0])  # fmt: skip
    line, met = figures("on top of the master-down interval", [t - b for t, b in trials],
                        TARGET_P95_MS)  # fmt: skip
    print(line)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
