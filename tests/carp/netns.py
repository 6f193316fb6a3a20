"""A throw-away LAN of network namespaces for the engine's root-only tests and benchmark.

The LAN itself (a bridge namespace, one namespace per node with ``eth0`` a veth
into the bridge, documentation addresses only: node *i* is 192.0.2.(10+i)/24
and 2001:db8::(10+i)/64) is the demo lab's :class:`cluster.lab.lan.Lan`, and
the processes are tracked by :class:`cluster.lab.procs.Processes`; this module
adds what the engine's tests need on top: our daemon and ucarp per node, and a
capture of the adverts and announcements crossing the bridge. Names carry a
prefix unique to the run (``ct<pid><random>-``), so parallel runs and leftovers
of a crashed run never collide.

Every process started here is killed by pid on :meth:`Cluster.close`, which
also deletes every namespace (and with them every veth). Use it as a context
manager in a pytest fixture so the teardown runs when a test fails too.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cluster.lab.lan import Built, Lan, in_netns, node_ip, node_ip6, sh, wait_until
from cluster.lab.procs import Proc, Processes

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv").exists() else sys.executable
ETH_P_ALL = 0x0003


@dataclass(frozen=True)
class Advert:
    """A CARP advert seen on the bridge."""

    time: float  # time.time() of the kernel's receive timestamp
    source: str
    ttl: int
    vhid: int
    advskew: int
    advbase: int
    demote: int


@dataclass(frozen=True)
class Announcement:
    """A gratuitous ARP or unsolicited neighbour advertisement seen on the bridge."""

    time: float
    address: str
    mac: str


@dataclass
class Capture:
    """Every CARP advert and address announcement crossing the bridge, with timestamps."""

    sock: socket.socket
    adverts: list[Advert] = field(default_factory=list)
    announcements: list[Announcement] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bridge-capture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                frame, anc, _flags, _addr = self.sock.recvmsg(4096, 1024)
            except TimeoutError:
                continue
            except OSError:
                return
            stamp = time.time()
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == 35 and len(value) >= 16:  # SO_TIMESTAMPNS
                    sec, nsec = struct.unpack("qq", value[:16])
                    stamp = sec + nsec / 1e9
            self._parse(stamp, frame)

    def _parse(self, stamp: float, frame: bytes) -> None:
        if len(frame) < 14:
            return
        ethertype = struct.unpack_from("!H", frame, 12)[0]
        body = frame[14:]
        if ethertype == 0x0806 and len(body) >= 28:
            sender_mac = body[8:14].hex(":")
            sender_ip = str(ipaddress.IPv4Address(body[14:18]))
            target_ip = str(ipaddress.IPv4Address(body[24:28]))
            if sender_ip == target_ip:  # gratuitous: sender = target = the announced address
                with self.lock:
                    self.announcements.append(Announcement(stamp, sender_ip, sender_mac))
        elif ethertype == 0x0800 and len(body) >= 20 and body[9] == 112:
            ihl = (body[0] & 0x0F) * 4
            carp = body[ihl:]
            if len(carp) >= 8:
                src = str(ipaddress.IPv4Address(body[12:16]))
                self._advert(stamp, src, body[8], carp)
        elif ethertype == 0x86DD and len(body) >= 40:
            src = str(ipaddress.IPv6Address(body[8:24]))
            if body[6] == 112 and len(body) >= 48:
                self._advert(stamp, src, body[7], body[40:])
            elif body[6] == 58 and len(body) >= 64 and body[40] == 136:
                target = str(ipaddress.IPv6Address(body[48:64]))
                with self.lock:
                    self.announcements.append(Announcement(stamp, target, frame[6:12].hex(":")))

    def _advert(self, stamp: float, source: str, ttl: int, carp: bytes) -> None:
        advert = Advert(stamp, source, ttl, carp[1], carp[2], carp[5], carp[4])
        with self.lock:
            self.adverts.append(advert)

    def adverts_from(self, source: str, since: float = 0.0) -> list[Advert]:
        with self.lock:
            return [a for a in self.adverts if a.source == source and a.time >= since]

    def announced(self, address: str, since: float = 0.0) -> list[Announcement]:
        with self.lock:
            return [a for a in self.announcements if a.address == address and a.time >= since]

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.sock.close()


class Cluster(Built):
    """A bridge namespace and ``nodes`` node namespaces, torn down completely on close."""

    def __init__(self, workdir: Path, nodes: int = 3) -> None:
        self.workdir = workdir
        self.prefix = f"ct{os.getpid()}{secrets.token_hex(2)}-"
        self.lan = Lan(self.prefix, nodes, client=False)
        self.bridge = self.lan.bridge
        self.nodes = nodes
        self.procs = Processes(REPO)
        self.captures: list[Capture] = []
        self._counter = 0

    # -- building -----------------------------------------------------------------
    def ns(self, index: int) -> str:
        return self.lan.ns(index)

    def build(self) -> None:
        self.lan.build()

    # -- processes ----------------------------------------------------------------
    def spawn(self, index: int, argv: Sequence[str], name: str | None = None) -> Proc:
        """Start ``argv`` inside node ``index``'s namespace (index 0: the bridge's)."""
        ns = self.bridge if index == 0 else self.ns(index)
        self._counter += 1
        log = self.workdir / f"{name or Path(argv[0]).name}-n{index}-{self._counter}.log"
        # One log per process, read whole by the tests (some parse it line by line).
        return self.procs.spawn(argv, log, ns, header=False)

    def carp(self, index: int, *args: str, vhid: int | None = 42, addr: Sequence[str] = (),
             advskew: int | None = None, password: str = "s3cret",
             advbase: int = 1) -> Proc:  # fmt: skip
        """Start our daemon on node ``index`` (``vhid=None`` when ``args`` has a --config)."""
        argv = [PYTHON, "-m", "cluster.carp", "run", "--interface", "eth0"]
        if "--srcip" not in args:
            argv += ["--srcip", node_ip(index)]
        if vhid is not None:
            argv += ["--vhid", str(vhid), "--pass", password, "--advbase", str(advbase)]
            argv += ["--advskew", str(advskew if advskew is not None else 0)]
            for a in addr:
                argv += ["--addr", a]
        return self.spawn(index, [*argv, *args], name="carp")

    def ucarp(self, index: int, vip: str, *, vhid: int = 42, advskew: int = 0,
              password: str = "s3cret", preempt: bool = True,
              advbase: int = 1) -> Proc:  # fmt: skip
        """Start Debian's ucarp on node ``index`` with up/down scripts that move ``vip``."""
        up = self.workdir / "ucarp-up.sh"
        down = self.workdir / "ucarp-down.sh"
        up.write_text('#!/bin/sh\nexec ip addr add "$2/32" dev "$1"\n')
        down.write_text('#!/bin/sh\nexec ip addr del "$2/32" dev "$1"\n')
        up.chmod(0o755)
        down.chmod(0o755)
        argv = ["ucarp", "-i", "eth0", "-s", node_ip(index), "-v", str(vhid), "-p", password,
                "-a", vip, "-b", str(advbase), "-k", str(advskew), "-z", "-f", "none",
                "-u", str(up), "-d", str(down)]  # fmt: skip
        if preempt:
            argv.append("-P")
        return self.spawn(index, argv, name="ucarp")

    def send_signal(self, proc: Proc, sig: int) -> None:
        self.procs.send(proc, sig)

    def stop(self, proc: Proc, sig: int = signal.SIGKILL, timeout: float = 10) -> int:
        """Signal one process and reap it; returns its exit status."""
        return self.procs.stop(proc, sig, timeout)

    def log(self, proc: Proc) -> str:
        return self.procs.log_text(proc)

    # -- observing ----------------------------------------------------------------
    def addresses(self, index: int) -> set[str]:
        """The addresses (without prefix) on node ``index``'s eth0."""
        return self.lan.addresses(index)

    def holders(self, vip: str) -> list[int]:
        """The nodes whose eth0 carries ``vip``."""
        vip = str(ipaddress.ip_address(vip))
        return [i for i in range(1, self.nodes + 1) if vip in self.addresses(i)]

    def wait_holder(self, vip: str, index: int, timeout: float) -> None:
        """Wait until node ``index`` and only it holds ``vip``."""
        wait_until(
            lambda: self.holders(vip) == [index], timeout, what=f"{vip} held by node {index} only"
        )

    def set_link(self, index: int, up: bool) -> None:
        self.lan.set_link(index, up)

    def capture(self) -> Capture:
        """Start capturing on the bridge (a packet socket in the bridge's namespace)."""

        def open_socket() -> socket.socket:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            sock.bind(("br0", 0))
            sock.setsockopt(socket.SOL_SOCKET, 35, 1)  # SO_TIMESTAMPNS: kernel receive time
            return sock

        cap = Capture(in_netns(self.bridge, open_socket))
        cap.start()
        self.captures.append(cap)
        return cap

    # -- teardown -----------------------------------------------------------------
    def close(self) -> None:
        for cap in self.captures:
            cap.close()
        self.captures.clear()
        self.procs.close()
        self.lan.close()


@contextlib.contextmanager
def cluster(workdir: Path, nodes: int = 3) -> Iterator[Cluster]:
    with Cluster(workdir, nodes) as built:
        yield built


def last_lines(text: str, count: int = 40) -> str:
    return "\n".join(text.splitlines()[-count:])


__all__ = ["Advert", "Announcement", "Capture", "Cluster", "cluster", "in_netns", "node_ip",
           "node_ip6", "sh", "wait_until"]  # fmt: skip
