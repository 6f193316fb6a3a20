"""The CARP state machine of one virtual host: pure, no I/O, no clock.

How the runner drives it
------------------------
1. Build one ``VirtualHost(config)`` per vhid (``link_up=False`` if the
   interface is down at start), then ``actions = vh.handle(Start(), now)``.
2. Loop: sleep until ``min(vh.next_deadline() for each vhost)`` (None means no
   deadline: INIT) or until a packet arrives, then read ``now`` from the Clock.
3. For each vhost whose ``next_deadline()`` is not None and ``<= now``:
   ``vh.handle(Timeout(), now)``. A Timeout before the
   deadline does nothing, so spurious wake-ups are harmless. Fire due deadlines
   *before* handling packets read in the same wake-up: a late packet must not
   undo a timeout that had already expired.
4. For each packet: drop it unless its TTL/hop limit is 255 (``wire.check_ttl``)
   and its source is not the node's own address; ``wire.decode_unverified``;
   find the vhost by (interface, vhid) or drop it as ``wrong_vhid``; check
   ``wire.verify_hmac(advert, config.password, config.addresses)`` or drop it as
   ``bad_hmac``; then ``vh.handle(AdvertReceived(advert, packet.source), now)``.
5. Perform the returned actions in order, through the ports:
   ``SendAdvert`` -> ``wire.encode(vhid, advbase, advskew, demote, counter,
   config.password, config.addresses)`` with the vhost's 64-bit counter (FreeBSD:
   random start, +1 per advert), then ``PacketLink.send``; ``AddAddresses`` /
   ``RemoveAddresses`` -> ``AddressManager``; ``SendGratuitous`` ->
   ``GratuitousSender.announce``; ``Transitioned`` -> log and ``StatePublisher``.
6. Link state: ``LinkDown()`` / ``LinkUp()``; node demotion (maintenance,
   health check, a link down on another interface): ``SetDemotion(level,
   reason)`` to every vhost; config changes for the same (interface, vhid):
   ``Reconfigure(config)``; on SIGTERM: ``Stop()`` to each vhost and perform
   the actions (bow-out adverts, addresses removed) before exiting.

``handle`` never raises for anything a peer sends; it raises ``IllegalTransition``
only on a bug (a transition missing from ``TRANSITIONS``) and ValueError for a
bad ``SetDemotion`` level or a ``Reconfigure`` of another vhid or interface.

Sources: CARP.md "Timers and priority" and "Transitions on a valid advert";
OpenBSD/FreeBSD ``carp_input``/``carp_setrun``/``carp_master_down``; ucarp ``carp.c``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from cluster.carp import timers
from cluster.carp.types import (
    Action,
    AddAddresses,
    Advertisement,
    AdvertReceived,
    Event,
    IPAddress,
    LinkDown,
    LinkUp,
    Reason,
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
)

__all__ = ["TRANSITIONS", "IllegalTransition", "VirtualHost", "check_transition"]

_DEMOTION_REASONS = frozenset(
    {Reason.DEMOTED, Reason.MAINTENANCE, Reason.HEALTH_CHECK, Reason.LINK_DOWN}
)

# Every transition a virtual host may make, and the reasons allowed for it (read-only).
TRANSITIONS: Mapping[tuple[State, State], frozenset[Reason]] = MappingProxyType(
    {
        (State.INIT, State.BACKUP): frozenset({Reason.STARTUP, Reason.LINK_UP}),
        (State.BACKUP, State.MASTER): frozenset(
            {Reason.MASTER_DOWN, Reason.PREEMPTED, Reason.BOW_OUT}
        ),
        (State.MASTER, State.BACKUP): frozenset({Reason.HIGHER_PRIORITY_SEEN} | _DEMOTION_REASONS),
        (State.MASTER, State.INIT): frozenset({Reason.SHUTDOWN, Reason.LINK_DOWN}),
        (State.BACKUP, State.INIT): frozenset({Reason.SHUTDOWN, Reason.LINK_DOWN}),
    }
)


class IllegalTransition(RuntimeError):
    """A transition (or a reason for it) that TRANSITIONS does not allow: a bug, never input."""


def check_transition(old: State, new: State, reason: Reason) -> None:
    """Raise IllegalTransition unless TRANSITIONS allows `old -> new` for `reason`."""
    allowed = TRANSITIONS.get((old, new))
    if allowed is None:
        raise IllegalTransition(f"{old.value} -> {new.value} is not a CARP transition")
    if reason not in allowed:
        raise IllegalTransition(f"{old.value} -> {new.value} cannot happen for {reason.value}")


def _ticks(advbase: int, advskew: int) -> int:
    """An advert interval in 1/256 s, so that intervals compare exactly (ties matter)."""
    return advbase * 256 + advskew


class VirtualHost:
    """One CARP virtual host: INIT, BACKUP or MASTER, driven by `handle(event, now)`.

    Holds only the protocol state (state, deadlines, demotion, link); the
    advert counter, sockets and addresses belong to the runner.
    """

    def __init__(self, config: VirtualHostConfig, *, link_up: bool = True) -> None:
        self._config = config
        self._state = State.INIT
        self._running = False
        self._link_up = link_up
        self._demotion = 0
        self._demotion_reason = Reason.DEMOTED
        self._demotion_source = ""
        self._advert_due: float | None = None  # MASTER: the next periodic advert
        self._master_down_at: float | None = None  # BACKUP: declare the master down
        # BACKUP: a contended takeover waiting out its skew delay (timers.takeover_delay)
        self._takeover_at: float | None = None
        self._takeover_reason = Reason.PREEMPTED
        self._last_heard = 0.0  # BACKUP: last valid advert (or becoming BACKUP)
        self._last_advert: float | None = None  # BACKUP: last advert of a master, if any
        self._adverts_until_gratuitous: int | None = None  # MASTER: the repeat after takeover

    # ---- read-only views ----

    @property
    def config(self) -> VirtualHostConfig:
        return self._config

    @property
    def vhid(self) -> int:
        return self._config.vhid

    @property
    def state(self) -> State:
        return self._state

    @property
    def running(self) -> bool:
        """True between Start and Stop (the state is INIT while the link is down)."""
        return self._running

    @property
    def link_up(self) -> bool:
        return self._link_up

    @property
    def demotion(self) -> int:
        return self._demotion

    @property
    def advskew(self) -> int:
        """The advskew we advertise: configured plus demotion, capped at 240 (FreeBSD)."""
        return timers.demoted_advskew(self._config.advskew, self._demotion)

    @property
    def demote_byte(self) -> int:
        """OpenBSD's demote counter as we send it (byte 4)."""
        return min(self._demotion, 255)

    @property
    def advert_interval(self) -> float:
        return timers.advert_interval(self._config.advbase, self.advskew)

    @property
    def master_down_interval(self) -> float:
        """With the demoted advskew: FreeBSD's carp_setrun uses the configured one, but
        a demoted backup should also wait longer, so it behaves as it advertises."""
        return timers.master_down_interval(self._config.advbase, self.advskew)

    def next_deadline(self) -> float | None:
        """When the runner must hand us a Timeout next; None while INIT."""
        if self._state is State.MASTER:
            return self._advert_due
        if self._state is State.BACKUP:
            if self._takeover_at is not None and self._master_down_at is not None:
                return min(self._takeover_at, self._master_down_at)
            return self._takeover_at if self._takeover_at is not None else self._master_down_at
        return None

    # ---- the one entry point ----

    def handle(self, event: Event, now: float) -> list[Action]:
        """Apply one event at time `now` (seconds, monotonic); return the actions to perform."""
        match event:
            case Start():
                return self._on_start(now)
            case Stop(bow_out=bow_out):
                return self._on_stop(bow_out)
            case Timeout():
                return self._on_timeout(now)
            case AdvertReceived(advert=advert, source=source):
                return self._on_advert(advert, source, now)
            case LinkDown():
                return self._on_link_down()
            case LinkUp():
                return self._on_link_up(now)
            case SetDemotion(level=level, reason=reason, source=source):
                return self._on_set_demotion(level, reason, source, now)
            case Reconfigure(config=config):
                return self._on_reconfigure(config, now)
        raise TypeError(f"not a CARP event: {event!r}")

    # ---- handlers ----

    def _on_start(self, now: float) -> list[Action]:
        """INIT -> BACKUP; the first master appears after one master-down interval (CARP.md)."""
        if self._running:
            return []
        self._running = True
        if not self._link_up:
            return []  # LinkUp will start us
        return self._become_backup(now, Reason.STARTUP)

    def _on_stop(self, bow_out: bool) -> list[Action]:
        """Graceful stop: a MASTER bows out (advbase 255, advskew 255, OpenBSD) and
        removes its addresses; every state goes to INIT for SHUTDOWN. Without
        ``bow_out`` (the virtual host goes away on every node) it only goes silent."""
        self._running = False
        actions: list[Action] = []
        if self._state is State.MASTER:
            if bow_out:
                actions.append(
                    SendAdvert(
                        self.vhid, timers.BOW_OUT_ADVBASE, timers.BOW_OUT_ADVSKEW, self.demote_byte
                    )
                )
            actions.append(RemoveAddresses(self.vhid, self._config.addresses))
        if self._state is not State.INIT:
            actions.append(self._transition(State.INIT, Reason.SHUTDOWN))
        return actions

    def _on_timeout(self, now: float) -> list[Action]:
        """MASTER: the periodic advert (and the repeated gratuitous ARP/NA two adverts
        after takeover, CARP.md). BACKUP: no valid advert for a master-down interval."""
        if self._state is State.MASTER:
            if self._advert_due is None or now < self._advert_due:
                return []
            # The next advert is due an interval after this one was due, not after we
            # woke: a late wake-up must not make every later advert late (no drift).
            actions: list[Action] = [self._advert(now, due=self._advert_due)]
            if self._adverts_until_gratuitous is not None:
                self._adverts_until_gratuitous -= 1
                if self._adverts_until_gratuitous <= 0:
                    self._adverts_until_gratuitous = None
                    actions.append(SendGratuitous(self.vhid, self._config.addresses))
            return actions
        if self._state is State.BACKUP:
            if self._takeover_at is not None and now >= self._takeover_at:
                return self._become_master(now, self._takeover_reason)
            if self._master_down_at is None or now < self._master_down_at:
                return []
            return self._become_master(now, Reason.MASTER_DOWN)
        return []

    def _on_advert(self, advert: Advertisement, source: IPAddress, now: float) -> list[Action]:
        """A valid advert from a peer (CARP.md "Transitions on a valid advert"), with
        one change for clusters of more than two nodes: a takeover that every
        backup would make at once waits out our skew delay (`_plan_takeover`)."""
        if self._state is State.INIT or advert.vhid != self.vhid:
            return []
        if source == self._config.src_ip:
            return []  # our own advert looped back; the runner should have dropped it
        # Compare intervals only, as FreeBSD and ucarp do. OpenBSD compares the demote
        # byte first, but mixing the two rules between our own nodes could let each
        # think it is the better one; our demotion is in the advskew as well.
        theirs = _ticks(advert.advbase, advert.advskew)
        ours = _ticks(self._config.advbase, self.advskew)
        if self._state is State.BACKUP:
            self._last_advert = now  # a bow-out is the master's last advert too
            if advert.is_bow_out:
                # OpenBSD's graceful stop: the master is leaving; take over (after our delay).
                return self._plan_takeover(now, Reason.BOW_OUT)
            self._last_heard = now  # a master is alive, whatever follows
            self._arm_master_down()
            # A demoted master (OpenBSD's demote byte, above ours) asks to be replaced:
            # it is taken over whatever our preempt setting, or maintenance would leave
            # the VIP on it. It stays the last resort while no one else is up.
            if theirs > ours and (self._config.preempt or advert.demote > self._demotion):
                # carp_input BACKUP: "pre-empting a slower master".
                return self._plan_takeover(now, Reason.PREEMPTED)
            if timers.will_time_out(advert.interval, self._config.advbase):
                # carp_input BACKUP: "master will time out", so treat it as down now.
                return self._plan_takeover(now, Reason.MASTER_DOWN)
            # A master we will not replace (better, or preemption off): any takeover we
            # planned is someone else's now.
            self._takeover_at = None
            return []
        # MASTER: yield to a better interval; on a tie the lower source address wins (ucarp).
        if advert.is_bow_out:
            return []  # another master leaving: nothing to win back
        if theirs < ours or (theirs == ours and self._loses_tie(source)):
            return self._step_down(now)
        # A worse master: answer at once, so it steps down now rather than at our next
        # periodic advert. ucarp: "Non-preferred master advertising: reasserting control
        # of VIP with another gratuitous arp" - after a split brain, win the switches
        # back; a demoted master is handing over on its own and announced nothing since.
        actions: list[Action] = [self._advert(now)]
        if not advert.demote:
            actions.append(SendGratuitous(self.vhid, self._config.addresses))
        return actions

    def _plan_takeover(self, now: float, reason: Reason) -> list[Action]:
        """Take over after `timers.takeover_delay` of our advertised advskew, unless a
        better master advertises first (DESIGN.md "One handover, one holder"): every
        backup hears a bow-out or a slower master at the same moment, and the one
        with the smallest advskew must act first, alone. With no skew, at once."""
        if self._takeover_at is None:
            delay = timers.takeover_delay(self.advskew)
            if delay <= 0:
                return self._become_master(now, reason)
            self._takeover_at = now + delay
            self._takeover_reason = reason
        return []

    def _on_link_down(self) -> list[Action]:
        """Leave MASTER (addresses removed, no advert: the link is gone) and wait in INIT;
        no adverts and no takeovers until LinkUp."""
        if not self._link_up:
            return []
        self._link_up = False
        actions: list[Action] = []
        if self._state is State.MASTER:
            actions.append(RemoveAddresses(self.vhid, self._config.addresses))
        if self._state is not State.INIT:
            actions.append(self._transition(State.INIT, Reason.LINK_DOWN))
        return actions

    def _on_link_up(self, now: float) -> list[Action]:
        """Back to BACKUP with a fresh master-down timer (if started)."""
        if self._link_up:
            return []
        self._link_up = True
        if not self._running:
            return []
        return self._become_backup(now, Reason.LINK_UP)

    def _on_set_demotion(self, level: int, reason: Reason, source: str, now: float) -> list[Action]:
        """Demotion: advertised both as advskew + level (capped at 240, FreeBSD) and in
        the demote byte (OpenBSD). A MASTER advertises the change at once (FreeBSD
        carp_demote_adj sends on every vhost); a BACKUP waits longer before taking over."""
        if level < 0:
            raise ValueError(f"demotion level cannot be negative: {level}")
        if reason not in _DEMOTION_REASONS:
            raise ValueError(f"not a demotion reason: {reason.value}")
        changed = level != self._demotion
        self._demotion = level
        self._demotion_reason = reason
        self._demotion_source = source
        if not changed:
            return []
        return self._after_priority_change(now)

    def _on_reconfigure(self, config: VirtualHostConfig, now: float) -> list[Action]:
        """Converge to a new configuration of the same vhid: a MASTER removes the addresses
        that went, adds and announces the new ones, and advertises the new values at once."""
        old = self._config
        if (config.vhid, config.interface) != (old.vhid, old.interface):
            raise ValueError("Reconfigure cannot change the vhid or interface")
        if config == old:
            return []
        self._config = config
        actions: list[Action] = []
        if self._state is State.MASTER:
            gone = tuple(a for a in old.addresses if a not in config.addresses)
            new = tuple(a for a in config.addresses if a not in old.addresses)
            if gone:
                actions.append(RemoveAddresses(self.vhid, gone))
            if new:
                actions.append(AddAddresses(self.vhid, new))
                actions.append(SendGratuitous(self.vhid, new))
        return actions + self._after_priority_change(now)

    # ---- helpers ----

    def _after_priority_change(self, now: float) -> list[Action]:
        if self._state is State.MASTER:
            return [self._advert(now)]
        if self._state is State.BACKUP:
            self._arm_master_down()
        return []

    def _loses_tie(self, source: IPAddress) -> bool:
        """ucarp: on equal intervals the lower source address stays MASTER. Without our
        own address (or across address families) yield, as the BSDs do on any tie."""
        own = self._config.src_ip
        if own is None or source.version != own.version:
            return True
        return int(source) < int(own)  # same family: numeric order is address order

    def _advert(self, now: float, due: float | None = None) -> SendAdvert:
        """One advert with the demoted advskew; the next periodic one is an interval
        after ``due`` (when this one was due), or after ``now`` when it is unscheduled
        or so late that catching up would send a burst."""
        interval = self.advert_interval
        following = due + interval if due is not None else now + interval
        self._advert_due = following if following > now else now + interval
        return SendAdvert(self.vhid, self._config.advbase, self.advskew, self.demote_byte)

    def _arm_master_down(self) -> None:
        self._master_down_at = self._last_heard + self.master_down_interval

    def _become_backup(self, now: float, reason: Reason, source: str = "") -> list[Action]:
        transitioned = self._transition(State.BACKUP, reason, source)
        self._last_heard = now
        self._arm_master_down()
        return [transitioned]

    def _become_master(self, now: float, reason: Reason) -> list[Action]:
        """Takeover (CARP.md): advertise at once, add the addresses, gratuitous ARP/NA
        at once and again two adverts later. The advert goes first: the other
        backups stand down on hearing it, and adding an address takes longer."""
        silence = now - self._last_advert if self._last_advert is not None else None
        transitioned = self._transition(State.MASTER, reason, silence=silence)
        self._adverts_until_gratuitous = timers.GRATUITOUS_REPEAT_ADVERTS
        return [
            self._advert(now),
            AddAddresses(self.vhid, self._config.addresses),
            SendGratuitous(self.vhid, self._config.addresses),
            transitioned,
        ]

    def _step_down(self, now: float) -> list[Action]:
        """MASTER -> BACKUP for a better master: the addresses go, and no last advert.

        CARP.md has a master send one last advert before stepping down; it carries
        our slower interval, so every backup better than us that hears it preempts
        the master we are yielding to (six to nine holders after a simultaneous
        start). FreeBSD's carp_input steps down without one; so do we. The reason is
        our demotion's if we are demoted."""
        reason, source = Reason.HIGHER_PRIORITY_SEEN, ""
        if self._demotion:
            reason, source = self._demotion_reason, self._demotion_source
        actions: list[Action] = [RemoveAddresses(self.vhid, self._config.addresses)]
        return actions + self._become_backup(now, reason, source)

    def _transition(
        self, new: State, reason: Reason, source: str = "", silence: float | None = None
    ) -> Transitioned:
        """Enforce TRANSITIONS, switch state, reset the other state's timers."""
        old = self._state
        check_transition(old, new, reason)
        self._state = new
        self._advert_due = None
        self._master_down_at = None
        self._takeover_at = None
        if new is not State.MASTER:
            self._adverts_until_gratuitous = None
        if new is not State.BACKUP:
            self._last_advert = None  # the next takeover measures from a master heard after it
        return Transitioned(self.vhid, old, new, reason, source, silence)
