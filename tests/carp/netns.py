"""A throw-away LAN of network namespaces for the engine's root-only tests and benchmark.

Layout: one namespace holds the bridge ``br0``; every node gets its own
namespace whose ``eth0`` is a veth into that bridge. Nothing touches the host's
namespace. Names carry a prefix unique to the run (``ct<pid><random>-``), so
parallel runs and leftovers of a crashed run never collide. Only documentation
addresses are used: node *i* (1-based) is 192.0.2.(10+i)/24 and
2001:db8::(10+i)/64.

Every process started here is tracked by pid and killed by pid on
:meth:`Cluster.close`, which also deletes every namespace (and with them every
veth). Use it as a context manager in a pytest fixture so the teardown runs
when a test fails too.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv").exists() else sys.executable
CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003

T = TypeVar("T")


def node_ip(index: int) -> str:
    return f"192.0.2.{10 + index}"


def node_ip6(index: int) -> str:
    return f"2001:db8::{10 + index:x}"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=30)


def wait_until(
    predicate: Callable[[], T], timeout: float, interval: float = 0.02, what: str = "condition"
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


_libc = ctypes.CDLL(None, use_errno=True)


def in_netns(namespace: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a short-lived thread that has entered ``namespace``.

    setns(2) only moves the calling thread; sockets keep the namespace they were
    made in, so this is how the harness opens a capture socket on the bridge
    without ever moving the test's own thread.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            finally:
                os.close(fd)
            result.append(fn())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


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


class Cluster:
    """A bridge namespace and ``nodes`` node namespaces, torn down completely on close."""

    def __init__(self, workdir: Path, nodes: int = 3) -> None:
        self.workdir = workdir
        self.prefix = f"ct{os.getpid()}{secrets.token_hex(2)}-"
        self.bridge = f"{self.prefix}br"
        self.nodes = nodes
        self.namespaces: list[str] = []
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.logs: dict[int, Path] = {}
        self.captures: list[Capture] = []
        self._counter = 0

    # -- building -----------------------------------------------------------------
    def ns(self, index: int) -> str:
        return f"{self.prefix}n{index}"

    def __enter__(self) -> Cluster:
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _add_namespace(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")

    def build(self) -> None:
        self._add_namespace(self.bridge)
        br = self.bridge
        sh("ip", "-n", br, "link", "add", "br0", "type", "bridge")
        # 224.0.0.18 is flooded regardless; ff02::12 would be subject to MLD snooping.
        sh("ip", "-n", br, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
        sh("ip", "-n", br, "link", "set", "br0", "promisc", "on", "up")
        for i in range(1, self.nodes + 1):
            ns = self.ns(i)
            self._add_namespace(ns)
            # No DAD: a tentative IPv6 address cannot be used for a few seconds.
            for key in ("all", "default"):
                sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.accept_dad=0")
            sh("ip", "-n", br, "link", "add", f"vb{i}", "type", "veth", "peer", "name", "eth0",
               "netns", ns)  # fmt: skip
            sh("ip", "-n", br, "link", "set", f"vb{i}", "master", "br0", "up")
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0")
            sh("ip", "-n", ns, "addr", "add", f"{node_ip(i)}/24", "dev", "eth0")
            sh("ip", "-n", ns, "addr", "add", f"{node_ip6(i)}/64", "dev", "eth0", "nodad")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")

    # -- processes ----------------------------------------------------------------
    def spawn(
        self, index: int, argv: Sequence[str], name: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside node ``index``'s namespace (index 0: the bridge's)."""
        ns = self.bridge if index == 0 else self.ns(index)
        self._counter += 1
        log = self.workdir / f"{name or Path(argv[0]).name}-n{index}-{self._counter}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, *argv],
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C on the test run must not reach it
            )
        # `ip netns exec` execs in place, so this pid is the program itself.
        self.processes[proc.pid] = proc
        self.logs[proc.pid] = log
        return proc

    def carp(self, index: int, *args: str, vhid: int | None = 42, addr: Sequence[str] = (),
             advskew: int | None = None, password: str = "s3cret",
             advbase: int = 1) -> subprocess.Popen[bytes]:  # fmt: skip
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
              advbase: int = 1) -> subprocess.Popen[bytes]:  # fmt: skip
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

    def send_signal(self, proc: subprocess.Popen[bytes], sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)

    def stop(
        self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL, timeout: float = 10
    ) -> int:
        """Signal one process and reap it; returns its exit status."""
        self.send_signal(proc, sig)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.send_signal(proc, signal.SIGKILL)
            return proc.wait(timeout=5)
        finally:
            self.processes.pop(proc.pid, None)

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return self.logs[proc.pid].read_text(errors="replace")

    # -- observing ----------------------------------------------------------------
    def addresses(self, index: int) -> set[str]:
        """The addresses (without prefix) on node ``index``'s eth0."""
        out = sh("ip", "-n", self.ns(index), "-o", "addr", "show", "dev", "eth0").stdout
        found = set()
        for line in out.splitlines():
            words = line.split()
            if len(words) > 3 and words[2] in ("inet", "inet6"):
                found.add(words[3].split("/")[0])
        return found

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
        sh("ip", "-n", self.ns(index), "link", "set", "dev", "eth0", "up" if up else "down")

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
        for pid, proc in list(self.processes.items()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self.processes.clear()
        for name in reversed(self.namespaces):
            sh("ip", "netns", "del", name, check=False)
        self.namespaces.clear()


@contextlib.contextmanager
def cluster(workdir: Path, nodes: int = 3) -> Iterator[Cluster]:
    with Cluster(workdir, nodes) as built:
        yield built


def last_lines(text: str, count: int = 40) -> str:
    return "\n".join(text.splitlines()[-count:])


__all__ = ["Advert", "Announcement", "Capture", "Cluster", "cluster", "in_netns", "node_ip",
           "node_ip6", "sh", "wait_until"]  # fmt: skip
