"""The one protocol loop: many virtual hosts, one thread, sleeping until a packet or a deadline.

Each iteration waits in ``select()`` on the raw CARP sockets, the wake-up eventfd
(stop, reconfigure, link state) and the link watcher's eventfd, until the
earliest deadline of all state machines (a heap, so hundreds of virtual hosts
cost O(log n) per timer, not a scan). Then it:

1. drains every link: own adverts and bad TTLs are dropped, the header is
   checked (`wire.decode_unverified`), the vhid picks the virtual host whose
   password and addresses verify the HMAC, and the advert goes to its machine;
2. fires every deadline that has passed (`Timeout`);
3. performs the actions the machines returned through the ports (`_flush`):
   adverts first, then addresses and gratuitous ARPs in batches, then, when no
   other deadline is about to fall due, the logs, hooks and publishing.

Packets that fail a check are counted per reason and logged at most once per
reason every `DROP_LOG_INTERVAL` seconds: a peer with the wrong password sends
one bad advert a second and must not flood the log. An exception from a port
(netlink, a socket, a hook) is logged (rate-limited too) and the loop goes on:
the data plane must keep serving the other virtual hosts.

Thread safety: `request_stop`, `reconfigure`, `post_link_state` and `snapshot`
may be called from any thread; everything else belongs to the loop's thread.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import logging
import os
import queue
import select
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cluster.carp import wire
from cluster.carp.fsm import VirtualHost
from cluster.carp.ports import AddressManager, Clock, GratuitousSender, PacketLink, StatePublisher
from cluster.carp.ratelimit import LogLimiter
from cluster.carp.types import (
    Action,
    AddAddresses,
    AdvertReceived,
    DemotionSource,
    Event,
    IPAddress,
    IPInterface,
    LinkDown,
    LinkUp,
    Reason,
    ReceivedPacket,
    Reconfigure,
    RemoveAddresses,
    SendAdvert,
    SendGratuitous,
    SetDemotion,
    Start,
    State,
    Stop,
    Timeout,
    Transitioned,
    VirtualHostConfig,
    demotion_reason,
)

log = logging.getLogger("cluster.carp")

# FreeBSD net.inet.carp.ifdown_demotion_factor: the demotion while a CARP interface is down.
IFDOWN_DEMOTION = 240
DROP_LOG_INTERVAL = 10.0  # seconds between two log lines for the same drop reason
# Packets read from one link before the deadlines get their turn again: a few ms of
# work, so that a flood delays an advert by that much at most.
PACKETS_PER_STEP = 1_000
HOOK_OUTPUT_LIMIT = 4096  # bytes of a script's output that go into the log
_COUNTER_MASK = 2**64 - 1
HostKey = tuple[str, int]  # (interface, vhid): a vhid is unique per interface only


# What may wait, after a step, while more deadlines are due this soon (s): the logs,
# hooks and publishing of transitions (`_flush`), at most `EFFECTS_MAX_DELAY` s.
EFFECTS_LOOKAHEAD = 0.010
EFFECTS_MAX_DELAY = 0.200
# The loop sleeps in select() between bursts of work; if it has not slept for this
# long (s), something makes it spin (a socket always readable, a flood, a bug) and
# ``on_spin`` is called once, e.g. to leave real-time scheduling (`realtime`).
SPIN_LIMIT = 2.0
# MASTER adverts due within this long (s) of one that fires go with it (at most an
# eighth of their interval early): one wake-up for the adverts of many vhids.
ADVERT_GROUP = 0.010
# A select() that returned after this long (s), or on its timeout, slept.
SLEPT = 0.0005


class SystemClock:
    """`ports.Clock` on time.monotonic()."""

    def monotonic(self) -> float:
        return time.monotonic()


class LinkStateSource(Protocol):
    """What the runner needs from `netlink.LinkWatcher` (an eventfd and a drain)."""

    def fileno(self) -> int: ...

    def drain(self) -> Sequence[Any]: ...  # items with .interface and .up


LinkOpener = Callable[[str, IPAddress], PacketLink]
# Whether an interface is up with a carrier now (`netlink.LinkWatcher.state_of`); None
# when it cannot tell. Asked once per interface, before its first virtual host starts.
LinkStateReader = Callable[[str], bool | None]


def advert_source(config: VirtualHostConfig) -> IPAddress:
    """The address a virtual host advertises from; its family picks IPv4 or IPv6 CARP."""
    if config.src_ip is None:
        raise ValueError(f"vhid {config.vhid}: the runner needs src_ip (the node's own address)")
    return config.src_ip


class Hooks:
    """ucarp's upscript/downscript: ``<script> <interface> <vip> [<xparam>]``, once per address.

    Scripts run one after the other in a thread of their own, so a slow script
    never stalls the protocol loop and an up/down pair always runs in order.
    """

    def __init__(
        self,
        upscript: str | None,
        downscript: str | None,
        timeout: float = 60,
        xparam: str | None = None,
    ) -> None:
        self.upscript = upscript
        self.downscript = downscript
        self.xparam = xparam  # ucarp -x: a third argument, only when given
        self.timeout = timeout
        self._queue: queue.SimpleQueue[list[str] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def _submit(self, script: str | None, interface: str, addresses: Iterable[IPInterface]) -> None:
        if not script:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="carp-hooks", daemon=True)
            self._thread.start()
        for address in addresses:
            extra = [self.xparam] if self.xparam is not None else []
            self._queue.put([script, interface, str(address.ip), *extra])

    def up(self, interface: str, addresses: Iterable[IPInterface]) -> None:
        self._submit(self.upscript, interface, addresses)

    def down(self, interface: str, addresses: Iterable[IPInterface]) -> None:
        self._submit(self.downscript, interface, addresses)

    def _run(self) -> None:
        while (argv := self._queue.get()) is not None:
            try:
                self._run_one(argv)
            except OSError as exc:
                # Missing or not executable: say so in one line, not with a traceback.
                log.error("hook %s could not run: %s", " ".join(argv), exc.strerror or exc)
            except Exception:
                log.exception("hook %s failed", " ".join(argv))

    def _run_one(self, argv: list[str]) -> None:
        """Run one script; what it prints goes into our log, never raw onto our stderr.

        A ucarp downscript's ``ip addr del`` prints "Address not found" at start-up,
        which broke ``--log-format json`` (one JSON object per line). The output goes
        to a temporary file, not a pipe, so that a child the script leaves running
        (``arping ... &``) cannot hold us until the timeout.
        """
        command = " ".join(argv)
        with tempfile.TemporaryFile() as output:
            done = subprocess.run(
                argv,
                timeout=self.timeout,
                check=False,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            output.seek(0)
            said = output.read(HOOK_OUTPUT_LIMIT).decode(errors="replace").strip()
        extra = {"event": "hook", "command": command, "returncode": done.returncode}
        if done.returncode != 0:
            log.warning(
                "hook %s exited with %s%s",
                command,
                done.returncode,
                f": {said}" if said else "",
                extra={**extra, "output": said},
            )
        elif said:
            log.info("hook %s: %s", command, said, extra={**extra, "output": said})

    def close(self, wait: float = 5.0) -> None:
        """Run what is queued (the downscripts of a stop), then end the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=wait)
            self._thread = None


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    interface: str
    vhid: int
    state: State
    advbase: int
    advskew: int
    addresses: tuple[IPInterface, ...]
    adverts_sent: int
    adverts_received: int
    last_reason: Reason | None
    # What goes on the wire: the advskew with the node's demotion added (capped at 240,
    # FreeBSD) and OpenBSD's demote byte (CARP.md "Demotion").
    advertised_advskew: int = 0
    demote: int = 0
    # The demotion source that caused the last transition, when one did.
    last_source: str = ""
    # The current master as seen in adverts: the source of the last advert accepted
    # while BACKUP, our own source while MASTER, None when unknown (INIT, or BACKUP
    # before any advert).
    master: IPAddress | None = None
    last_from: State | None = None
    last_at: float | None = None  # wall-clock time (time.time()) of the last transition


@dataclass(frozen=True, slots=True)
class RunnerSnapshot:
    hosts: tuple[HostSnapshot, ...]
    drops: dict[str, int]
    port_errors: dict[str, int]
    running: bool
    # The node's demotion, source by source (sorted by name); the total is their sum.
    demotion: tuple[DemotionSource, ...] = ()

    @property
    def demotion_total(self) -> int:
        return sum(source.level for source in self.demotion)


@dataclass(slots=True)
class _Host:
    config: VirtualHostConfig
    machine: VirtualHost
    link_key: tuple[str, IPAddress]
    counter: int
    scheduled: float | None = None
    adverts_sent: int = 0
    adverts_received: int = 0
    last_reason: Reason | None = None
    last_source: str = ""
    last_from: State | None = None
    last_at: float | None = None
    master: IPAddress | None = None
    # (master, advertised advskew, demote) as last told to the publisher's `changed`.
    reported: tuple[IPAddress | None, int, int] | None = None
    # The counters accepted per sender, for the replay check (config.peers only).
    counters: dict[IPAddress, CounterWindow] = field(default_factory=dict)
    signer: wire.Signer | None = None  # for `config` (`signed`); rebuilt when it changes
    signed: VirtualHostConfig | None = None

    def sign(self) -> wire.Signer:
        if self.signer is None or self.signed is not self.config:
            self.signer = wire.Signer(self.config.password, self.config.vhid, self.config.addresses)
            self.signed = self.config
        return self.signer


REPLAY_WINDOW = 256  # recent counters remembered per sender when counters are not strict


class CounterWindow:
    """The adverts' counters accepted from one sender (CARP.md: the HMAC covers the
    counter, but nothing checks it). Strict: a counter must be above the last one
    accepted (senders that count up from a clock-derived start: our own nodes, so
    a restarted one is newer at once). Otherwise the recent counters are refused
    again, and any other is taken (ucarp sends random ones)."""

    def __init__(self) -> None:
        self.last: int | None = None
        self.recent: collections.deque[int] = collections.deque(maxlen=REPLAY_WINDOW)
        self._seen: set[int] = set()

    def accept(self, counter: int, strict: bool) -> bool:
        if strict:
            if self.last is not None and counter <= self.last:
                return False
        elif counter in self._seen:
            return False
        self.last = counter
        if len(self.recent) == self.recent.maxlen:
            self._seen.discard(self.recent[0])
        self.recent.append(counter)
        self._seen.add(counter)
        return True


def counter_start(now: float) -> int:
    """Where a virtual host's advert counter starts: the wall clock in 1/2^24 s.

    FreeBSD starts at a random value; a start derived from the clock is as
    unpredictable to nobody that matters and lets a peer that checks counters
    (`CounterWindow`, strict) accept a restarted node at its first advert: the
    new start is above every counter the previous run could have reached (2^24
    adverts per second of uptime)."""
    return int(now * 2**24) & _COUNTER_MASK


class Runner:
    """Runs many `VirtualHost` machines over real (or fake) ports in one thread."""

    def __init__(
        self,
        configs: Iterable[VirtualHostConfig],
        *,
        open_link: LinkOpener,
        addresses: AddressManager,
        gratuitous: GratuitousSender,
        publisher: StatePublisher | None = None,
        clock: Clock | None = None,
        hooks: Hooks | None = None,
        link_state: LinkStateSource | None = None,
        link_state_of: LinkStateReader | None = None,
        neutral: bool = False,
        on_spin: Callable[[], None] | None = None,
    ) -> None:
        self._open_link = open_link
        self.on_spin = on_spin
        self._rested = 0.0  # when the loop last slept in select()
        self.addresses = addresses
        self.gratuitous = gratuitous
        self.publisher = publisher
        self.clock: Clock = clock or SystemClock()
        self.hooks = hooks or Hooks(None, None)
        self.link_state = link_state
        self.link_state_of = link_state_of
        self.neutral = neutral
        self._initial = list(configs)
        self._hosts: dict[HostKey, _Host] = {}
        self._links: dict[tuple[str, IPAddress], PacketLink] = {}
        self._own: set[IPAddress] = set()
        self._link_up: dict[str, bool] = {}
        # DESIGN.md: the node's demotion is a sum of named sources; setting one never
        # erases another. `_cause` is the source whose rise last demoted the node.
        self._demotions: dict[str, DemotionSource] = {}
        self._cause = ""
        self._heap: list[tuple[float, int, HostKey]] = []
        self._pending: list[tuple[_Host, Action]] = []  # actions not yet performed
        # Logs, hooks and publishing not yet done, in order (`_flush`), and since when.
        self._effects: collections.deque[Callable[[], None]] = collections.deque()
        self._effects_since = 0.0
        self._seq = 0
        self.drops: Counter[str] = Counter()
        self.port_errors: Counter[str] = Counter()
        self._log_limit = LogLimiter(DROP_LOG_INTERVAL)
        self._drops_logged: dict[str, int] = {}  # the count at the last line, per reason
        self._foreign_vhids: set[tuple[str, int]] = set()
        self._lock = threading.RLock()  # guards _hosts for snapshot() from other threads
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._control: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._stop_requested = threading.Event()
        self._started = False
        self._running = False
        self.stopped = threading.Event()

    # ---- thread-safe controls ----------------------------------------------------
    def request_stop(self) -> None:
        """Ask the loop to stop gracefully (bow-out, addresses removed). Any thread."""
        self._stop_requested.set()
        self._notify()

    def reconfigure(
        self, configs: Iterable[VirtualHostConfig], retired: Iterable[HostKey] = ()
    ) -> None:
        """Hand the loop a whole new configuration; only changed virtual hosts are touched.

        A virtual host left out that is in ``retired`` is going away on every node (its
        alias disabled or deleted): it stops without the bow-out advert, so that no
        backup takes it over before applying the same change. Any other one left
        out bows out, and the best backup takes over at once. Any thread."""
        self._control.put(("reconfigure", (list(configs), frozenset(retired))))
        self._notify()

    def post_link_state(self, interface: str, up: bool) -> None:
        """Report a link change (what the link watcher does). Any thread."""
        self._control.put(("link", (interface, up)))
        self._notify()

    def set_demotion(self, source: str, level: int, reason: str = "") -> None:
        """Set one demotion source of this node (``maintenance``, ``health:<check>``,
        ``operator``; level 0 clears it), leaving the others as they are. ``reason``
        says why in words, for the console. Any thread."""
        self._control.put(("demotion", DemotionSource(source, level, reason)))
        self._notify()

    def request_dump(self) -> None:
        """Ask the loop to log every virtual host's state and the counters (ucarp's
        SIGUSR1). Any thread, and safe from a signal handler: the loop does the logging."""
        self._control.put(("dump", None))
        self._notify()

    def log_state(self) -> None:
        """Log one line per virtual host (state, priority, counts) and the drop counters."""
        snap = self.snapshot()
        for host in snap.hosts:
            log.info(
                "vhid %d on %s: %s, advbase %d advskew %d, %d adverts sent, %d received,"
                " last change: %s",
                host.vhid,
                host.interface,
                host.state,
                host.advbase,
                host.advskew,
                host.adverts_sent,
                host.adverts_received,
                host.last_reason or "none",
                extra={
                    "event": "state",
                    "vhid": host.vhid,
                    "interface": host.interface,
                    "state": str(host.state),
                    "adverts_sent": host.adverts_sent,
                    "adverts_received": host.adverts_received,
                },
            )
        log.info(
            "dropped packets: %s; port errors: %s",
            ", ".join(f"{k} {v}" for k, v in sorted(snap.drops.items())) or "none",
            ", ".join(f"{k} {v}" for k, v in sorted(snap.port_errors.items())) or "none",
            extra={"event": "counters", "drops": snap.drops, "port_errors": snap.port_errors},
        )

    def snapshot(self) -> RunnerSnapshot:
        """States and counters, safe to call from any thread (e.g. a publisher)."""
        with self._lock:
            hosts = tuple(
                HostSnapshot(
                    interface=h.config.interface,
                    vhid=h.config.vhid,
                    state=h.machine.state,
                    advbase=h.config.advbase,
                    advskew=h.config.advskew,
                    addresses=h.config.addresses,
                    adverts_sent=h.adverts_sent,
                    adverts_received=h.adverts_received,
                    last_reason=h.last_reason,
                    last_source=h.last_source,
                    advertised_advskew=h.machine.advskew,
                    demote=h.machine.demote_byte,
                    master=h.master,
                    last_from=h.last_from,
                    last_at=h.last_at,
                )
                for h in self._hosts.values()
            )
            return RunnerSnapshot(
                hosts,
                dict(self.drops),
                dict(self.port_errors),
                self._running,
                tuple(sorted(self._demotions.values(), key=lambda d: d.source)),
            )

    def _notify(self) -> None:
        with contextlib.suppress(OSError):
            os.eventfd_write(self._wake, 1)

    # ---- the loop ----------------------------------------------------------------------
    def run(self) -> None:
        """Start every virtual host, serve until `request_stop`, then stop them gracefully."""
        self.start()
        self.serve()

    def serve(self) -> None:
        """The loop of an already started runner, then the graceful stop."""
        try:
            self._rested = time.monotonic()
            while not self._stop_requested.is_set():
                try:
                    self.step()
                    if self.on_spin is not None and time.monotonic() - self._rested > SPIN_LIMIT:
                        self._spun()
                except Exception:
                    # A bug outside the ports must not end the data plane either; the
                    # pause keeps a persistent failure from spinning the CPU.
                    self._port_error("loop", "*")
                    time.sleep(0.01)
        finally:
            self.shutdown()

    def _spun(self) -> None:
        """The loop has not slept for `SPIN_LIMIT` s: tell ``on_spin``, once."""
        on_spin, self.on_spin = self.on_spin, None
        log.warning("the CARP loop has not slept for %g s", SPIN_LIMIT, extra={"event": "spinning"})
        if on_spin is not None:
            on_spin()

    def start(self) -> None:
        """Remove stale VIPs of our vhids, open the links, send `Start` to every machine."""
        with self._lock:
            self._started = True
            self._running = True
            self._reconcile(self._initial)
            for config in self._initial:
                self._add_host(config, self.clock.monotonic())
            self._flush()

    def _reconcile(self, configs: Sequence[VirtualHostConfig]) -> None:
        # NOTES.md: a SIGKILLed run leaves its VIPs; every host starts in BACKUP, so any
        # VIP of ours on the interface now is stale. The node's own addresses are kept.
        own = {c.src_ip for c in configs if c.src_ip is not None}
        by_interface: dict[str, list[IPInterface]] = {}
        for config in configs:
            by_interface.setdefault(config.interface, []).extend(config.addresses)
        for interface, vips in by_interface.items():
            wanted = {v.ip for v in vips} - own
            try:
                stale = [a for a in self.addresses.list(interface) if a.ip in wanted]
                if stale:
                    log.warning(
                        "removing %s left on %s by an earlier run",
                        ", ".join(map(str, stale)),
                        interface,
                        extra={"event": "reconcile", "interface": interface},
                    )
                    self.addresses.remove(interface, stale)
            except Exception:
                self._port_error("reconcile", interface)

    def step(self, max_wait: float | None = None) -> None:
        """One iteration: wait (at most ``max_wait``), then packets and deadlines in the
        order they happened, then controls, then what fell due meanwhile.

        A process that stalled (a busy machine) wakes with adverts queued on its
        sockets and timers expired. Each packet carries the time the kernel received
        it, and each deadline that fell due before that time fires first, at its
        turn: so an advert that arrived before a master-down deadline re-arms the
        timer instead of the stall making a live master look dead.
        """
        now = self.clock.monotonic()
        timeout = self._time_to_next(now)
        if max_wait is not None:
            timeout = max_wait if timeout is None else min(timeout, max_wait)
        self._wait(timeout)
        with self._lock:
            # Every packet the kernel received before this moment is read below (unless
            # the flood bound cuts the read short): the deadlines up to it may fire.
            horizon = self.clock.monotonic()
            packets, drained = self._read_packets()
            read_at = self.clock.monotonic()
            # Sorted by receive time; packets read in the same order keep it on a tie.
            timed = sorted(
                (min(p.at, read_at) if p.at is not None else read_at, n, p)
                for n, p in enumerate(packets)
            )
            for at, _n, packet in timed:
                self._fire_deadlines(at, strictly_before=True)
                self._packet(packet, at)
            self._read_controls()
            # Not up to now: a deadline that fell due while this step was reading and
            # working may have an advert waiting for it on the socket, received before
            # it (a node busy taking over 255 VIPs would otherwise time out a live
            # master, again and again). It fires at the next step, after the read.
            if not drained and timed:
                horizon = min(horizon, timed[-1][0])
            self._fire_deadlines(horizon)
            self._flush(defer=True)
            if self._effects and not self._busy():
                self._run_effects()

    def _time_to_next(self, now: float) -> float | None:
        while self._heap:
            deadline, _seq, key = self._heap[0]
            host = self._hosts.get(key)
            if host is None or host.scheduled != deadline:
                heapq.heappop(self._heap)  # stale entry: rescheduled or removed since
                continue
            return max(0.0, deadline - now)
        return None

    def _wait(self, timeout: float | None) -> None:
        fds: list[Any] = [self._wake]
        if self.link_state is not None:
            fds.append(self.link_state)
        selectable = True
        for link in self._links.values():
            if hasattr(link, "fileno"):
                fds.append(link)
            else:
                selectable = False  # an in-memory fake: the test drives the clock
        if not selectable:
            timeout = 0
        began = time.monotonic()
        try:
            ready, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            return
        ended = time.monotonic()
        if ended - began >= SLEPT or (not ready and timeout):
            self._rested = ended
        if self._wake in ready:
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(self._wake)

    def _read_packets(self) -> tuple[list[ReceivedPacket], bool]:
        """The packets waiting on every link, and whether every link was read empty."""
        # A raw socket hears every CARP packet of its interface and family, whatever its
        # source address: with two sources on one interface (vhosts with their own
        # srcip) every advert arrives once per socket. Only the first link of each
        # (interface, family) hands packets on; the others are drained and ignored.
        readers: dict[tuple[str, int], tuple[str, IPAddress]] = {}
        for key in self._links:
            readers.setdefault((key[0], key[1].version), key)
        found: list[ReceivedPacket] = []
        drained = True
        for key, link in list(self._links.items()):
            reader = readers[(key[0], key[1].version)] == key
            for _ in range(PACKETS_PER_STEP):  # bounded: a flood must not starve the timers
                try:
                    packet = link.receive()
                except Exception:
                    self._port_error("receive", key[0])
                    break
                if packet is None:
                    break
                if reader:
                    found.append(packet)
            else:
                drained = False
        return found, drained

    def _packet(self, packet: ReceivedPacket, now: float) -> None:
        if packet.source in self._own:
            self.drops["own"] += 1  # multicast loop is off; kept as a guard, not logged
            return
        try:
            wire.check_ttl(packet.ttl)
            advert = wire.decode_unverified(packet.payload)
        except wire.DecodeError as exc:
            self._drop(exc.reason, packet, exc.detail)
            return
        host = self._hosts.get((packet.interface, advert.vhid))
        if host is None:
            # Another cluster's vhid on the same segment is normal: counted, and said
            # once per vhid at INFO (a warning every 10 s for ever would cry wolf).
            self.drops[wire.DecodeFailure.WRONG_VHID] += 1
            foreign = (packet.interface, advert.vhid)
            if foreign not in self._foreign_vhids and len(self._foreign_vhids) < 4096:
                self._foreign_vhids.add(foreign)
                log.info(
                    "ignoring CARP adverts for vhid %d on %s (first from %s): not one of ours",
                    advert.vhid,
                    packet.interface,
                    packet.source,
                    extra={
                        "event": "drop",
                        "reason": str(wire.DecodeFailure.WRONG_VHID),
                        "vhid": advert.vhid,
                        "source": str(packet.source),
                        "interface": packet.interface,
                    },
                )
            return
        peers = host.config.peers
        if peers and packet.source not in peers:
            # The HMAC does not cover the source, advbase, advskew or demote: an advert
            # replayed or rewritten from another address would pass it (CARP.md).
            self._drop(
                wire.DecodeFailure.NOT_MEMBER,
                packet,
                f"vhid {advert.vhid}: {packet.source} is not a member",
            )
            return
        if not host.sign().verify(advert):
            self._drop(
                wire.DecodeFailure.BAD_HMAC,
                packet,
                f"vhid {advert.vhid}: password or addresses differ",
            )
            return
        if peers:
            window = host.counters.setdefault(packet.source, CounterWindow())
            if not window.accept(advert.counter, host.config.strict_counters):
                self._drop(
                    wire.DecodeFailure.REPLAY,
                    packet,
                    f"vhid {advert.vhid}: counter {advert.counter:#x} already seen",
                )
                return
        host.adverts_received += 1
        self._handle(host, AdvertReceived(advert, packet.source), now)

    def _drop(self, reason: str, packet: ReceivedPacket, detail: str) -> None:
        self.drops[reason] += 1
        if self._log_limit.allow(f"drop:{reason}", self.clock.monotonic()):
            since = self.drops[reason] - self._drops_logged.get(reason, 0)
            log.warning(
                "dropped CARP packet from %s on %s: %s%s; %d dropped for this reason",
                packet.source,
                packet.interface,
                reason,
                f" ({detail})" if detail else "",
                since,
                extra={
                    "event": "drop",
                    "reason": reason,
                    "source": str(packet.source),
                    "interface": packet.interface,
                },
            )
            self._drops_logged[reason] = self.drops[reason]

    def _port_error(self, operation: str, interface: str) -> None:
        """Log an exception from a port (at most once per operation every 10 s); go on."""
        key = f"{operation}:{interface}"
        self.port_errors[key] += 1
        if self._log_limit.allow(f"error:{key}", self.clock.monotonic()):
            log.exception(
                "%s on %s failed (%d times so far); carrying on",
                operation,
                interface,
                self.port_errors[key],
                extra={"event": "port_error", "operation": operation, "interface": interface},
            )

    def _read_controls(self) -> None:
        if self.link_state is not None:
            try:
                for change in self.link_state.drain():
                    self._link_changed(change.interface, change.up)
            except Exception:
                self._port_error("link_state", "*")
        while True:
            try:
                kind, value = self._control.get_nowait()
            except queue.Empty:
                return
            if kind == "reconfigure":
                self._apply(*value)
            elif kind == "link":
                self._link_changed(*value)
            elif kind == "demotion":
                self._set_source(value)
            elif kind == "dump":
                self.log_state()

    def _link_changed(self, interface: str, up: bool) -> None:
        # A link nobody reported nor read yet is taken as up: only a down one matters.
        known = self._link_up.get(interface, True)
        self._link_up[interface] = up
        if known == up:
            return
        log.info(
            "link %s is %s",
            interface,
            "up" if up else "down",
            extra={"event": "link", "interface": interface, "up": up},
        )
        now = self.clock.monotonic()
        for host in list(self._hosts.values()):
            if host.config.interface == interface:
                self._handle(host, LinkUp() if up else LinkDown(), now)
        # FreeBSD demotes every vhost of the node while any CARP interface is down
        # (net.inet.carp.ifdown_demotion_factor, 240), so that the masters on the other
        # interfaces hand over too and the node does not route for half a segment.
        level = 0 if up else IFDOWN_DEMOTION
        self._set_source(DemotionSource(f"link:{interface}", level, f"link {interface} down"))

    def _set_source(self, change: DemotionSource) -> None:
        """Set (level > 0) or clear one demotion source, then demote every machine by
        the new total. The cause a step-down records is the source that last raised
        the total, or the largest one left when that one is cleared."""
        before = self._demotions.get(change.source)
        if change.level:
            self._demotions[change.source] = change
            if change.level > (before.level if before else 0):
                self._cause = change.source
        else:
            self._demotions.pop(change.source, None)
        if self._cause not in self._demotions:
            left = sorted(self._demotions.values(), key=lambda d: (-d.level, d.source))
            self._cause = left[0].source if left else ""
        self._update_demotion()

    def _demotion(self) -> SetDemotion:
        """The node's demotion as the machines take it: the sum of every source."""
        total = sum(d.level for d in self._demotions.values())
        if not self._cause:
            return SetDemotion(total)
        return SetDemotion(total, demotion_reason(self._cause), self._cause)

    def _update_demotion(self) -> None:
        """Send every machine the node's demotion (a machine ignores an unchanged level)."""
        demotion = self._demotion()
        now = self.clock.monotonic()
        for host in list(self._hosts.values()):
            if host.machine.demotion != demotion.level:
                self._handle(host, demotion, now)

    def _fire_deadlines(self, now: float, strictly_before: bool = False) -> None:
        """Fire every deadline due by ``now`` (before it, when ``strictly_before``: a
        packet received at ``now`` is handled before a deadline at that very time)."""
        fired = False
        while self._heap and (
            self._heap[0][0] < now or (self._heap[0][0] == now and not strictly_before)
        ):
            deadline, _seq, key = heapq.heappop(self._heap)
            host = self._hosts.get(key)
            if host is None or host.scheduled != deadline:
                continue
            host.scheduled = None
            self._handle(host, Timeout(), now)
            fired = True
        if fired and not strictly_before:
            self._fire_adverts_early(now)

    def _fire_adverts_early(self, now: float) -> None:
        """Send now the periodic adverts of MASTERs that fall due within `ADVERT_GROUP`.

        BSD gives each vhid its own callout; 255 masters whose deadlines drifted a few
        ms apart (taken over, or preempted, one packet after another) would each wake
        the loop, and a wake-up costs far more than an advert (NOTES.md: 530 us for
        one, 18 us each for 255 in one). An advert sent a few ms early keeps its
        schedule: the machine is handed its own deadline as the time, so the next
        one is an interval after that, and from the next period on the group falls
        due together. Only adverts: a master-down timer never fires early."""
        later: list[tuple[float, int, HostKey]] = []
        while self._heap and self._heap[0][0] <= now + ADVERT_GROUP:
            entry = heapq.heappop(self._heap)
            deadline, _seq, key = entry
            host = self._hosts.get(key)
            if host is None or host.scheduled != deadline:
                continue
            machine = host.machine
            if machine.state is not State.MASTER or deadline - now > machine.advert_interval / 8:
                later.append(entry)
                continue
            host.scheduled = None
            self._handle(host, Timeout(), deadline)
        for entry in later:
            heapq.heappush(self._heap, entry)

    # ---- machines and actions -------------------------------------------------------
    def _handle(self, host: _Host, event: Event, now: float) -> None:
        try:
            actions = host.machine.handle(event, now)
        except Exception:
            # A bug in a machine must not take the other virtual hosts down with it.
            self._port_error(f"fsm:{type(event).__name__}", host.config.interface)
            actions = []
        self._pending.extend((host, action) for action in actions)
        self._track_master(host, event)
        self._schedule(host)

    def _flush(self, defer: bool = False) -> None:
        """Perform the actions the machines returned, in phases across virtual hosts.

        A master killed hard hands hundreds of VIPs to a node within a few ms. Every
        advert goes out first (it claims the VIP on the wire: the other backups stand
        down on it; each is one send), then the addresses, one netlink batch per run
        of the same change on one interface, then the gratuitous ARP/NA, one burst
        likewise. Within a phase, each host's actions keep their order.

        The logs, hooks and publishing of the transitions are queued (`_effects`);
        with ``defer`` (the loop's steps) they wait while more deadlines fall due
        within `EFFECTS_LOOKAHEAD`, so that the next takeovers of a burst do not wait
        behind this one's log lines (about 0.1 ms each, JSON to stderr). Not in a
        thread of their own: a thread would hold the GIL for up to its switch
        interval (5 ms) while the loop has adverts to send.
        """
        while self._pending:
            batch, self._pending = self._pending, []
            for host, action in batch:
                if isinstance(action, SendAdvert):
                    self._perform(host, action)
            self._perform_grouped(batch, (RemoveAddresses, AddAddresses))
            self._perform_grouped(batch, (SendGratuitous,))
            for host, action in batch:
                if isinstance(action, Transitioned):
                    self._perform(host, action)
        if not defer:
            self._run_effects()

    def _perform_grouped(self, batch: list[tuple[_Host, Action]], kinds: tuple[type, ...]) -> None:
        """Perform the address actions of ``kinds`` in ``batch``, in order, as one port
        call per run of the same kind on the same interface."""
        run: tuple[type, str] | None = None
        addresses: list[IPInterface] = []
        for host, action in batch:
            if not isinstance(action, kinds):
                continue
            assert isinstance(action, AddAddresses | RemoveAddresses | SendGratuitous)
            key = (type(action), host.config.interface)
            if key != run:
                if run is not None:
                    self._perform_addresses(*run, addresses)
                run, addresses = key, []
            addresses.extend(action.addresses)
        if run is not None:
            self._perform_addresses(*run, addresses)

    def _perform_addresses(self, kind: type, interface: str, addresses: list[IPInterface]) -> None:
        try:
            if kind is AddAddresses:
                self.addresses.add(interface, addresses)
            elif kind is RemoveAddresses:
                self.addresses.remove(interface, addresses)
            else:
                self.gratuitous.announce(interface, addresses)
        except Exception:
            self._port_error(kind.__name__, interface)

    def _busy(self) -> bool:
        """Whether the effects should wait: a deadline falls due within
        `EFFECTS_LOOKAHEAD` and the oldest effect waited less than `EFFECTS_MAX_DELAY`."""
        now = self.clock.monotonic()
        if now - self._effects_since >= EFFECTS_MAX_DELAY:
            return False
        following = self._time_to_next(now)
        return following is not None and following < EFFECTS_LOOKAHEAD

    def _defer(self, effect: Callable[[], None]) -> None:
        if not self._effects:
            self._effects_since = self.clock.monotonic()
        self._effects.append(effect)

    def _run_effects(self) -> None:
        while self._effects:
            effect = self._effects.popleft()
            try:
                effect()
            except Exception:
                self._port_error("effect", "*")

    def _track_master(self, host: _Host, event: Event) -> None:
        """Keep the master's address as seen in adverts; tell the publisher when it, the
        advertised advskew or the demote byte changed.

        Only a master sends adverts (CARP.md), so an advert accepted while BACKUP names
        the master; a bow-out advert names a master that is leaving, not one to show.
        """
        state = host.machine.state
        if state is State.MASTER:
            host.master = host.config.src_ip
        elif state is State.INIT:
            host.master = None
        elif isinstance(event, AdvertReceived) and not event.advert.is_bow_out:
            host.master = event.source
        elif isinstance(event, Start | LinkUp) or host.master == host.config.src_ip:
            host.master = None  # a fresh BACKUP (or one that stepped down) knows no master yet
        seen = (host.master, host.machine.advskew, host.machine.demote_byte)
        if seen == host.reported:
            return
        first = host.reported is None
        host.reported = seen
        if self.publisher is not None and not first:
            publisher = self.publisher
            interface, vhid = host.config.interface, host.config.vhid

            def changed() -> None:
                try:
                    publisher.changed(interface, vhid)
                except Exception:
                    self._port_error("publish", interface)

            self._defer(changed)

    def _schedule(self, host: _Host) -> None:
        deadline = host.machine.next_deadline()
        if deadline != host.scheduled:
            host.scheduled = deadline
            if deadline is not None:
                self._seq += 1
                key = (host.config.interface, host.config.vhid)
                heapq.heappush(self._heap, (deadline, self._seq, key))

    def _perform(self, host: _Host, action: Action) -> None:
        config = host.config
        try:
            if isinstance(action, SendAdvert):
                # FreeBSD: the counter starts at a random value and grows by one per advert.
                payload = host.sign().encode(
                    action.advbase, action.advskew, action.demote, host.counter
                )
                host.counter = (host.counter + 1) & _COUNTER_MASK
                self._links[host.link_key].send(config.vhid, payload)
                host.adverts_sent += 1
            elif isinstance(action, AddAddresses):
                self.addresses.add(config.interface, action.addresses)
            elif isinstance(action, RemoveAddresses):
                self.addresses.remove(config.interface, action.addresses)
            elif isinstance(action, SendGratuitous):
                self.gratuitous.announce(config.interface, action.addresses)
            elif isinstance(action, Transitioned):
                self._transitioned(host, action)
        except Exception:
            self._port_error(type(action).__name__, config.interface)

    def _transitioned(self, host: _Host, action: Transitioned) -> None:
        """Record the transition in the host (the snapshot shows it at once); its log
        line, hooks and publishing go into `_effects`."""
        host.last_reason = action.reason
        host.last_source = action.source
        host.last_from = action.old
        host.last_at = at = time.time()  # for people and the history, not for the protocol
        config = host.config
        self._defer(lambda: self._announce(config, action, at))

    def _announce(self, config: VirtualHostConfig, action: Transitioned, at: float) -> None:
        log.info(
            "vhid %d on %s: %s -> %s (%s%s)",
            config.vhid,
            config.interface,
            action.old,
            action.new,
            action.reason,
            f": {action.source}" if action.source else "",
            extra={
                "event": "transition",
                "vhid": config.vhid,
                "interface": config.interface,
                "old": str(action.old),
                "new": str(action.new),
                "reason": str(action.reason),
                "addresses": [str(a) for a in config.addresses],
                # When it happened; the line may be written a few ms later (`_flush`).
                "at": at,
                # A takeover: seconds since the last advert heard, on the monotonic
                # clock (the wall clock of "at" may be stepped meanwhile).
                **({"silence": action.silence} if action.silence is not None else {}),
            },
        )
        if action.new == State.MASTER:
            self.hooks.up(config.interface, config.addresses)
        elif action.old == State.MASTER or (
            # ucarp runs the downscript when it starts in BACKUP, unless --neutral.
            action.old == State.INIT and action.new == State.BACKUP and not self.neutral
        ):
            self.hooks.down(config.interface, config.addresses)
        if self.publisher is not None:
            try:
                self.publisher.publish(
                    config.interface,
                    config.vhid,
                    action.new,
                    action.reason,
                    old=action.old,
                    at=at,
                    source=action.source,
                    silence=action.silence,
                )
            except Exception:
                self._port_error("publish", config.interface)

    # ---- hosts and links ------------------------------------------------------------
    def _link_for(self, config: VirtualHostConfig) -> tuple[str, IPAddress]:
        source = advert_source(config)
        key = (config.interface, source)
        if key not in self._links:
            self._links[key] = self._open_link(config.interface, source)
            self._own.add(source)
        return key

    def _read_link(self, interface: str) -> bool:
        """Whether ``interface`` is up, read the first time a virtual host uses it.

        The watcher reports changes, not states: an interface it watches only since a
        reconfigure (the worker's, which starts with none) is reported from its next
        change, and a vhost started on a dead link would go BACKUP, then MASTER there.
        Reading it first starts such a vhost in INIT with its link demotion set; the
        link's next change (LinkUp) starts it.
        """
        if interface not in self._link_up and self.link_state_of is not None:
            try:
                up = self.link_state_of(interface)
            except Exception:
                self._port_error("link_state", interface)
                up = None  # cannot tell: as up, as before the read, and the watcher may say
            if up is not None:
                self._link_changed(interface, up)
        return self._link_up.get(interface, True)

    def _add_host(self, config: VirtualHostConfig, now: float) -> None:
        key = (config.interface, config.vhid)
        try:
            link_key = self._link_for(config)
        except Exception:
            self._port_error("open_link", config.interface)
            return
        host = _Host(
            config=config,
            machine=VirtualHost(config, link_up=self._read_link(config.interface)),
            link_key=link_key,
            counter=counter_start(time.time()),
        )
        self._hosts[key] = host
        demotion = self._demotion()
        if demotion.level:
            self._handle(host, demotion, now)
        self._handle(host, Start(), now)

    def _remove_host(self, key: HostKey, now: float, bow_out: bool = True) -> None:
        self._remove_hosts([key], now, bow_out)

    def _remove_hosts(self, keys: Iterable[HostKey], now: float, bow_out: bool = True) -> None:
        """Stop these hosts together: every bow-out advert first, then the addresses
        (one netlink batch per interface), so that the last of 255 VIPs is not given
        up after the others' address removals."""
        hosts = [(key, host) for key in keys if (host := self._hosts.get(key)) is not None]
        for _key, host in hosts:
            self._handle(host, Stop(bow_out=bow_out), now)
        self._flush()  # the bow-out adverts leave before a link may close
        # Whatever the machines did, a stopped host leaves no VIP behind (issue 3).
        by_interface: dict[str, list[IPInterface]] = {}
        for _key, host in hosts:
            by_interface.setdefault(host.config.interface, []).extend(host.config.addresses)
        for interface, addresses in by_interface.items():
            try:
                self.addresses.remove(interface, addresses)
            except Exception:
                self._port_error("remove", interface)
        for key, _host in hosts:
            del self._hosts[key]
        self._close_unused_links()

    def _close_unused_links(self) -> None:
        used = {h.link_key for h in self._hosts.values()}
        for key in [k for k in self._links if k not in used]:
            link = self._links.pop(key)
            self._own.discard(key[1])
            with contextlib.suppress(Exception):
                link.close()

    def _apply(
        self, configs: Sequence[VirtualHostConfig], retired: frozenset[HostKey] = frozenset()
    ) -> None:
        """Converge to ``configs``: stop removed hosts (silently when ``retired``),
        start new ones, update changed ones."""
        wanted = {(c.interface, c.vhid): c for c in configs}
        now = self.clock.monotonic()
        gone = [k for k in self._hosts if k not in wanted]
        self._remove_hosts([k for k in gone if k in retired], now, bow_out=False)
        self._remove_hosts([k for k in gone if k not in retired], now)
        fresh = [c for k, c in wanted.items() if k not in self._hosts]
        if fresh:
            self._reconcile(fresh)
        for key, config in wanted.items():
            host = self._hosts.get(key)
            if host is None:
                self._add_host(config, now)
            elif host.config != config:
                if advert_source(config) != advert_source(host.config):
                    # A new source address means a new socket: restart this one host.
                    self._remove_host(key, now)
                    self._add_host(config, now)
                    continue
                # The machine converges a MASTER's addresses (removes, adds, announces).
                host.config = config
                self._handle(host, Reconfigure(config), now)
        self._flush()
        log.info(
            "configuration applied: %d virtual hosts",
            len(self._hosts),
            extra={"event": "reconfigured", "hosts": len(self._hosts)},
        )

    def shutdown(self) -> None:
        """Stop every host gracefully (bow-out advert, addresses removed) and close the ports."""
        with self._lock:
            self._remove_hosts(list(self._hosts), self.clock.monotonic())
            self._close_unused_links()
            self._running = False
        self.hooks.close()
        with contextlib.suppress(OSError):
            os.close(self._wake)
        self.stopped.set()


class SystemPorts:
    """The real ports of one node: netlink addresses, raw CARP sockets, AF_PACKET
    announcements and the link watcher. The standalone daemon (`__main__`) and the
    worker's engine (`bridge`) both build their runner here, so they run the same code.

    The adapters are imported here, not at the top of the module, so that the pure
    engine (and `carp decode`) import without pyroute2.
    """

    def __init__(self, interfaces: Iterable[str]) -> None:
        from cluster.carp.arp import PacketGratuitous
        from cluster.carp.link import open_link
        from cluster.carp.netlink import LinkWatcher, NetlinkAddresses

        self.open_link: LinkOpener = open_link
        self.addresses = NetlinkAddresses()
        self.gratuitous = PacketGratuitous()
        self.watcher = LinkWatcher(interfaces)

    def runner(self, configs: Iterable[VirtualHostConfig], **options: Any) -> Runner:
        """A `Runner` over these ports; ``options`` are Runner's other keywords."""
        return Runner(
            configs,
            open_link=self.open_link,
            addresses=self.addresses,
            gratuitous=self.gratuitous,
            link_state=self.watcher,
            link_state_of=self.watcher.state_of,
            **options,
        )

    def watch(self, interfaces: Iterable[str]) -> None:
        """Watch the carrier of these interfaces too (a new alias on another interface)."""
        self.watcher.watch(interfaces)

    def start(self) -> None:
        self.watcher.start()

    def close(self) -> None:
        self.watcher.stop()
        self.gratuitous.close()
        self.addresses.close()


__all__ = [
    "Hooks",
    "HostSnapshot",
    "LinkStateReader",
    "Runner",
    "RunnerSnapshot",
    "SystemClock",
    "SystemPorts",
    "advert_source",
]
