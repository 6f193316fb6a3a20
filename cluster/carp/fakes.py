"""In-memory fakes of every port in `ports.py`, for tests (Django's locmem backend pattern).

Each fake records what it was asked to do in plain lists and dicts that tests
inspect. `FakeSegment` joins several `FakeLink`s into one broadcast domain, so
that runner tests can run several nodes in one process without sockets.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass, field

from cluster.carp.types import IPAddress, IPInterface, Reason, ReceivedPacket, State

__all__ = [
    "FakeAddresses",
    "FakeClock",
    "FakeGratuitous",
    "FakeLink",
    "FakeLinkStates",
    "FakePublisher",
    "FakeSegment",
    "Published",
    "SentPacket",
]


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a monotonic clock does not go back")
        self.now += seconds
        return self.now


@dataclass(frozen=True, slots=True)
class SentPacket:
    vhid: int
    payload: bytes


class FakeLink:
    """A PacketLink that records what is sent and returns what tests inject.

    `receive` returns the oldest injected packet or None (the fake clock is the
    test's business).
    """

    def __init__(
        self,
        interface: str = "eth0",
        source: IPAddress | None = None,
        segment: FakeSegment | None = None,
    ) -> None:
        self.interface = interface
        self.source = source
        self.sent: list[SentPacket] = []
        self.inbox: collections.deque[ReceivedPacket] = collections.deque()
        self.closed = False
        self.segment = segment
        if segment is not None:
            segment.attach(self)

    def send(self, vhid: int, payload: bytes) -> None:
        if self.closed:
            raise OSError("link closed")
        self.sent.append(SentPacket(vhid, payload))
        if self.segment is not None:
            self.segment.deliver(self, payload)

    def receive(self) -> ReceivedPacket | None:
        return self.inbox.popleft() if self.inbox else None

    def close(self) -> None:
        self.closed = True

    def inject(
        self, payload: bytes, source: IPAddress, ttl: int = 255, at: float | None = None
    ) -> None:
        """Queue a packet as if it had arrived on this link (at ``at``, the kernel's
        receive time on the runner's clock, when given)."""
        self.inbox.append(ReceivedPacket(payload, source, ttl, self.interface, at))


class FakeSegment:
    """A broadcast domain: a packet sent on one attached link arrives on every other one."""

    def __init__(self) -> None:
        self.links: list[FakeLink] = []
        self.up = True

    def attach(self, link: FakeLink) -> None:
        self.links.append(link)

    def deliver(self, sender: FakeLink, payload: bytes) -> None:
        if not self.up or sender.source is None:
            return
        for link in self.links:
            if link is not sender and not link.closed:
                link.inject(payload, sender.source)


class FakeAddresses:
    """An AddressManager over a dict; add/remove are idempotent and logged in `history`."""

    def __init__(self) -> None:
        self.by_interface: dict[str, set[IPInterface]] = collections.defaultdict(set)
        self.history: list[tuple[str, str, IPInterface]] = []

    def add(self, interface: str, addresses: Iterable[IPInterface]) -> None:
        for address in addresses:
            self.by_interface[interface].add(address)
            self.history.append(("add", interface, address))

    def remove(self, interface: str, addresses: Iterable[IPInterface]) -> None:
        for address in addresses:
            self.by_interface[interface].discard(address)
            self.history.append(("remove", interface, address))

    def list(self, interface: str) -> set[IPInterface]:
        return set(self.by_interface.get(interface, set()))


class FakeGratuitous:
    """A GratuitousSender that records each announcement."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[IPInterface, ...]]] = []

    def announce(self, interface: str, addresses: Iterable[IPInterface]) -> None:
        self.sent.append((interface, tuple(addresses)))


class FakeLinkStates:
    """A `runner.LinkStateReader` over a dict: the state of each interface at the moment
    the runner asks (None for one it does not know), and every question in `asked`."""

    def __init__(self, states: dict[str, bool] | None = None) -> None:
        self.states: dict[str, bool] = dict(states or {})
        self.asked: list[str] = []

    def __call__(self, interface: str) -> bool | None:
        self.asked.append(interface)
        return self.states.get(interface)


@dataclass(frozen=True, slots=True)
class Published:
    interface: str
    vhid: int
    state: State
    reason: Reason
    old: State | None = None
    at: float | None = None
    source: str = ""


@dataclass
class FakePublisher:
    """A StatePublisher that keeps every publication (and `changed` call) in order."""

    published: list[Published] = field(default_factory=list)
    changes: list[tuple[str, int]] = field(default_factory=list)

    def publish(
        self,
        interface: str,
        vhid: int,
        state: State,
        reason: Reason,
        *,
        old: State | None = None,
        at: float | None = None,
        source: str = "",
        silence: float | None = None,
    ) -> None:
        self.published.append(Published(interface, vhid, state, reason, old, at, source))

    def changed(self, interface: str, vhid: int) -> None:
        self.changes.append((interface, vhid))

    def states(self, vhid: int) -> list[State]:
        return [p.state for p in self.published if p.vhid == vhid]
