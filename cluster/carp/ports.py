"""The small interfaces between the pure engine and the outside world (typing.Protocol only).

Real adapters live in `link.py` / `netlink.py` / `arp.py`; in-memory fakes that
tests inspect live in `fakes.py` (Django's locmem mail backend pattern). Every
method here must be idempotent where it says so and must never block the
protocol loop for long.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from cluster.carp.types import IPInterface, Reason, ReceivedPacket, State


class Clock(Protocol):
    """A monotonic clock in seconds; the runner's only source of `now`."""

    def monotonic(self) -> float: ...


class PacketLink(Protocol):
    """CARP packets (IP protocol 112) on one interface and one address family.

    `send` takes the 36-byte CARP payload; the link adds the IP header
    (224.0.0.18 or ff02::12, TTL/hop limit 255, CARP.md "Building the raw
    socket"). `receive` never blocks: it returns one waiting packet from this
    link's interface, or None (the runner waits in select() on every link). It does not
    filter the node's own adverts or bad TTLs: the runner does, so it can count them.
    """

    def send(self, vhid: int, payload: bytes) -> None: ...

    def receive(self) -> ReceivedPacket | None: ...

    def close(self) -> None: ...


class AddressManager(Protocol):
    """Virtual addresses on interfaces. `add` and `remove` are idempotent."""

    def add(self, interface: str, addresses: Iterable[IPInterface]) -> None: ...

    def remove(self, interface: str, addresses: Iterable[IPInterface]) -> None: ...

    def list(self, interface: str) -> set[IPInterface]: ...


class GratuitousSender(Protocol):
    """Gratuitous ARP for IPv4 addresses, unsolicited neighbour advertisement for IPv6."""

    def announce(self, interface: str, addresses: Iterable[IPInterface]) -> None: ...


class StatePublisher(Protocol):
    """Tells the control plane about state changes. Must not block (DESIGN.md rule 2):
    both methods run in the protocol loop, so they may only queue.

    A vhid is unique per interface only, hence both.
    """

    def publish(
        self,
        interface: str,
        vhid: int,
        state: State,
        reason: Reason,
        *,
        old: State,
        at: float,
        source: str = "",
        silence: float | None = None,
    ) -> None:
        """The virtual host went from ``old`` to ``state`` for ``reason``; ``at`` is the
        wall-clock time (time.time()) at which the loop saw it; ``source`` names the
        demotion source that caused it, if one did; ``silence`` (a takeover) the
        seconds since the replaced master's last advert (`Transitioned.silence`)."""

    def changed(self, interface: str, vhid: int) -> None:
        """Something else in the host's snapshot changed (the master seen in adverts,
        the advertised advskew or demote): read `Runner.snapshot()` for the values."""
