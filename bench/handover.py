"""Handover benchmark: nine standalone daemons, one VIP, how many hold it at once (root).

Nine nodes in network namespaces (tests/carp/netns.py), each running the
standalone daemon (``python -m cluster.carp run --config``) with the project's
derived advskews: node1 is the Primary (0), node2..node9 are Secondaries 1..8
(13 x ordinal: 13..104; cluster/advskew.py), advbase 1, vhid 42, one VIP. A
holder is a node whose eth0 carries the VIP, read from rtnetlink address
events in every node's namespace by one thread (bench/netwatch.py), so every
event is stamped on one clock; gratuitous ARPs are captured on the bridge.

Scenarios, each --trials times:

* ``restart``: SIGTERM all nine at once, then start all nine at once;
* ``bow-out``: SIGTERM the holder (node1); the graceful handover time runs
  from the signal until node2 holds the VIP alone;
* ``demotion``: demote the running master (node1) by 240, as maintenance
  does. The standalone daemon has no maintenance switch, so each node also
  runs a second vhost (43) on an interface ``aux0`` of its own (a veth pair
  inside the node); setting aux0 down on
  node1 makes its engine demote every vhost of the node by 240 (FreeBSD's
  ifdown_demotion_factor, which maintenance mirrors: same level, same
  SetDemotion path in the runner), while node1 stays up on eth0 and keeps
  advertising, demoted. aux0 up again lifts the demotion;
* ``crash``: SIGKILL the holder, then the next holder, ... (--cascade nodes,
  default 4). A SIGKILLed daemon leaves the VIP on its interface (NOTES.md),
  which a dead machine would not answer for: the bench removes it at once;
* ``half-start``: with nodes 5..9 running after the crash cascade, start the
  crashed nodes 1..4 at once (one half-start trial per crash trial).

Per handover it reports the maximum number of simultaneous holders, the time
with two or more holders, the time until the best live node holds the VIP
alone (from the signal, the demotion or the start; for a start, also from the
best node's own "starting" log line), state transitions (VIP added or
removed on a node), preemptions (a node adds the VIP while another live node
holds it: one is the handover itself after a demotion or a half-start) and the
gratuitous ARPs on the bridge (also per takeover: the frames a node sent over
its takeovers, the worst node), as median and p95 over the trials. Targets:
at most 20 ms with two or more holders per handover, the best
live node alone within its master-down interval plus one advert interval
(3 x advbase + advskew/256 + advbase + advskew/256; for a crash, from the dead
master's last advert), at most 2 gratuitous ARPs per takeover, and a graceful
(bow-out) median under 20 ms.

``--code DIR`` runs the daemons from another checkout (``env -C DIR
PYTHONPATH=DIR python -m cluster.carp``), e.g. ``--code /work/wt/before`` for
the engine before the handover work, in the same conditions. Not a test: run
by hand as root, ``python bench/handover.py [--trials 5] [--code DIR]``. Every
wait is bounded; ``--deadline`` (default 600 s) skips the trials left after it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netwatch import LanBench, daemon_checkout, median, p95

from tests.carp.netns import PYTHON, REPO, node_ip, sh

NODES = 9
VIP = "192.0.2.100"
AUX_VIP = "198.51.100.100"
ADVBASE = 1
SKEWS = {n: 13 * (n - 1) for n in range(1, NODES + 1)}  # cluster/advskew.py: Primary 0, 13 x k
QUIET = 2.6  # a measured handover ends once the best node held alone this long (> 2 adverts)
RESTORE_QUIET = 1.0  # settling between trials, not measured
SCENARIOS = ("restart", "bow-out", "demotion", "crash", "half-start")
MULTI_TARGET = 0.020  # at most 20 ms with two or more holders per handover
GRACEFUL_TARGET = 0.020  # bow-out median


def master_down(node: int) -> float:
    return 3 * ADVBASE + SKEWS[node] / 256  # CARP.md, ucarp and FreeBSD


def advert_interval(node: int) -> float:
    return ADVBASE + SKEWS[node] / 256


@dataclass
class Handover:
    """One measured handover: the holders of the VIP between ``start`` and ``end``."""

    scenario: str
    trial: int
    best: int  # the best live node, which must end up holding the VIP alone
    max_holders: int
    multi: float  # seconds with two or more holders
    settle: float | None  # seconds from the event until `best` held alone for good
    settle_from_daemon: float | None  # starts: from the best node's "starting" log line
    bound: float  # master-down interval + one advert interval of `best`
    slack: float | None  # bound minus the settle time (from the reference of the bound)
    transitions: int
    preemptions: int
    garps: int
    takeovers: int
    max_garps_per_takeover: int


class Bench(LanBench):
    """Nine daemons of one checkout on a fresh LAN, and the scenarios run on it."""

    def __init__(self, workdir: Path, code: Path, deadline: float) -> None:
        super().__init__(workdir, code, NODES)
        self.deadline = deadline
        self.node_of: dict[str, int] = {}
        self.macs: dict[str, int] = {}
        self.results: list[Handover] = []

    # -- set-up -------------------------------------------------------------------
    def prepare(self) -> None:
        for n in range(1, NODES + 1):
            ns = self.cluster.ns(n)
            self.node_of[ns] = n
            # The demotion's handle: a second CARP interface of the node (module doc).
            # A veth pair inside the node (no dummy driver here); aux1 gives aux0 a carrier.
            sh("ip", "-n", ns, "link", "add", "aux0", "type", "veth", "peer", "name", "aux1")
            sh("ip", "-n", ns, "link", "set", "aux1", "up")
            sh("ip", "-n", ns, "link", "set", "aux0", "up")
            sh("ip", "-n", ns, "addr", "add", f"198.51.100.{10 + n}/24", "dev", "aux0")
            self._write_config(n)
            out = sh("ip", "-n", ns, "-o", "link", "show", "dev", "eth0").stdout.split()
            self.macs[out[out.index("link/ether") + 1]] = n

    def _write_config(self, n: int) -> None:
        vhosts = [
            ("eth0", 42, node_ip(n), VIP),
            ("aux0", 43, f"198.51.100.{10 + n}", AUX_VIP),
        ]
        lines = ['password = "s3cret"', f"advbase = {ADVBASE}", f"advskew = {SKEWS[n]}"]
        for interface, vhid, src, vip in vhosts:
            lines += ["[[vhost]]", f'interface = "{interface}"', f"vhid = {vhid}"]
            lines += [f'srcip = "{src}"', f'addresses = ["{vip}"]']
        (self.workdir / f"node{n}.toml").write_text("\n".join(lines) + "\n")

    # -- processes ----------------------------------------------------------------
    def start(self, nodes: Iterable[int]) -> float:
        """Start the daemons of ``nodes`` at once; the time just before the first."""
        stamp = time.time()
        for n in nodes:
            argv = ["env", "-C", str(self.code), f"PYTHONPATH={self.code}", PYTHON, "-m",
                    "cluster.carp", "run", "--log-format", "json",
                    "--config", str(self.workdir / f"node{n}.toml")]  # fmt: skip
            self.procs[n] = self.cluster.spawn(n, argv, name="carp")
        return stamp

    def signal(self, nodes: Iterable[int], sig: int) -> float:
        """Signal the daemons of ``nodes`` at once; the time just before the first."""
        stamp = time.time()
        for n in nodes:
            self.cluster.send_signal(self.procs[n], sig)
        return stamp

    def reap(self, nodes: Iterable[int], timeout: float = 10.0) -> None:
        """Wait for the daemons of ``nodes`` to exit (SIGKILL after ``timeout`` s)."""
        limit = time.time() + timeout
        for n in list(nodes):
            proc = self.procs.pop(n)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, limit - time.time()))
            if proc.poll() is None:
                print(f"  node{n} did not exit in {timeout:.0f} s: killed")
            self.cluster.stop(proc, signal.SIGKILL)

    def started_at(self, n: int, since: float) -> float | None:
        """When node ``n``'s daemon logged "starting" (its interpreter had started)."""
        proc = self.procs.get(n)
        if proc is None:
            return None
        for line in self.cluster.log(proc).splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("event") == "start":
                    stamp = datetime.datetime.fromisoformat(entry["time"]).timestamp()
                    if stamp >= since - 1:
                        return stamp
        return None

    # -- observing ----------------------------------------------------------------
    def holders_at(self, when: float) -> set[int]:
        assert self.monitor is not None
        held: set[int] = set()
        for event in self.monitor.of(VIP):
            if event.time > when:
                break
            (held.add if event.added else held.discard)(self.node_of[event.namespace])
        return held

    def wait_alone(self, node: int, quiet: float, timeout: float = 25.0) -> tuple[float, bool]:
        """Wait until ``node`` alone has held the VIP for ``quiet`` s; (end, settled)."""
        limit = time.time() + timeout
        while time.time() < limit:
            now = time.time()
            alone_since = self._alone_since(node, now)
            if alone_since is not None and now - alone_since >= quiet:
                return now, True
            time.sleep(0.01)
        return time.time(), False

    def _alone_since(self, node: int, now: float) -> float | None:
        assert self.monitor is not None
        held: set[int] = set()
        since: float | None = None
        for event in self.monitor.of(VIP):
            if event.time > now:
                break
            (held.add if event.added else held.discard)(self.node_of[event.namespace])
            since = (event.time if since is None else since) if held == {node} else None
        return since

    def measure(self, scenario: str, trial: int, start: float, end: float, best: int,
                reference: float, bound_from: float, daemon_start: float | None = None
                ) -> Handover:  # fmt: skip
        """The holders of the VIP between ``start`` and ``end``, as one handover."""
        assert self.monitor is not None
        assert self.capture is not None
        held = self.holders_at(start)
        multi = 0.0
        peak = len(held)
        last = start
        transitions = preemptions = 0
        alone_from: float | None = start if held == {best} else None
        takeovers: dict[int, int] = {}
        for event in self.monitor.of(VIP, since=start):
            if event.time > end:
                break
            if len(held) >= 2:
                multi += event.time - last
            last = event.time
            node = self.node_of[event.namespace]
            if event.added and node not in held:
                transitions += 1
                preemptions += bool(held)
                takeovers[node] = takeovers.get(node, 0) + 1
                held.add(node)
            elif not event.added and node in held:
                transitions += 1
                held.discard(node)
            peak = max(peak, len(held))
            if held == {best}:
                alone_from = event.time if alone_from is None else alone_from
            else:
                alone_from = None
        if len(held) >= 2:
            multi += end - last
        garps: dict[int, int] = {}
        for frame in self.capture.announced(VIP, since=start):
            if frame.time <= end:
                sender = self.macs.get(frame.mac, 0)
                garps[sender] = garps.get(sender, 0) + 1
        per_takeover = [garps.get(n, 0) / max(1, takeovers.get(n, 0)) for n in garps]
        settle = None if alone_from is None else alone_from - reference
        bound = master_down(best) + advert_interval(best)
        slack = None if alone_from is None else bound - (alone_from - bound_from)
        from_daemon = None
        if alone_from is not None and daemon_start is not None:
            from_daemon = alone_from - daemon_start
        return Handover(scenario, trial, best, peak, multi, settle, from_daemon, bound, slack,
                        transitions, preemptions, sum(garps.values()), sum(takeovers.values()),
                        int(max(per_takeover, default=0)))  # fmt: skip

    def record(self, handover: Handover) -> None:
        self.results.append(handover)
        print(format_handover(handover), flush=True)

    # -- scenarios ------------------------------------------------------------------
    def settle_primary(self, timeout: float = 25.0) -> bool:
        _end, ok = self.wait_alone(1, RESTORE_QUIET, timeout)
        if not ok:
            print(f"  (node1 did not settle alone: holders {sorted(self.holders_at(time.time()))})")
        return ok

    def restart(self, trial: int) -> None:
        begin = self.signal(range(1, NODES + 1), signal.SIGTERM)
        self.reap(range(1, NODES + 1))
        started = self.start(range(1, NODES + 1))
        end, _ok = self.wait_alone(1, QUIET, timeout=30)
        daemon = self.started_at(1, started)
        self.record(self.measure("restart", trial, begin, end, 1, started,
                                 daemon or started, daemon))  # fmt: skip

    def bow_out(self, trial: int) -> None:
        begin = self.signal([1], signal.SIGTERM)
        end, _ok = self.wait_alone(2, QUIET)
        self.record(self.measure("bow-out", trial, begin, end, 2, begin, begin))
        self.reap([1])
        self.start([1])
        self.settle_primary()

    def demotion(self, trial: int) -> None:
        begin = time.time()
        sh("ip", "-n", self.cluster.ns(1), "link", "set", "aux0", "down")
        end, _ok = self.wait_alone(2, QUIET)
        self.record(self.measure("demotion", trial, begin, end, 2, begin, begin))
        sh("ip", "-n", self.cluster.ns(1), "link", "set", "aux0", "up")
        self.settle_primary()

    def crash(self, trial: int, depth: int) -> None:
        assert self.capture is not None
        for dead in range(1, depth + 1):
            begin = self.signal([dead], signal.SIGKILL)
            sh("ip", "-n", self.cluster.ns(dead), "addr", "del", f"{VIP}/32", "dev", "eth0",
               check=False)  # fmt: skip
            end, _ok = self.wait_alone(dead + 1, QUIET)
            adverts = [a.time for a in self.capture.adverts_from(node_ip(dead)) if a.time <= begin]
            last_advert = max(adverts, default=begin)
            self.record(self.measure("crash", trial, begin, end, dead + 1, begin, last_advert))
            self.reap([dead])

    def half_start(self, trial: int, depth: int) -> None:
        started = self.start(range(1, depth + 1))
        end, _ok = self.wait_alone(1, QUIET, timeout=30)
        daemon = self.started_at(1, started)
        self.record(self.measure("half-start", trial, started, end, 1, started,
                                 daemon or started, daemon))  # fmt: skip

    def run(self, trials: int, depth: int, scenarios: list[str]) -> None:
        self.start(range(1, NODES + 1))
        if not self.settle_primary(timeout=40):
            raise RuntimeError("the nine daemons never settled on node1")
        plan: list[tuple[str, Callable[[int], None]]] = [
            ("restart", self.restart),
            ("bow-out", self.bow_out),
            ("demotion", self.demotion),
        ]
        for name, step in plan:
            if name not in scenarios:
                continue
            for trial in range(1, trials + 1):
                if time.time() > self.deadline:
                    print(f"  deadline reached: {name} #{trial} and later skipped")
                    return
                step(trial)
                self.settle_primary()
        if "crash" in scenarios or "half-start" in scenarios:
            for trial in range(1, trials + 1):
                if time.time() > self.deadline:
                    print(f"  deadline reached: crash/half-start #{trial} and later skipped")
                    return
                self.crash(trial, depth)
                self.half_start(trial, depth)
                self.settle_primary()


def ms(value: float | None) -> str:
    return "      -" if value is None else f"{value * 1000:7.1f}"


def format_handover(h: Handover) -> str:
    daemon = "" if h.settle_from_daemon is None else f" ({ms(h.settle_from_daemon)} from log)"
    return (
        f"{h.scenario:10} #{h.trial:<2} best node{h.best}: max holders {h.max_holders}, "
        f">=2 holders {ms(h.multi)} ms, alone after {ms(h.settle)} ms{daemon}, "
        f"slack to bound {ms(h.slack)} ms, transitions {h.transitions}, "
        f"preemptions {h.preemptions}, GARPs {h.garps}/{h.takeovers} takeovers"
    )


METRICS: list[tuple[str, str, float]] = [
    # (label, Handover field, scale): scale 1000 shows seconds as ms
    ("max holders", "max_holders", 1),
    ("ms with >=2 holders", "multi", 1000),
    ("ms until best alone", "settle", 1000),
    ("  from daemon start", "settle_from_daemon", 1000),
    ("ms slack to bound", "slack", 1000),
    ("transitions", "transitions", 1),
    ("preemptions", "preemptions", 1),
    ("gratuitous ARPs", "garps", 1),
    ("takeovers", "takeovers", 1),
    ("max GARPs/takeover", "max_garps_per_takeover", 1),
]


def summarize(results: list[Handover]) -> dict[str, dict[str, dict[str, float]]]:
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for scenario in SCENARIOS:
        chosen = [h for h in results if h.scenario == scenario]
        if not chosen:
            continue
        rows: dict[str, dict[str, float]] = {}
        for label, name, scale in METRICS:
            values = [float(v) * scale for h in chosen if (v := getattr(h, name)) is not None]
            if values:
                rows[label] = {"median": median(values), "p95": p95(values), "n": len(values)}
        rows["handovers"] = {"median": len(chosen), "p95": len(chosen), "n": len(chosen)}
        rows["not settled"] = {
            "median": sum(h.settle is None for h in chosen),
            "p95": sum(h.settle is None for h in chosen),
            "n": len(chosen),
        }
        summary[scenario] = rows
    return summary


def verdicts(results: list[Handover], summary: dict[str, dict[str, dict[str, float]]]) -> None:
    for scenario in SCENARIOS:
        chosen = [h for h in results if h.scenario == scenario]
        if not chosen:
            continue
        multi = sum(h.multi <= MULTI_TARGET for h in chosen)
        bound = sum(h.slack is not None and h.slack >= 0 for h in chosen)
        garps = sum(h.max_garps_per_takeover <= 2 for h in chosen)
        print(
            f"{scenario:10} <=20 ms with >=2 holders: {multi}/{len(chosen)}; best alone within "
            f"master-down + one advert: {bound}/{len(chosen)}; <=2 GARPs per takeover: "
            f"{garps}/{len(chosen)}"
        )
    graceful = summary.get("bow-out", {}).get("ms until best alone")
    if graceful:
        ok = graceful["median"] < GRACEFUL_TARGET * 1000
        verdict = "yes" if ok else "NO"
        print(f"graceful (bow-out) median {graceful['median']:.1f} ms < 20 ms: {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trials", type=int, default=5, help="trials per scenario (default 5)")
    parser.add_argument("--code", type=Path, default=REPO, help="checkout to run the daemon from")
    parser.add_argument("--cascade", type=int, default=4, help="nodes the crash cascade kills")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--deadline", type=float, default=600, help="seconds; later trials skip")
    parser.add_argument("--json", help="also write every handover and the summary here")
    parser.add_argument("--workdir", type=Path, help="keep the configs and daemon logs here")
    args = parser.parse_args()
    code = daemon_checkout(args.code)
    if code is None:
        return 2
    if not 1 <= args.cascade <= NODES - 1:
        print(f"--cascade must be 1..{NODES - 1}", file=sys.stderr)
        return 2
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    began = time.time()
    print(
        f"code {code}; {NODES} nodes, advskews {list(SKEWS.values())}, advbase {ADVBASE}; "
        f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    status = 0
    with (
        tempfile.TemporaryDirectory(prefix="handover-") as tmp,
        Bench(args.workdir or Path(tmp), code, began + args.deadline) as bench,
    ):
        try:
            bench.run(args.trials, args.cascade, scenarios)
        except Exception as exc:  # report what was measured; the namespaces still go
            print(f"stopped early: {exc!r}", file=sys.stderr)
            status = 1
        results = bench.results
    summary = summarize(results)
    print()
    print(f"{'scenario':10} {'metric':22} {'median':>9} {'p95':>9} {'n':>3}")
    for scenario, rows in summary.items():
        for label, row in rows.items():
            print(
                f"{scenario:10} {label:22} {row['median']:9.1f} {row['p95']:9.1f} {row['n']:3.0f}"
            )
    print()
    verdicts(results, summary)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"took {time.time() - began:.0f} s; load {load}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"code": str(code), "handovers": [asdict(h) for h in results], "summary": summary},
                indent=2,
            )
        )
    return status


if __name__ == "__main__":
    sys.exit(main())
