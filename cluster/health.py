"""Health checks' rise and fall, and boot gating: pure logic, time passed in.

The node host (``cluster/node/health.py``) runs each check's probe and feeds
every result to that check's `CheckTracker`; the tracker says what demotion the
check contributes (the runner's source ``health:<name>``, `checks.source_name`)
and what the heartbeat reports about it (`checks.CheckStatus`). No I/O, no
clock, no threads here, so the rules are tested with times passed in.

The rules (issue 10, as keepalived's ``rise``/``fall`` for its track scripts):

* ``fall`` failures in a row make a check *failing*: it demotes the node by its
  weight, with a reason such as "health smtp-25 failing 3× (connection refused)".
* ``rise`` passes in a row clear it.
* Boot gating: a check present when the node starts demotes the node until it
  has passed once (``rise`` times with ``boot_needs_rise``), so that a node whose
  mail service is not up yet never pulls the VIP onto itself (OPNsense #5612).
  A check added to a running node does not gate: every node would gain it at
  about the same moment, and demoting the masters one after another would move
  every VIP for nothing. It demotes only once it has failed ``fall`` times.
* A check that cannot run (a bad target, a program that is not there) and a
  timeout are failures like any other, with their message; nothing is ever
  passed silently.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from cluster.checks import CheckSpec, CheckStatus

# Messages keep the heartbeat small and the page readable.
MESSAGE_LIMIT = 200


def short(message: str) -> str:
    """One line of at most MESSAGE_LIMIT characters."""
    line = " ".join(message.split())
    return line if len(line) <= MESSAGE_LIMIT else line[: MESSAGE_LIMIT - 1] + "…"


@dataclass
class CheckTracker:
    """One check's results on one node, and the demotion they call for.

    ``passing``/``count``/``message`` describe the results (the last one, how many
    in a row were the same); ``failing`` is the demotion state that ``fall`` and
    ``rise`` move; ``gating`` holds the node demoted at boot until the first
    pass(es). ``reason`` is the demotion's text, fixed when the state changes (not
    at every result, so that the runner is not told anything new while a failing
    check simply keeps failing).
    """

    spec: CheckSpec
    gating: bool = False
    passing: bool | None = None
    count: int = 0
    message: str = ""
    last_at: float | None = None
    changed_at: float | None = None
    failing: bool = False
    reason: str = ""

    @classmethod
    def at_boot(cls, spec: CheckSpec) -> CheckTracker:
        """A check the node had when it started: it gates until it passes."""
        tracker = cls(spec, gating=True)
        tracker.reason = f"health {spec.name} not checked yet (boot)"
        return tracker

    @property
    def passes_to_ungate(self) -> int:
        return max(1, self.spec.rise) if self.spec.boot_needs_rise else 1

    @property
    def level(self) -> int:
        """The demotion this check contributes now (0: none)."""
        return self.spec.weight if (self.gating or self.failing) else 0

    def demotion(self) -> tuple[int, str]:
        """(level, reason) for the runner's source ``health:<name>``; reason "" at 0."""
        level = self.level
        return (level, self.reason) if level else (0, "")

    def respec(self, spec: CheckSpec) -> None:
        """The check was edited: keep its results and state, take the new settings
        (a changed weight takes effect at once; new rise/fall counts at the next
        result)."""
        self.spec = spec
        self._settle()

    def record(self, ok: bool, message: str, now: float) -> None:
        """One probe result at time ``now`` (epoch seconds)."""
        message = short(message)
        if self.passing is ok:
            self.count += 1
        else:
            self.passing = ok
            self.count = 1
            self.changed_at = now
        self.message = message
        self.last_at = now
        self._settle()

    def _settle(self) -> None:
        """Move the failing and gating states by the counts, and word the reason."""
        name = self.spec.name
        if self.passing is False and self.count >= max(1, self.spec.fall):
            if not self.failing:
                self.failing = True
                self.reason = f"health {name} failing {self.count}× ({self.message})"
        elif self.passing is True and self.count >= max(1, self.spec.rise):
            self.failing = False
        if self.gating and self.passing is True and self.count >= self.passes_to_ungate:
            self.gating = False
        if self.gating and not self.failing:
            # Still held at boot: say what it waits for.
            if self.passing is False:
                self.reason = f"health {name} failing {self.count}× ({self.message})"
            elif self.passing is True:
                self.reason = f"health {name} passed {self.count} of {self.passes_to_ungate} (boot)"

    def status(self) -> CheckStatus:
        """What the heartbeat reports about this check."""
        return CheckStatus(
            name=self.spec.name,
            kind=self.spec.kind,
            passing=self.passing,
            count=self.count,
            message=self.message,
            last_at=self.last_at,
            changed_at=self.changed_at,
            demotion=self.level,
            gating=self.gating,
        )


def reconcile(
    trackers: dict[str, CheckTracker], specs: tuple[CheckSpec, ...], *, boot: bool
) -> dict[str, CheckTracker]:
    """The trackers for a new set of checks: an unchanged or edited check keeps its
    tracker (results and state); a new one gets a fresh tracker, gating only at
    ``boot``; a removed one is dropped (its demotion must then be cleared)."""
    result: dict[str, CheckTracker] = {}
    for spec in specs:
        old = trackers.get(spec.name)
        if old is None:
            result[spec.name] = CheckTracker.at_boot(spec) if boot else CheckTracker(spec)
        else:
            if old.spec != spec:
                old.respec(spec)
            result[spec.name] = old
    return result


def with_target(spec: CheckSpec, address: str) -> CheckSpec:
    """``spec`` with its empty host replaced by the node's own address."""
    return replace(spec, host=address) if not spec.host and address else spec


__all__ = ["MESSAGE_LIMIT", "CheckTracker", "reconcile", "short", "with_target"]
