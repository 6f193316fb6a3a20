"""The data model: derived advskews, database constraints, passwords at rest."""

from __future__ import annotations

import ipaddress
import itertools

import pytest
from django.db import IntegrityError, transaction
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from cluster import crypto
from cluster.advskew import (
    BACKUP,
    DEMOTED_ADVSKEW,
    PRIMARY,
    SECONDARY,
    STEP,
    SUBSECOND_OFFSET,
    Timing,
    derive_advskew,
)
from cluster.carp.types import ConfigError, VirtualHostConfig
from cluster.models import AliasPriority, IPAlias, Node
from tests.factories import make_alias, make_nodes

TIERS = [PRIMARY, SECONDARY, BACKUP]
ORDINALS = range(1, 10)
ADVBASES = [0, 1, 2, 255]


def test_the_advskew_table_is_what_the_docstring_says() -> None:
    assert [derive_advskew(PRIMARY, o, 1) for o in ORDINALS] == [0] * 9
    assert [derive_advskew(SECONDARY, o, 1) for o in ORDINALS] == list(range(13, 118, 13))
    assert [derive_advskew(BACKUP, o, 1) for o in ORDINALS] == list(range(130, 235, 13))


def test_with_advbase_0_the_table_moves_up_by_the_offset() -> None:
    assert SUBSECOND_OFFSET == 4
    assert [derive_advskew(PRIMARY, o, 0) for o in ORDINALS] == [4] * 9
    assert [derive_advskew(SECONDARY, o, 0) for o in ORDINALS] == list(range(17, 122, 13))
    assert [derive_advskew(BACKUP, o, 0) for o in ORDINALS] == list(range(134, 239, 13))


def test_with_advbase_0_no_derived_advskew_is_0_so_the_engine_accepts_every_one() -> None:
    skews = [derive_advskew(t, o, 0) for t in TIERS for o in ORDINALS]
    assert min(skews) == 4
    vip = (ipaddress.ip_interface("192.0.2.1/24"),)
    for skew in skews:
        VirtualHostConfig(1, "eth0", b"s", vip, advbase=0, advskew=skew)
    # What the offset avoids: the Primary's unshifted 0 is an interval of zero.
    with pytest.raises(ConfigError, match="cannot both be 0"):
        VirtualHostConfig(1, "eth0", b"s", vip, advbase=0, advskew=0)


def test_the_sub_second_figures_are_those_of_the_docstring() -> None:
    def ms(tier: str, ordinal: int) -> tuple[float, float]:
        timing = Timing(0, derive_advskew(tier, ordinal, 0))
        return timing.advert_interval_ms, timing.master_down_ms

    assert ms(PRIMARY, 1) == (15.625, 46.875)
    assert ms(SECONDARY, 1) == (66.40625, 199.21875)
    assert ms(SECONDARY, 9) == (472.65625, 1417.96875)
    assert ms(BACKUP, 1) == (523.4375, 1570.3125)
    assert ms(BACKUP, 9) == (929.6875, 2789.0625)
    assert str(Timing(0, 4)) == "adverts every 15.6 ms, master down after 46.9 ms"
    # advbase 1 keeps the ucarp/FreeBSD master-down: 3 x advbase + advskew/256.
    assert str(Timing(1, 13)) == "adverts every 1.051 s, master down after 3.051 s"


@pytest.mark.parametrize("advbase", ADVBASES)
def test_every_tier_is_below_the_next_and_all_below_demotion(advbase: int) -> None:
    for lower, higher in itertools.pairwise(TIERS):
        assert max(derive_advskew(lower, o, advbase) for o in ORDINALS) < min(
            derive_advskew(higher, o, advbase) for o in ORDINALS
        )
    top = max(derive_advskew(t, o, advbase) for t in TIERS for o in ORDINALS)
    assert top < DEMOTED_ADVSKEW


def test_with_advbase_0_each_backup_waits_three_of_the_better_nodes_intervals() -> None:
    skews = sorted({derive_advskew(t, o, 0) for t in TIERS for o in ORDINALS})
    for better, worse in itertools.pairwise(skews):
        better_interval = Timing(0, better).advert_interval_ms
        assert Timing(0, worse).master_down_ms > 3 * better_interval


@given(
    st.lists(st.sampled_from([SECONDARY, BACKUP]), min_size=0, max_size=8),
    st.integers(min_value=1, max_value=9),
    st.sampled_from(ADVBASES),
    st.randoms(),
)
def test_no_two_nodes_of_a_valid_alias_share_an_advskew(
    others: list[str], primary_ordinal: int, advbase: int, rng: object
) -> None:
    # Any valid alias: one Primary and up to eight other nodes, distinct ordinals.
    ordinals = [o for o in ORDINALS if o != primary_ordinal]
    rng.shuffle(ordinals)  # type: ignore[attr-defined]
    skews = [derive_advskew(PRIMARY, primary_ordinal, advbase)]
    skews += [derive_advskew(tier, o, advbase) for tier, o in zip(others, ordinals, strict=False)]
    assert len(set(skews)) == len(skews)
    assert 0 not in skews or advbase > 0
    ordered = sorted(skews)
    # Neighbouring nodes are at least one step (51 ms of master-down time) apart.
    assert all(b - a >= STEP for a, b in itertools.pairwise(ordered))


def test_derive_advskew_refuses_what_cannot_be() -> None:
    with pytest.raises(ValueError, match="unknown priority tier"):
        derive_advskew("master", 1, 1)
    with pytest.raises(ValueError, match="between 1 and 9"):
        derive_advskew(BACKUP, 10, 1)
    with pytest.raises(ValueError, match="advbase cannot be negative"):
        derive_advskew(BACKUP, 1, -1)


@pytest.mark.django_db
def test_the_priority_row_exposes_its_advskew() -> None:
    make_nodes(3)
    alias = make_alias(
        1,
        priorities=[
            {"node": "node3", "priority": "primary"},
            {"node": "node1", "priority": "backup"},
            {"node": "node2", "priority": "backup"},
        ],
    )
    skews = {p.node.name: p.advskew for p in alias.priorities.all()}
    assert skews == {"node3": 0, "node1": 130, "node2": 143}


@pytest.mark.django_db
def test_the_priority_row_of_a_sub_second_alias_is_shifted_and_knows_its_timing() -> None:
    make_nodes(2)
    alias = make_alias(1, advbase=0)
    rows = {p.node.name: p for p in AliasPriority.objects.filter(alias=alias)}
    assert {name: row.advskew for name, row in rows.items()} == {"node1": 4, "node2": 30}
    assert rows["node1"].timing == Timing(0, 4)
    assert rows["node2"].timing.master_down_ms == 351.5625


@pytest.mark.django_db
def test_the_database_refuses_a_second_primary() -> None:
    nodes = make_nodes(2)
    alias = make_alias(1)
    with pytest.raises(IntegrityError), transaction.atomic():
        AliasPriority.objects.filter(alias=alias, node=nodes[1]).update(priority=PRIMARY)


@pytest.mark.django_db
def test_the_database_refuses_a_vhid_out_of_range() -> None:
    make_nodes(2)
    alias = make_alias(1)
    with pytest.raises(IntegrityError), transaction.atomic():
        IPAlias.objects.filter(pk=alias.pk).update(vhid=256)


@pytest.mark.django_db
def test_the_database_refuses_a_tenth_ordinal() -> None:
    node = make_nodes(1)[0]
    with pytest.raises(IntegrityError), transaction.atomic():
        Node.objects.filter(pk=node.pk).update(ordinal=10)


def test_a_password_survives_encryption_and_is_not_stored_in_clear() -> None:
    token = crypto.encrypt("s3cret-é")
    assert "s3cret" not in token
    assert crypto.decrypt(token) == "s3cret-é"
    assert crypto.encrypt("s3cret-é") != token  # random IV: equal passwords look different


def test_an_old_key_in_the_fallbacks_still_decrypts() -> None:
    old = "o" * 40
    with override_settings(CLUSTER_SECRET_KEY=old, CLUSTER_SECRET_KEY_FALLBACKS=[]):
        token = crypto.encrypt("pw")
    with override_settings(CLUSTER_SECRET_KEY="n" * 40, CLUSTER_SECRET_KEY_FALLBACKS=[old]):
        assert crypto.decrypt(token) == "pw"
    with (
        override_settings(CLUSTER_SECRET_KEY="n" * 40, CLUSTER_SECRET_KEY_FALLBACKS=[]),
        pytest.raises(crypto.PasswordDecryptionError, match="CLUSTER_SECRET_KEY"),
    ):
        crypto.decrypt(token)
