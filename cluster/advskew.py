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
"""

from __future__ import annotations

from typing import Final

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


def derive_advskew(tier: str, ordinal: int) -> int:
    """Return the advskew for a node of ``ordinal`` (1..9) in ``tier``."""
    if tier not in TIER_BASE:
        raise ValueError(f"unknown priority tier {tier!r}")
    if not 1 <= ordinal <= MAX_ORDINAL:
        raise ValueError(f"node ordinal must be between 1 and {MAX_ORDINAL}, got {ordinal}")
    if tier == PRIMARY:
        return TIER_BASE[PRIMARY]
    return TIER_BASE[tier] + (ordinal - 1) * STEP
