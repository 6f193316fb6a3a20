"""Virtual addresses and link state through rtnetlink (pyroute2).

* `NetlinkAddresses` is the real `ports.AddressManager`: idempotent add
  ("replace" succeeds whether the address is there or not) and remove
  (EADDRNOTAVAIL, "not there", is success). NOTES.md: adding twice raises
  EEXIST and deleting a missing address raises EADDRNOTAVAIL. It writes the
  rtnetlink requests itself on a plain socket, all the addresses of one call in
  one batch: a takeover of hundreds of VIPs is timed in milliseconds.
* `LinkWatcher` reports carrier up/down of the watched interfaces from its own
  thread, and `LinkWatcher.state_of` reads one interface's state at once, for a
  virtual host about to start on it. NOTES.md: a pyroute2 socket belongs to the
  thread that made it (one bound in one thread and read in another silently
  receives nothing), so the watcher creates and binds its own `IPRoute` inside
  its thread; a blocking `get()` ends within a millisecond when another thread
  closes the socket.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import queue
import socket
import struct
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTMGRP_LINK

from cluster.carp.types import IPAddress, IPInterface

log = logging.getLogger(__name__)

# linux/if.h
IFF_UP = 0x1
IFF_RUNNING = 0x40  # operationally up: carrier present (RFC 2863 operstate UP)
# linux/if_addr.h: use an IPv6 VIP at once, without the ~1 s of duplicate address detection;
# the address moves between nodes, a DAD probe would only delay the takeover.
IFA_F_NODAD = 0x02


def _usable(msg: Any) -> bool:
    """Whether an RTM_NEWLINK message shows the interface up with a carrier."""
    flags = int(msg.get("flags", 0))
    return bool(flags & IFF_UP) and bool(flags & IFF_RUNNING)


# linux/netlink.h, linux/rtnetlink.h, linux/if_addr.h: what the batched address
# requests below put on the socket by hand.
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_REPLACE, NLM_F_CREATE, NLM_F_DUMP = 0x100, 0x400, 0x300
IFA_ADDRESS, IFA_LOCAL = 1, 2
_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTATTR = struct.Struct("=HH")  # len, type
_ERRNO = struct.Struct("=i")
# Requests per send: the kernel acks each one, and the acks of one send must fit in
# the socket's receive buffer (an ack that does not fit is lost, ENOBUFS).
BATCH = 64
RECV_SIZE = 1 << 16
SOCKET_BUFFER = 1 << 20
REPLY_TIMEOUT = 2.0  # s


def _attr(kind: int, data: bytes) -> bytes:
    length = _RTATTR.size + len(data)
    return _RTATTR.pack(length, kind) + data + b"\0" * (-length % 4)


def _address_request(
    kind: int, flags: int, seq: int, index: int, address: IPAddress, prefixlen: int
) -> bytes:
    """One RTM_NEWADDR/RTM_DELADDR, as ``ip addr replace/del ADDRESS/PREFIX dev IF`` sends it:
    IFA_LOCAL and IFA_ADDRESS both the address (no peer). IPv6 gets IFA_F_NODAD."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    ifa_flags = IFA_F_NODAD if address.version == 6 and kind == RTM_NEWADDR else 0
    packed = address.packed
    body = _IFADDRMSG.pack(family, prefixlen, ifa_flags, 0, index)
    body += _attr(IFA_LOCAL, packed) + _attr(IFA_ADDRESS, packed)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def _messages(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, seq, payload) of each netlink message in one datagram."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            return
        yield kind, flags, seq, data[offset + _NLMSGHDR.size : offset + length]
        offset += (length + 3) & ~3


def _parse_address(payload: bytes) -> tuple[int, IPAddress, int] | None:
    """(interface index, address, prefixlen) of an RTM_NEWADDR payload: IFA_LOCAL, the
    node's own end, else IFA_ADDRESS (IPv6 sends only that one)."""
    if len(payload) < _IFADDRMSG.size:
        return None
    family, prefixlen, _flags, _scope, index = _IFADDRMSG.unpack_from(payload)
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    found: dict[int, bytes] = {}
    offset = _IFADDRMSG.size
    while offset + _RTATTR.size <= len(payload):
        length, kind = _RTATTR.unpack_from(payload, offset)
        if length < _RTATTR.size:
            break
        if kind in (IFA_ADDRESS, IFA_LOCAL):
            found[kind] = payload[offset + _RTATTR.size : offset + length]
        offset += (length + 3) & ~3
    raw = found.get(IFA_LOCAL, found.get(IFA_ADDRESS))
    if raw is None:
        return None
    return index, ipaddress.ip_address(raw), prefixlen


class _Requests:
    """A plain NETLINK_ROUTE socket that sends address requests in batches.

    A takeover of 255 VIPs added them one ``IPRoute.addr`` at a time, each a round
    trip through pyroute2's message classes: 1 to 3 ms per address measured here,
    and a removal dumped every address of the interface through them first (tens
    of ms each with 255 present). The kernel handles every message of one send in
    order and acks each (linux/netlink.h NLM_F_ACK), so a batch costs one send and
    one read of the acks.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        # The kernel answers at once; a lost ack must not hang the protocol loop.
        self.sock.settimeout(REPLY_TIMEOUT)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFFFFFF or 1
        return self.seq

    def run(self, requests: list[tuple[int, bytes]], ignore: frozenset[int]) -> None:
        """Send (seq, message) requests BATCH at a time and wait for every ack; raise the
        first error not in ``ignore`` (errno values) once all of them were handled."""
        first: NetlinkError | None = None
        for start in range(0, len(requests), BATCH):
            chunk = requests[start : start + BATCH]
            waiting = {seq for seq, _message in chunk}
            self.sock.send(b"".join(message for _seq, message in chunk))
            while waiting:
                for kind, _flags, seq, payload in _messages(self.sock.recv(RECV_SIZE)):
                    if kind != NLMSG_ERROR or seq not in waiting:
                        continue  # a stray reply of an earlier, interrupted batch
                    waiting.discard(seq)
                    code = -_ERRNO.unpack_from(payload)[0]
                    if code and code not in ignore and first is None:
                        first = NetlinkError(code, os.strerror(code))
        if first is not None:
            raise first

    def dump(self) -> list[tuple[int, IPAddress, int]]:
        """Every address of every interface: (index, address, prefixlen)."""
        seq = self.next_seq()
        body = _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), RTM_GETADDR,
                                NLM_F_REQUEST | NLM_F_DUMP, seq, 0)  # fmt: skip
        self.sock.send(header + body)
        found: list[tuple[int, IPAddress, int]] = []
        while True:
            for kind, _flags, reply_seq, payload in _messages(self.sock.recv(RECV_SIZE)):
                if reply_seq != seq:
                    continue
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR:
                    code = -_ERRNO.unpack_from(payload)[0]
                    if code:
                        raise NetlinkError(code, os.strerror(code))
                    continue
                if kind == RTM_NEWADDR and (parsed := _parse_address(payload)) is not None:
                    found.append(parsed)


class NetlinkAddresses:
    """`ports.AddressManager` over rtnetlink: one plain netlink socket per calling thread,
    every address of one call in one batch of requests."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._sockets: list[_Requests] = []
        self._lock = threading.Lock()

    def _requests(self) -> _Requests:
        # One per thread: the acks of one thread's batch must not be read by another.
        requests: _Requests | None = getattr(self._local, "requests", None)
        if requests is None:
            requests = _Requests()
            self._local.requests = requests
            with self._lock:
                self._sockets.append(requests)
        return requests

    def _index(self, interface: str) -> int:
        # An ioctl, microseconds; pyroute2's link_lookup dumps every link over netlink,
        # which sits on the takeover's critical path.
        return socket.if_nametoindex(interface)

    def add(self, interface: str, addresses: Iterable[IPInterface]) -> None:
        """``ip addr replace`` of each address: there afterwards, whether it was or not."""
        index = self._index(interface)
        requests = self._requests()
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE | NLM_F_CREATE
        batch = []
        for address in addresses:
            seq = requests.next_seq()
            message = _address_request(
                RTM_NEWADDR, flags, seq, index, address.ip, address.network.prefixlen
            )
            batch.append((seq, message))
        requests.run(batch, ignore=frozenset())

    def remove(self, interface: str, addresses: Iterable[IPInterface]) -> None:
        """Delete each address with every prefix it is present with (EADDRNOTAVAIL, not
        there, is success)."""
        index = self._index(interface)
        wanted = list(addresses)
        if not wanted:
            return
        requests = self._requests()
        # Delete with the prefix actually present: a VIP added by an older configuration
        # (or by a ucarp upscript) may carry another prefix than the one configured now.
        present = self._present(index)
        batch = []
        for address in wanted:
            for prefixlen in present.get(address.ip, [address.network.prefixlen]):
                seq = requests.next_seq()
                message = _address_request(
                    RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, seq, index, address.ip, prefixlen
                )
                batch.append((seq, message))
        requests.run(batch, ignore=frozenset({errno.EADDRNOTAVAIL}))

    def _present(self, index: int) -> dict[IPAddress, list[int]]:
        present: dict[IPAddress, list[int]] = {}
        for found_index, ip, prefixlen in self._requests().dump():
            if found_index == index:
                present.setdefault(ip, []).append(prefixlen)
        return present

    def list(self, interface: str) -> set[IPInterface]:
        index = self._index(interface)
        return {
            ipaddress.ip_interface(f"{ip}/{prefixlen}")
            for ip, prefixes in self._present(index).items()
            for prefixlen in prefixes
        }

    def close(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for requests in sockets:
            with contextlib.suppress(Exception):
                requests.close()
        self._local = threading.local()


@dataclass(frozen=True, slots=True)
class LinkChange:
    """The watched interface became usable (``up``) or not."""

    interface: str
    up: bool


class LinkWatcher:
    """Watches carrier/admin state of some interfaces in a thread of its own.

    Changes (and the initial state of each interface) go into a thread-safe queue;
    each put also writes the eventfd behind `fileno()`, which the runner includes
    in its select(). `drain()` empties both.
    """

    def __init__(self, interfaces: Iterable[str]) -> None:
        self.interfaces = frozenset(interfaces)
        self._watch_lock = threading.Lock()
        self._queue: queue.SimpleQueue[LinkChange] = queue.SimpleQueue()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._thread: threading.Thread | None = None
        self._ipr: Any = None
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._last: dict[str, bool] = {}

    def fileno(self) -> int:
        return self._wake

    def watch(self, interfaces: Iterable[str]) -> None:
        """Add interfaces to the watched set (any thread: the set is swapped, not changed).

        An added interface is reported from its next change on; `state_of` tells its
        state until then.
        """
        # Two writers (the engine's configuration, the runner's `state_of`): one at a
        # time, or one's addition could be lost; the watcher's thread only reads.
        with self._watch_lock:
            self.interfaces = self.interfaces | frozenset(interfaces)

    def state_of(self, interface: str) -> bool:
        """Watch ``interface`` and read whether it is up with a carrier now (any thread).

        The runner asks before it starts the first virtual host on an interface: an
        interface the watcher did not report yet (added by `watch` after start) would
        otherwise be taken as up, and a node started on a dead link would become MASTER
        there. Watched first, read second: a change after the read is reported by the
        watcher's thread, so none falls between the two. An interface that is not
        there is down, as RTM_DELLINK reports it.
        """
        self.watch([interface])
        # NOTES.md: a pyroute2 socket belongs to the thread that made it, so this one
        # is made, used and closed in the caller's thread; once per interface.
        with IPRoute() as ipr:
            try:
                msgs = ipr.link("get", ifname=interface)
            except NetlinkError as exc:
                if exc.code == errno.ENODEV:
                    return False
                raise
        return any(_usable(msg) for msg in msgs)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="carp-link-watcher", daemon=True)
        self._thread.start()
        # Wait for the subscription so that no change between start() and bind() is lost.
        self._ready.wait(timeout=5)

    def drain(self) -> list[LinkChange]:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._wake)
        changes: list[LinkChange] = []
        while True:
            try:
                changes.append(self._queue.get_nowait())
            except queue.Empty:
                return changes

    def _report(self, interface: str, up: bool) -> None:
        if self._last.get(interface) == up:
            return
        self._last[interface] = up
        self._queue.put(LinkChange(interface, up))
        os.eventfd_write(self._wake, 1)

    def _handle(self, msg: Any) -> None:
        name = msg.get("IFLA_IFNAME")
        if name not in self.interfaces:
            return
        if msg.get("event") == "RTM_DELLINK":
            self._report(name, False)
            return
        self._report(name, _usable(msg))

    def _run(self) -> None:
        try:
            ipr = IPRoute()
            self._ipr = ipr
            ipr.bind(groups=RTMGRP_LINK)
        except Exception:
            log.exception("link watcher could not subscribe to rtnetlink")
            self._ready.set()
            return
        try:
            # Subscribe first, then read the current state: a change in between is
            # seen twice at worst, never missed.
            for msg in ipr.get_links():
                self._handle(msg)
            self._ready.set()
            while not self._stopping.is_set():
                for msg in ipr.get():
                    self._handle(msg)
        except Exception:
            if not self._stopping.is_set():
                log.exception("link watcher stopped unexpectedly")
        finally:
            self._ready.set()
            with contextlib.suppress(Exception):
                ipr.close()

    def stop(self) -> None:
        self._stopping.set()
        if self._ipr is not None:
            # NOTES.md: closing from another thread ends the blocking get() in under 1 ms.
            with contextlib.suppress(Exception):
                self._ipr.close()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with contextlib.suppress(OSError):
            os.close(self._wake)
