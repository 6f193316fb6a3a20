"""The advskew each node puts on the wire, derived from its tier and ordinal.

This module imports nothing from Django so the pages, the API and the CARP
engine's bridge can all use the one rule.

Why these numbers (CARP advertises every ``advbase + advskew/256`` seconds and
a backup declares the master down after ``3 * advbase + advskew/256``):

* **No ties within an alias.** Exactly one node per alias is Primary, so the
  Primary tier needs one value only: ``0``. The Secondary and Backup tiers can
  hold any number of nodes (up to nine), so they add a step per node ordinal.
* **Tiers never overlap.** Every Secondary skew is above the Primary skew and
  every Backup skew above every Secondary skew, whatever the ordinals.
* **A wide step.** Two backups whose master-down timers are only a few
  milliseconds apart can both time out and both become master: ucarp with
  skews 10 apart (39 ms) showed two masters for almost 2 s. Spending a single
  value on the Primary tier leaves 18 slots for the other two tiers below 240,
  which allows a step of 13 (13/256 s = 51 ms) instead of the 8 or 9 a
  uniform three-tier layout could afford.
* **Everything below 240**, so a node that demotes itself (advskew 240, as
  the BSD ``net.inet.carp.demotion`` convention and ucarp use) always loses.

Result: Primary 0; Secondary 13, 26, ... 117; Backup 130, 143, ... 234.

**Sub-second timing (advbase 0, as OpenBSD allows).** With advbase 0 the
advskew alone is the interval, so the Primary's 0 would mean adverts with no
interval at all (the engine refuses advbase 0 with advskew 0). Every value is
then shifted up by ``SUBSECOND_OFFSET`` (4):

* **CPU per advert.** Each advert wakes the engine on the master and on every
  member that hears it, about 530 us of CPU per wake-up in Python (measured
  here). The Primary's 4/256 s = 15.6 ms means 64 adverts a second, about 3 %
  of a core per alias on each member; an offset of 1 would be 256 a second
  (14 %) for a failover only 35 ms faster. 5 is the largest offset that keeps
  the worst Backup below 240 (234 + 5 = 239); 4 leaves that one unit spare.
* **Still three of the better node's intervals.** With advbase 0 the engine
  uses OpenBSD's master-down ``3 * (advbase + advskew/256)``
  (``cluster.carp.timers``), three of the node's *own* intervals, and every
  backup's own interval is longer than every better node's, so each backup
  waits at least three adverts of the node above it: the Primary advertises
  every 15.6 ms and the best Secondary (17) declares it down after 199 ms.
  The step of 13 becomes 3 x 13/256 s = 152 ms of master-down time between
  neighbours, three times the spacing at advbase 1.
* **The same order**: a constant offset keeps every value distinct, the
  tiers in order, and everything below 240.

Result with advbase 0: Primary 4 (adverts 15.6 ms, master down 46.9 ms);
Secondary 17..121 (66.4..472.7 ms, 199.2..1418.0 ms); Backup 134..238
(523.4..929.7 ms, 1570.3..2789.1 ms). How many such aliases one node may
take part in is a rule of ``cluster.services`` (``SUBSECOND_ALIASES_PER_NODE_MAX``
in ``cluster.choices``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cluster.carp import timers

PRIMARY: Final = "primary"
SECONDARY: Final = "secondary"
BACKUP: Final = "backup"

MAX_ORDINAL: Final = 9
#: advskew/256 s per step: 13 units = 50.8 ms between two nodes' master-down timers.
STEP: Final = 13
#: The first value of each tier's range.
TIER_BASE: Final[dict[str, int]] = {
    PRIMARY: 0,
    SECONDARY: STEP,
    BACKUP: STEP * (MAX_ORDINAL + 1),
}
#: The skew a demoted node advertises; every derived skew stays below it.
DEMOTED_ADVSKEW: Final = 240
#: Added to every derived skew when advbase is 0: the Primary advertises every 4/256 s.
SUBSECOND_OFFSET: Final = 4


def derive_advskew(tier: str, ordinal: int, advbase: int) -> int:
    """Return the advskew for a node of ``ordinal`` (1..9) in ``tier`` of an
    alias advertising with ``advbase`` (0 shifts every value by ``SUBSECOND_OFFSET``)."""
    if tier not in TIER_BASE:
        raise ValueError(f"unknown priority tier {tier!r}")
    if not 1 <= ordinal <= MAX_ORDINAL:
        raise ValueError(f"node ordinal must be between 1 and {MAX_ORDINAL}, got {ordinal}")
    if advbase < 0:
        raise ValueError(f"advbase cannot be negative, got {advbase}")
    offset = SUBSECOND_OFFSET if advbase == 0 else 0
    if tier == PRIMARY:
        return TIER_BASE[PRIMARY] + offset
    return TIER_BASE[tier] + (ordinal - 1) * STEP + offset


def _duration(seconds: float) -> str:
    """15.6 ms, 199.2 ms, 1.051 s, 3 s."""
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + " s"


@dataclass(frozen=True)
class Timing:
    """What a node's advbase and advskew mean in time, by ``cluster.carp.timers``.

    Exact in milliseconds: advskew/256 s is a binary fraction, so the floats
    carry no rounding (15.625, not 15.624999).
    """

    advbase: int
    advskew: int

    @property
    def advert_interval_ms(self) -> float:
        """How often this node advertises while it is master."""
        return timers.advert_interval(self.advbase, self.advskew) * 1000

    @property
    def master_down_ms(self) -> float:
        """How long this node, as a backup, waits for an advert before taking over."""
        return timers.master_down_interval(self.advbase, self.advskew) * 1000

    @property
    def subsecond(self) -> bool:
        return self.advbase == 0

    @property
    def advert_interval_text(self) -> str:
        return _duration(self.advert_interval_ms / 1000)

    @property
    def master_down_text(self) -> str:
        return _duration(self.master_down_ms / 1000)

    def __str__(self) -> str:
        advert, down = self.advert_interval_text, self.master_down_text
        return f"adverts every {advert}, master down after {down}"
