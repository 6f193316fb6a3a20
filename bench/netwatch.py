"""Shared pieces of the namespace benchmarks (failover.py, handover.py).

:class:`AddressMonitor` records every IPv4 address that appears on or leaves an
interface in some network namespaces, from one rtnetlink socket made inside
each, read by one thread so that every event is stamped on the same clock
(``time.time()``, the clock of the bridge capture's kernel timestamps).
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import select
import socket
import statistics
import struct
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cluster.lab.procs import Proc
from tests.carp.netns import Capture, Cluster, in_netns

RTMGRP_IPV4_IFADDR = 0x10
RTM_NEWADDR, RTM_DELADDR = 20, 21
IFA_ADDRESS, IFA_LOCAL = 1, 2


@dataclass(frozen=True)
class AddressEvent:
    time: float  # time.time() when the monitor read the message
    namespace: str
    address: str
    added: bool  # False: removed


class AddressMonitor:
    """Times when addresses appear and go in some namespaces (an rtnetlink socket made in each)."""

    def __init__(self, *namespaces: str) -> None:
        def open_socket() -> socket.socket:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            # Nine daemons moving one address at once must not overflow the queue.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((0, RTMGRP_IPV4_IFADDR))
            return sock

        self.sockets = {in_netns(ns, open_socket): ns for ns in namespaces}
        self.events: list[AddressEvent] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="address-monitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select(list(self.sockets), [], [], 0.1)
            stamp = time.time()  # one wake-up, one stamp: simultaneous events stay simultaneous
            for sock in ready:
                try:
                    data = sock.recv(1 << 16)
                except OSError:  # ENOBUFS: an event was lost; the next one still counts
                    continue
                self._parse(stamp, self.sockets[sock], data)

    def _parse(self, stamp: float, namespace: str, data: bytes) -> None:
        offset = 0
        while offset + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, offset)
            if length < 16:
                break
            if kind in (RTM_NEWADDR, RTM_DELADDR):
                address = self._address(data[offset + 16 : offset + length])
                if address is not None:
                    event = AddressEvent(stamp, namespace, address, kind == RTM_NEWADDR)
                    with self.lock:
                        self.events.append(event)
            offset += (length + 3) & ~3

    @staticmethod
    def _address(body: bytes) -> str | None:
        offset = 8  # struct ifaddrmsg
        while offset + 4 <= len(body):
            length, kind = struct.unpack_from("=HH", body, offset)
            if length < 4:
                return None
            if kind in (IFA_ADDRESS, IFA_LOCAL) and length == 8:
                return str(ipaddress.IPv4Address(body[offset + 4 : offset + 8]))
            offset += (length + 3) & ~3
        return None

    def of(self, address: str, since: float = 0.0) -> list[AddressEvent]:
        """The events of ``address`` from ``since`` on, in time order."""
        with self.lock:
            return [e for e in self.events if e.address == address and e.time >= since]

    def first(self, address: str, since: float) -> float | None:
        """When ``address`` first appeared anywhere from ``since`` on, or None."""
        times = [e.time for e in self.of(address, since) if e.added]
        return min(times) if times else None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for sock in self.sockets:
            sock.close()


def daemon_checkout(code: Path) -> Path | None:
    """The checkout a daemon benchmark runs (``--code``), once root is known to be
    there; None, with the reason on stderr, when it cannot run."""
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return None
    code = code.resolve()
    if not (code / "cluster" / "carp" / "__main__.py").exists():
        print(f"{code}: no cluster/carp here", file=sys.stderr)
        return None
    return code


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def p95(values: list[float]) -> float:
    """The nearest-rank 95th percentile (the maximum of five trials)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def p99(values: list[float]) -> float:
    """The nearest-rank 99th percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SO_RCVBUFFORCE = 33
SOL_PACKET, PACKET_STATISTICS = 263, 6


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` (all its threads) so far, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime: fields 14, 15


def enlarge_capture(sock: socket.socket, size: int = 16 << 20) -> None:
    """A larger receive queue for a bridge capture: 255 adverts in one burst overflow the
    default (about 212 kB of frames); SO_RCVBUFFORCE, as root, passes the rmem_max cap."""
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)


def capture_drops(sock: socket.socket) -> int:
    """Frames the kernel dropped on a packet socket since the last call (the counter resets)."""
    packets_drops = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
    return int(struct.unpack("II", packets_drops)[1])


def advert_deviation(times: list[float], interval: float) -> list[float]:
    """|gap - interval| for each gap between consecutive advert times of one vhid, in seconds."""
    ordered = sorted(times)
    return [abs(b - a - interval) for a, b in itertools.pairwise(ordered)]


class LanBench:
    """A benchmark's LAN: ``nodes`` node namespaces for the daemons of one checkout
    (``code``), one address monitor over every node namespace, and a capture on the
    bridge with a large buffer. `close` (also when the set-up fails) kills every
    daemon by pid and deletes every namespace. Subclasses set their nodes up in
    `prepare`, before the watching starts."""

    def __init__(self, workdir: Path, code: Path, nodes: int) -> None:
        self.workdir = workdir
        self.code = code
        self.cluster = Cluster(workdir, nodes=nodes)
        self.procs: dict[int, Proc] = {}
        self.monitor: AddressMonitor | None = None
        self.capture: Capture | None = None

    def prepare(self) -> None:
        """Per-node set-up (config files, extra links); nothing by default."""

    def __enter__(self) -> Self:
        self.cluster.__enter__()
        try:
            self.prepare()
            nodes = range(1, self.cluster.nodes + 1)
            self.monitor = AddressMonitor(*(self.cluster.ns(n) for n in nodes))
            self.capture = self.cluster.capture()
            enlarge_capture(self.capture.sock)
            capture_drops(self.capture.sock)  # reset the counter
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close()
        self.cluster.close()
