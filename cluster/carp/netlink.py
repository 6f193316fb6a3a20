"""Virtual addresses and link state through rtnetlink (pyroute2).

* `NetlinkAddresses` is the real `ports.AddressManager`: idempotent add
  ("replace" succeeds whether the address is there or not) and remove
  (EADDRNOTAVAIL, "not there", is success). NOTES.md: adding twice raises
  EEXIST and deleting a missing address raises EADDRNOTAVAIL.
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
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTMGRP_LINK

from cluster.carp.types import IPInterface

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


class NetlinkAddresses:
    """`ports.AddressManager` over rtnetlink, one `IPRoute` per calling thread."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._sockets: list[Any] = []
        self._lock = threading.Lock()

    def _ipr(self) -> Any:
        # NOTES.md: a pyroute2 socket belongs to the thread that created it.
        ipr = getattr(self._local, "ipr", None)
        if ipr is None:
            ipr = IPRoute()
            self._local.ipr = ipr
            with self._lock:
                self._sockets.append(ipr)
        return ipr

    def _index(self, interface: str) -> int:
        # An ioctl, microseconds; pyroute2's link_lookup dumps every link over netlink,
        # which sits on the takeover's critical path.
        return socket.if_nametoindex(interface)

    def add(self, interface: str, addresses: Iterable[IPInterface]) -> None:
        index = self._index(interface)
        for address in addresses:
            extra = {"flags": IFA_F_NODAD} if address.version == 6 else {}
            self._ipr().addr(
                "replace",
                index=index,
                address=str(address.ip),
                prefixlen=address.network.prefixlen,
                **extra,
            )

    def remove(self, interface: str, addresses: Iterable[IPInterface]) -> None:
        index = self._index(interface)
        wanted = list(addresses)
        if not wanted:
            return
        # Delete with the prefix actually present: a VIP added by an older configuration
        # (or by a ucarp upscript) may carry another prefix than the one configured now.
        present = self._present(index)
        for address in wanted:
            for prefixlen in present.get(address.ip, [address.network.prefixlen]):
                try:
                    self._ipr().addr(
                        "del", index=index, address=str(address.ip), prefixlen=prefixlen
                    )
                except NetlinkError as exc:
                    if exc.code != errno.EADDRNOTAVAIL:
                        raise

    def _present(
        self, index: int
    ) -> dict[ipaddress.IPv4Address | ipaddress.IPv6Address, list[int]]:
        present: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, list[int]] = {}
        for msg in self._ipr().get_addr(index=index):
            raw = msg.get("IFA_ADDRESS")
            if raw is None:
                continue
            ip = ipaddress.ip_address(raw)
            present.setdefault(ip, []).append(int(msg["prefixlen"]))
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
        for ipr in sockets:
            with contextlib.suppress(Exception):
                ipr.close()
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
