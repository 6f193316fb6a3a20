"""Who holds an address, from the kernel's own address events in each namespace.

Polling ``ip addr`` misses a holder that comes and goes between two looks (a
contended takeover lasts milliseconds); an rtnetlink socket subscribed to the
address groups in each node's namespace hears every RTM_NEWADDR and
RTM_DELADDR. :class:`AddressWatch` keeps one such socket per node, read by a
single thread, and answers the questions the handover tests ask: which nodes
ever added an address, and how many held it at once.

The events carry the time the watcher read them (netlink has no receive
timestamp), so two events of different namespaces read in one wake-up may be
ordered either way; :meth:`AddressWatch.most_holders` can therefore count an
overlap of two during a clean handover (the new master adds the address while
the old one removes it), never a third holder that did not exist.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import struct
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cluster.lab.lan import in_netns

RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100
RTM_NEWADDR, RTM_DELADDR = 20, 21
IFA_ADDRESS, IFA_LOCAL = 1, 2
NLMSG_HEADER = 16
IFADDRMSG = 8


@dataclass(frozen=True)
class AddressEvent:
    """An address added to or removed from an interface of ``node``'s namespace."""

    time: float  # time.time() when the watcher read it
    node: str
    added: bool
    address: str


def parse_addr_messages(data: bytes) -> list[tuple[bool, str]]:
    """(added, address) for each RTM_NEWADDR / RTM_DELADDR in one netlink datagram."""
    found: list[tuple[bool, str]] = []
    offset = 0
    while offset + NLMSG_HEADER <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if length < NLMSG_HEADER:
            break
        if kind in (RTM_NEWADDR, RTM_DELADDR):
            body = data[offset + NLMSG_HEADER : offset + length]
            address = _address(body)
            if address is not None:
                found.append((kind == RTM_NEWADDR, address))
        offset += (length + 3) & ~3
    return found


def _address(body: bytes) -> str | None:
    """IFA_LOCAL (the address itself on IPv4), else IFA_ADDRESS."""
    values: dict[int, bytes] = {}
    offset = IFADDRMSG
    while offset + 4 <= len(body):
        length, kind = struct.unpack_from("=HH", body, offset)
        if length < 4:
            break
        if kind in (IFA_ADDRESS, IFA_LOCAL):
            values[kind] = body[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    raw = values.get(IFA_LOCAL, values.get(IFA_ADDRESS))
    if raw is None or len(raw) not in (4, 16):
        return None
    return str(ipaddress.ip_address(raw))


class AddressWatch:
    """Address events of several namespaces, ``{node name: namespace}``, from now on."""

    def __init__(self, namespaces: Mapping[str, str]) -> None:
        def open_socket() -> socket.socket:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
            return sock

        self._sockets: dict[socket.socket, str] = {}
        try:
            for node, namespace in namespaces.items():
                self._sockets[in_netns(namespace, open_socket)] = node
        except BaseException:
            self._close_sockets()
            raise
        self.events: list[AddressEvent] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="address-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select(list(self._sockets), [], [], 0.1)
            for sock in ready:
                try:
                    data = sock.recv(1 << 16)
                except OSError:
                    return
                stamp = time.time()
                node = self._sockets[sock]
                with self._lock:
                    self.events.extend(
                        AddressEvent(stamp, node, added, address)
                        for added, address in parse_addr_messages(data)
                    )

    def of(self, address: str, since: float = 0.0) -> list[AddressEvent]:
        """The events of ``address``, in the order they were read."""
        address = str(ipaddress.ip_address(address))
        with self._lock:
            return [e for e in self.events if e.address == address and e.time >= since]

    def adders(self, address: str, since: float = 0.0) -> set[str]:
        """The nodes that added ``address`` (at least once)."""
        return {e.node for e in self.of(address, since) if e.added}

    def removers(self, address: str, since: float = 0.0) -> set[str]:
        return {e.node for e in self.of(address, since) if not e.added}

    def most_holders(self, address: str, holders: Iterable[str], since: float = 0.0) -> int:
        """The most nodes that held ``address`` at once, starting from ``holders``."""
        current = set(holders)
        most = len(current)
        for event in self.of(address, since):
            if event.added:
                current.add(event.node)
            else:
                current.discard(event.node)
            most = max(most, len(current))
        return most

    def timeline(self, address: str, since: float = 0.0) -> str:
        """The events as text, for assertion messages."""
        events = self.of(address, since)
        start = events[0].time if events else 0.0
        return "; ".join(
            f"+{e.time - start:.3f}s {e.node} {'added' if e.added else 'removed'}" for e in events
        )

    def _close_sockets(self) -> None:
        for sock in self._sockets:
            sock.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self._close_sockets()

    def __enter__(self) -> AddressWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
