"""A LAN made of network namespaces: a bridge, node namespaces and a client.

Layout: one namespace holds the bridge ``br0`` (so nothing is ever added to, or
sent on, the host's own interfaces); every node gets its own namespace whose
``eth0`` is a veth into that bridge; the optional client namespace is plugged
in the same way. Only documentation addresses are used: node *i* (1-based) is
192.0.2.(10+i)/24 and 2001:db8::(10+i)/64, the client 192.0.2.2/24.

Every namespace name starts with the LAN's prefix, so that parallel runs never
collide and the leftovers of a crashed run can be found and deleted
(:func:`remove_namespaces`). Deleting a namespace deletes its veth too.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Self, TypeVar

T = TypeVar("T")
Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

CLONE_NEWNET = 0x40000000
CLIENT_IP = "192.0.2.2"
CLIENT_IP6 = "2001:db8::2"


def node_ip(index: int) -> str:
    return f"192.0.2.{10 + index}"


def node_ip6(index: int) -> str:
    return f"2001:db8::{10 + index:x}"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command (iproute2, sysctl) and capture its output; raise on failure."""
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
    made in, so this is how a socket is opened inside a namespace (a capture on
    the bridge, an SMTP connection from the client) without ever moving the
    caller's own thread, nor paying for a subprocess.
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


def list_namespaces() -> list[str]:
    """The names of the host's named network namespaces (``ip netns list``)."""
    return [line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines() if line]


def remove_namespaces(prefix: str) -> list[str]:
    """Delete every namespace whose name starts with ``prefix``; returns their names."""
    found = [name for name in list_namespaces() if name.startswith(prefix)]
    for name in found:
        sh("ip", "netns", "del", name, check=False)
    return found


class Built:
    """A context manager that builds on entry and always closes: on exit, and when
    the build itself fails half-way (``close`` must undo a partial build)."""

    def build(self) -> object:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Lan(Built):
    """The bridge namespace, ``nodes`` node namespaces and maybe a client one.

    :meth:`build` is undone by :meth:`close` even when it failed half-way: every
    namespace is recorded as soon as it exists.
    """

    def __init__(self, prefix: str, nodes: int, client: bool = True) -> None:
        self.prefix = prefix
        self.nodes = nodes
        self.bridge = f"{prefix}br"
        self.client = f"{prefix}client" if client else None
        self.namespaces: list[str] = []

    def ns(self, index: int) -> str:
        """Node ``index``'s namespace (1-based)."""
        return f"{self.prefix}n{index}"

    def _add_namespace(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")

    def _plug(self, ns: str, port: str, addresses: tuple[str, ...]) -> None:
        """A veth from the bridge (``port``) to ``eth0`` in ``ns``, with ``addresses``."""
        # No DAD: a tentative IPv6 address cannot be used for a few seconds.
        for key in ("all", "default"):
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.accept_dad=0")
        sh("ip", "-n", self.bridge, "link", "add", port, "type", "veth", "peer", "name", "eth0",
           "netns", ns)  # fmt: skip
        sh("ip", "-n", self.bridge, "link", "set", port, "master", "br0", "up")
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0")
        for address in addresses:
            sh("ip", "-n", ns, "addr", "add", address, "dev", "eth0", "nodad")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")

    def build(self) -> Lan:
        self._add_namespace(self.bridge)
        br = self.bridge
        sh("ip", "-n", br, "link", "add", "br0", "type", "bridge")
        # 224.0.0.18 is flooded regardless; ff02::12 would be subject to MLD snooping.
        sh("ip", "-n", br, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
        sh("ip", "-n", br, "link", "set", "br0", "promisc", "on", "up")
        for i in range(1, self.nodes + 1):
            self._add_namespace(self.ns(i))
            self._plug(self.ns(i), f"vb{i}", (f"{node_ip(i)}/24", f"{node_ip6(i)}/64"))
        if self.client is not None:
            self._add_namespace(self.client)
            self._plug(self.client, "vbc", (f"{CLIENT_IP}/24", f"{CLIENT_IP6}/64"))
        return self

    def set_link(self, index: int, up: bool) -> None:
        sh("ip", "-n", self.ns(index), "link", "set", "dev", "eth0", "up" if up else "down")

    def link_up(self, index: int) -> bool:
        out = sh("ip", "-n", self.ns(index), "-o", "link", "show", "dev", "eth0").stdout
        flags = out.split("<", 1)[1].split(">", 1)[0].split(",") if "<" in out else []
        return "UP" in flags

    def interface_addresses(self, index: int) -> list[Interface]:
        """Every address on node ``index``'s eth0, with its prefix."""
        out = sh("ip", "-n", self.ns(index), "-o", "addr", "show", "dev", "eth0").stdout
        found: list[Interface] = []
        for line in out.splitlines():
            words = line.split()
            if len(words) > 3 and words[2] in ("inet", "inet6"):
                found.append(ipaddress.ip_interface(words[3]))
        return found

    def addresses(self, index: int) -> set[str]:
        """The addresses (without prefix) on node ``index``'s eth0."""
        return {str(iface.ip) for iface in self.interface_addresses(index)}

    def own_addresses(self, index: int) -> set[str]:
        return {node_ip(index), str(ipaddress.ip_address(node_ip6(index)))}

    def close(self) -> None:
        for name in reversed(self.namespaces):
            sh("ip", "netns", "del", name, check=False)
        self.namespaces.clear()
