"""CARP interval arithmetic (CARP.md "Timers and priority", FreeBSD DEMOTE_ADVSKEW)."""

from __future__ import annotations

import pytest

from cluster.carp import timers


def test_the_advert_interval_is_advbase_plus_advskew_in_256ths():
    assert timers.advert_interval(1, 0) == 1.0
    assert timers.advert_interval(1, 100) == 1 + 100 / 256
    assert timers.advert_interval(0, 13) == pytest.approx(0.0508, abs=1e-4)


def test_the_master_down_interval_is_three_advbases_plus_the_skew():
    assert timers.master_down_interval(1, 0) == 3.0
    assert timers.master_down_interval(1, 100) == 3 + 100 / 256
    assert timers.master_down_interval(2, 128) == 6.5


def test_advbase_zero_uses_openbsds_three_intervals():
    # CARP.md: advbase 0, advskew 13: 51 ms adverts, about 150 ms detection.
    assert timers.master_down_interval(0, 13) == pytest.approx(3 * 13 / 256)
    assert timers.master_down_interval(0, 13) > timers.advert_interval(0, 13)


def test_a_demotion_adds_to_the_advskew_capped_at_240():
    assert timers.demoted_advskew(100, 0) == 100
    assert timers.demoted_advskew(100, 50) == 150
    assert timers.demoted_advskew(100, 200) == 240
    assert timers.demoted_advskew(0, 1000) == 240


def test_a_demotion_never_improves_an_advskew_above_the_cap():
    assert timers.demoted_advskew(250, 10) == 250


def test_a_negative_demotion_is_refused():
    with pytest.raises(ValueError, match="negative"):
        timers.demoted_advskew(10, -1)


def test_a_master_slower_than_three_advbases_will_time_out():
    assert timers.will_time_out(timers.advert_interval(255, 255), 1)
    assert timers.will_time_out(3.01, 1)
    assert not timers.will_time_out(3.0, 1)
    assert not timers.will_time_out(timers.advert_interval(255, 255), 86)


def test_the_time_out_rule_is_off_with_advbase_zero():
    # OpenBSD: with advbase 0 every interval would exceed 3 x 0.
    assert not timers.will_time_out(0.1, 0)


def test_the_bow_out_constants():
    assert (timers.BOW_OUT_ADVBASE, timers.BOW_OUT_ADVSKEW) == (255, 255)
    assert timers.DEMOTED_ADVSKEW_CAP == 240
