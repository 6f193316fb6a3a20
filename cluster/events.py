"""Cluster events, detected from the live status: a pure function of two successive
statuses, what was stored last for each subject, and the time.

Input is the JSON form of the live status (``cluster.live.Status.as_dict()``, what
``GET /api/v1/status/`` returns), so any process that holds a status can detect, and
the tests build statuses by hand. No Django, no I/O, no clock: ``now`` comes in.

Once per occurrence, however many detectors run: every event names a *subject*
(``owner:eth0:1``, ``holders:eth0:1``, ``node:node2``, ``check:node1:smtp``,
``drift:node3``, ``flap:eth0:1``) and the subject's *condition* after it (the new
owner, ``split``, ``down``, ``failing``...). ``memory`` holds the condition last
stored for each subject (cluster.notify keeps it from the database); an event is
produced only when the condition now differs from it. Two notifier processes then
produce the same candidate, and the database's unique ``(subject, seq)`` stores it
once (cluster.notify.store_events).

What the detector keeps between calls (`DetectorState`) is only timing: since when a
split brain or drift has lasted, and the owner changes of the last minute (a flap).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The kinds (cluster.choices.EventKind has the same values and their labels; this
# module stays free of Django).
OWNER_CHANGED = "owner_changed"
FLAPPING = "flapping"
SPLIT_BRAIN = "split_brain"
NO_MASTER = "no_master"
MASTER_RESTORED = "master_restored"
NODE_NOT_REPORTING = "node_not_reporting"
NODE_REPORTING = "node_reporting"
CHECK_FAILING = "check_failing"
CHECK_PASSING = "check_passing"
CONFIG_DRIFT = "config_drift"
CONFIG_CONVERGED = "config_converged"

MASTER = "MASTER"

# A split brain or a missing master must last this long to be an event: a bow-out
# heard by several backups leaves two holders for tens of milliseconds, and
# maintenance on a three-tier alias for about 1.1 s (NOTES.md), by design.
HOLD_SECONDS = 2.0
# A check that fails while boot gating holds its node demoted must have failed this
# long before it is an event: a mail service that starts after the node's worker
# fails its first probes, and gating exists so that it may, by design.
BOOT_GRACE_SECONDS = 30.0
# A node's applied configuration may differ from the desired one this long (the
# apply task's round trip, a worker restarting) before it is drift.
DRIFT_GRACE_SECONDS = 30.0
# FLAP_THRESHOLD owner changes within FLAP_WINDOW seconds make a flap: one
# "flapping" event, the owner changes after it are counted rather than sent, and
# once FLAP_WINDOW passes without a change one owner_changed says where it settled.
FLAP_THRESHOLD = 3
FLAP_WINDOW = 60.0


@dataclass(frozen=True)
class Event:
    """One detected event, before it is stored (cluster.models.ClusterEvent)."""

    kind: str
    subject: str
    condition: str
    message: str
    at: float
    vhid: int | None = None
    interface: str = ""
    node: str = ""
    old_owner: str = ""
    new_owner: str = ""
    cause: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    # Not an event: the subject's first known condition, stored as its baseline only.
    baseline: bool = False


@dataclass
class _Flap:
    changes: list[float] = field(default_factory=list)  # the engines' transition times
    flapping_since: float | None = None
    count: int = 0  # owner changes since the flap began


@dataclass
class DetectorState:
    """What one detector remembers between two statuses: only timing."""

    holders_since: dict[str, tuple[str, float]] = field(default_factory=dict)
    drift_since: dict[str, float] = field(default_factory=dict)
    flaps: dict[str, _Flap] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)  # the owner last seen per alias


def _label(alias: Mapping[str, Any]) -> str:
    return f"VHID {alias['vhid']} on {alias['interface']}"


def _key(alias: Mapping[str, Any]) -> str:
    return f"{alias['interface']}:{alias['vhid']}"


def _cause(cell: Mapping[str, Any] | None) -> str:
    """The transition reason (and demotion source) of a cell, as the engine reported it."""
    if not cell:
        return ""
    reason = str(cell.get("last_reason") or "")
    source = str(cell.get("last_source") or "")
    return f"{reason} ({source})" if source else reason


def _owner_events(
    prev: Mapping[str, Any] | None,
    alias: Mapping[str, Any],
    nodes: Mapping[str, Mapping[str, Any]],
    now: float,
    memory: Mapping[str, str],
    state: DetectorState,
) -> list[Event]:
    key = _key(alias)
    subject = f"owner:{key}"
    masters = list(alias.get("masters") or [])
    if len(masters) != 1:
        return []  # none or several: the holders' events say so
    owner = masters[0]
    cells = {c["node"]: c for c in alias.get("cells") or []}
    new_cell = cells.get(owner)
    changed_at = (new_cell or {}).get("last_at") or now
    flap = state.flaps.setdefault(key, _Flap())
    seen = state.owners.get(key)
    if seen is None and prev is not None:
        seen = _previous_owner(prev, alias)
    if seen is not None and seen != owner:
        flap.changes.append(changed_at)
        if flap.flapping_since is not None:
            flap.count += 1
    state.owners[key] = owner
    flap.changes = [t for t in flap.changes if now - t <= FLAP_WINDOW]
    events: list[Event] = []
    if flap.flapping_since is None and len(flap.changes) >= FLAP_THRESHOLD:
        first = min(flap.changes)
        flap.flapping_since, flap.count = first, len(flap.changes)
        events.append(
            Event(
                FLAPPING,
                f"flap:{key}",
                f"since:{first:.3f}",
                f"{_label(alias)} is flapping: {flap.count} owner changes within"
                f" {FLAP_WINDOW:.0f} s, now on {owner}; further changes are summarised.",
                now,
                vhid=alias["vhid"],
                interface=alias["interface"],
                new_owner=owner,
                detail={"count": flap.count, "window_seconds": FLAP_WINDOW},
            )
        )
    count, since = 0, 0.0
    if flap.flapping_since is not None:
        if flap.changes:
            return events  # still flapping: counted, not sent
        count, since = flap.count, flap.flapping_since
        flap.flapping_since, flap.count = None, 0
    last = memory.get(subject)
    old = last if last is not None else seen
    if old is None:
        # The first owner known (the VIP came up, or this is the first detector to
        # run): nothing changed, but the next change is measured from it.
        return [*events, Event("", subject, owner, "", now, vhid=alias["vhid"],
                               interface=alias["interface"], baseline=True)]  # fmt: skip
    if old == owner:
        if count:
            # Settled on the owner last reported: no owner change to send, but the
            # flap's end and its count are news.
            message = (
                f"{_label(alias)} stopped flapping after {count} owner changes;"
                f" the owner is {owner}."
            )
            settled = {"count": count, "settled": True}
            events.append(Event(FLAPPING, f"flap:{key}", f"settled:{since:.3f}", message, now,
                                vhid=alias["vhid"], interface=alias["interface"],
                                new_owner=owner, detail=settled))  # fmt: skip
        return events
    old_cell = cells.get(old)
    cause = _cause(new_cell)
    old_words = ""
    if old_cell is not None:
        if not nodes.get(old, {}).get("reporting", True):
            old_words = f"{old} not reporting"
        elif old_cell.get("state") != MASTER:
            old_words = f"{old} {old_cell.get('state')}"
            if _cause(old_cell):
                old_words += f" ({_cause(old_cell)})"
    full_cause = "; ".join(part for part in (cause, old_words) if part)
    message = f"{_label(alias)}: owner {old or 'none'} → {owner}"
    message += f" ({full_cause})." if full_cause else "."
    detail: dict[str, Any] = {"transition_at": changed_at}
    if count:
        detail["flap_count"] = count
        message = f"{_label(alias)}: settled on {owner} after flapping ({count} changes)."
    events.append(
        Event(
            OWNER_CHANGED,
            subject,
            owner,
            message,
            now,
            vhid=alias["vhid"],
            interface=alias["interface"],
            node=owner,
            old_owner=old or "",
            new_owner=owner,
            cause=full_cause[:255],
            detail=detail,
        )
    )
    return events


def _previous_owner(prev: Mapping[str, Any], alias: Mapping[str, Any]) -> str | None:
    for before in prev.get("aliases") or []:
        if before.get("vhid") == alias["vhid"] and before.get("interface") == alias["interface"]:
            masters = list(before.get("masters") or [])
            return masters[0] if len(masters) == 1 else None
    return None


def _holder_events(
    alias: Mapping[str, Any],
    alerts: set[tuple[str, str, int]],
    now: float,
    memory: Mapping[str, str],
    state: DetectorState,
) -> list[Event]:
    key = _key(alias)
    subject = f"holders:{key}"
    where = (alias["interface"], alias["vhid"])
    masters = list(alias.get("masters") or [])
    if (SPLIT_BRAIN, *where) in alerts:
        condition = "split"
    elif (NO_MASTER, *where) in alerts:
        condition = "none"
    elif len(masters) == 1:
        condition = "one"
    else:
        condition = ""  # disabled, or unknown: nothing to say either way
    held = state.holders_since.get(subject)
    if held is None or held[0] != condition:
        state.holders_since[subject] = held = (condition, now)
    last = memory.get(subject)
    base = {"vhid": alias["vhid"], "interface": alias["interface"]}
    if condition == "one" and last in ("split", "none"):
        message = f"{_label(alias)}: one MASTER again ({masters[0]})."
        return [Event(MASTER_RESTORED, subject, "one", message, now, new_owner=masters[0], **base)]
    if condition in ("split", "none") and last != condition and now - held[1] >= HOLD_SECONDS:
        if condition == "split":
            message = f"Split brain: {_label(alias)} is MASTER on {' and '.join(masters)}."
            detail = {"masters": masters, "since": held[1]}
            return [Event(SPLIT_BRAIN, subject, "split", message, now, detail=detail, **base)]
        message = f"No master: no node holds {_label(alias)}."
        return [Event(NO_MASTER, subject, "none", message, now, detail={"since": held[1]}, **base)]
    return []


def _node_events(
    node: Mapping[str, Any],
    now: float,
    memory: Mapping[str, str],
    state: DetectorState,
    desired: Mapping[str, str] | None,
    drift_grace: float,
) -> list[Event]:
    name = str(node["name"])
    events: list[Event] = []
    subject = f"node:{name}"
    if not node.get("reporting"):
        state.drift_since.pop(name, None)
        if memory.get(subject) != "down":
            seen = node.get("last_seen")
            message = f"Node {name} is not reporting."
            detail = {"last_seen": seen} if seen else {}
            events.append(Event(NODE_NOT_REPORTING, subject, "down", message, now, node=name,
                                detail=detail))  # fmt: skip
        return events
    if memory.get(subject) == "down":
        message = f"Node {name} is reporting again."
        events.append(Event(NODE_REPORTING, subject, "up", message, now, node=name))
    if node.get("unreadable"):
        return events  # what it says about checks and configuration cannot be read
    events.extend(_check_events(node, now, memory))
    events.extend(_drift_events(node, now, memory, state, desired, drift_grace))
    return events


def _check_condition(check: Mapping[str, Any], now: float) -> str | None:
    """``failing`` or ``passing`` by the check's own verdict, as its heartbeat reports
    it (cluster.checks.CheckStatus); None while there is nothing to say yet.

    Outside boot gating a check demotes its node exactly while it is failing by its
    rise and fall counts (cluster.health: the level is the weight, at least 1, while
    failing), so its demotion is the verdict: one probe that fails below ``fall`` is
    no event, nor is one pass below ``rise``. While boot gating holds the node
    demoted the demotion says nothing about failure (a node starts demoted until each
    check has passed), and the status does not carry ``fall``: a check that has
    failed since the boot for BOOT_GRACE_SECONDS is failing, one that has not is
    still starting.
    """
    passing = check.get("passing")
    if passing is None:
        return None  # no result yet: booting, or a check just added
    if check.get("gating"):
        if passing:
            return None  # passed, but not yet the times gating needs: still starting
        since = check.get("changed_at")  # the first failure of this run, the node's clock
        failed_for = now - float(since) if since is not None else 0.0
        return "failing" if failed_for >= BOOT_GRACE_SECONDS else None
    return "failing" if int(check.get("demotion") or 0) > 0 else "passing"


def _check_events(node: Mapping[str, Any], now: float, memory: Mapping[str, str]) -> list[Event]:
    """Per node and check (subject ``check:<node>:<check>``): a node's failing check
    demotes that node alone, with its own cause, so a check failing on three nodes is
    three occurrences, each stored once however many notifiers see it."""
    name = str(node["name"])
    events: list[Event] = []
    running = {str(c["name"]): c for c in node.get("checks") or []}
    for check, status in sorted(running.items()):
        subject = f"check:{name}:{check}"
        condition = _check_condition(status, now)
        last = memory.get(subject)
        detail: dict[str, Any] = {"check": check, "kind": status.get("kind") or "",
                                  "count": status.get("count")}  # fmt: skip
        if condition == "failing" and last != "failing":
            reason = str(status.get("message") or "")
            if status.get("gating"):
                detail["boot"] = True
                message = f"Health check {check} on {name} has not passed since the node started"
            else:
                message = f"Health check {check} on {name} is failing"
            message += f": {reason}." if reason else "."
            events.append(Event(CHECK_FAILING, subject, "failing", message, now, node=name,
                                cause=reason[:255], detail=detail))  # fmt: skip
        elif condition == "passing" and last == "failing":
            message = f"Health check {check} on {name} is passing again."
            events.append(Event(CHECK_PASSING, subject, "passing", message, now, node=name,
                                detail=detail))  # fmt: skip
    # A failing check the node no longer runs (deleted, disabled, out of its scope)
    # has stopped failing; closing it lets a later failure of the same name be news.
    prefix = f"check:{name}:"
    for subject, condition in sorted(memory.items()):
        check = subject[len(prefix) :]
        if subject.startswith(prefix) and condition == "failing" and check not in running:
            message = f"Health check {check} on {name} is no longer run there; it was failing."
            events.append(Event(CHECK_PASSING, subject, "removed", message, now, node=name,
                                detail={"check": check, "removed": True}))  # fmt: skip
    return events


def _drift_events(
    node: Mapping[str, Any],
    now: float,
    memory: Mapping[str, str],
    state: DetectorState,
    desired: Mapping[str, str] | None,
    drift_grace: float,
) -> list[Event]:
    name = str(node["name"])
    want = (desired or {}).get(name)
    applied = node.get("config_version")
    if want is None or applied is None:
        return []  # nothing to compare (no desired versions given, or nothing applied yet)
    subject = f"drift:{name}"
    detail = {"desired": want, "applied": applied}
    if applied == want:
        state.drift_since.pop(name, None)
        if memory.get(subject) == "drift":
            message = f"Node {name} applied its configuration ({want})."
            return [Event(CONFIG_CONVERGED, subject, "converged", message, now, node=name,
                          detail=detail)]  # fmt: skip
        return []
    since = state.drift_since.setdefault(name, now)
    if now - since >= drift_grace and memory.get(subject) != "drift":
        message = (
            f"Configuration drift: node {name} runs configuration {applied or 'none'},"
            f" not the desired {want}, for {now - since:.0f} s."
        )
        detail["since"] = since
        return [Event(CONFIG_DRIFT, subject, "drift", message, now, node=name, detail=detail)]
    return []


def detect(
    prev: Mapping[str, Any] | None,
    cur: Mapping[str, Any],
    now: float,
    memory: Mapping[str, str],
    state: DetectorState,
    desired: Mapping[str, str] | None = None,
    drift_grace: float = DRIFT_GRACE_SECONDS,
) -> list[Event]:
    """The events between ``prev`` and ``cur`` (live status dicts; ``prev`` None
    when this detector has just started).

    ``memory``: subject -> condition last stored. ``desired``: node -> the version of
    the configuration it should run (``services.desired_versions``); None skips drift.
    A status without live state (Redis away) yields nothing: it says nothing about
    the nodes.
    """
    if not cur.get("available"):
        return []
    nodes = {str(n["name"]): n for n in cur.get("nodes") or []}
    alerts = {
        (str(a["kind"]), str(a.get("interface")), int(a["vhid"]))
        for a in cur.get("alerts") or []
        if a.get("vhid") is not None
    }
    events: list[Event] = []
    for node in nodes.values():
        events.extend(_node_events(node, now, memory, state, desired, drift_grace))
    for alias in cur.get("aliases") or []:
        events.extend(_holder_events(alias, alerts, now, memory, state))
        events.extend(_owner_events(prev, alias, nodes, now, memory, state))
    return events


def remember(memory: dict[str, str], events: Sequence[Event]) -> None:
    """Fold stored events into ``memory`` (what the next detection compares with)."""
    for event in events:
        if event.baseline and event.subject in memory:
            continue  # a baseline never overrides what was stored
        memory[event.subject] = event.condition
