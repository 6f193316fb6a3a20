"""CARP interval arithmetic (pure, stdlib only). All results are seconds as floats.

Sources: CARP.md "Timers and priority"; FreeBSD `sys/netinet/ip_carp.c`
(`DEMOTE_ADVSKEW`, `CARP_MAXSKEW`), ucarp `src/carp.c`, OpenBSD for advbase 0.
"""

from __future__ import annotations

from cluster.carp.types import BOW_OUT_ADVBASE, BOW_OUT_ADVSKEW

__all__ = [
    "BOW_OUT_ADVBASE",
    "BOW_OUT_ADVSKEW",
    "DEMOTED_ADVSKEW_CAP",
    "GRATUITOUS_REPEAT_ADVERTS",
    "advert_interval",
    "demoted_advskew",
    "master_down_interval",
    "takeover_delay",
    "will_time_out",
]

# FreeBSD CARP_MAXSKEW: a demoted advskew is capped here (below the bow-out 255).
DEMOTED_ADVSKEW_CAP = 240
# CARP.md "BACKUP -> MASTER on timeout": gratuitous ARP/NA again two adverts later.
GRATUITOUS_REPEAT_ADVERTS = 2
# One handover, one holder (DESIGN.md): when every backup hears the same reason to
# take over at once (a bow-out, a master demoted or slower than they are, one about
# to time out), each waits this long per unit of its own advskew first, so the best
# of them advertises before the next one's wait ends, and the others stand down on
# hearing it. The BSDs and ucarp take over at once (CARP.md "With more than two
# nodes"). 1/2048 s per unit: the project's step of 13 units (cluster.advskew) puts
# 6.3 ms between two neighbours, far above the 60-140 us an advert takes between
# nodes; the best Secondary (13) waits 6.3 ms, the worst Backup (234) 114 ms.
TAKEOVER_DELAY_PER_ADVSKEW = 1 / 2048


def advert_interval(advbase: int, advskew: int) -> float:
    """A master advertises every `advbase + advskew/256` seconds (CARP.md)."""
    return advbase + advskew / 256


def master_down_interval(advbase: int, advskew: int) -> float:
    """How long a backup waits without a valid advert before taking over.

    `3 * advbase + advskew/256` as ucarp and FreeBSD compute it (CARP.md). With
    advbase 0, which only OpenBSD runs, that formula would equal the advert
    interval itself, so we use OpenBSD's `3 * (advbase + advskew/256)` there.
    """
    if advbase == 0:
        return 3 * advert_interval(advbase, advskew)
    return 3 * advbase + advskew / 256


def takeover_delay(advskew: int) -> float:
    """How long a backup advertising ``advskew`` waits before a contended takeover."""
    return advskew * TAKEOVER_DELAY_PER_ADVSKEW


def demoted_advskew(advskew: int, demotion: int) -> int:
    """The advskew to advertise under `demotion`: FreeBSD's `DEMOTE_ADVSKEW`.

    `min(advskew + demotion, 240)`; a demotion never makes the advskew better
    (an advskew above 240 is left as it is).
    """
    if demotion < 0:
        raise ValueError("demotion cannot be negative")
    if demotion == 0:
        return advskew
    return max(advskew, min(advskew + demotion, DEMOTED_ADVSKEW_CAP))


def will_time_out(sender_interval: float, own_advbase: int) -> bool:
    """True when a master advertising every `sender_interval` is bound to be declared down.

    OpenBSD/FreeBSD `carp_input` in BACKUP: the sender's interval exceeds
    3 x our advbase, so treat it as down now (this is how the bow-out works).
    OpenBSD skips the rule when advbase is 0 (everything would exceed 0).
    """
    return own_advbase > 0 and sender_interval > 3 * own_advbase
