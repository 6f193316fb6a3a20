"""The data model: derived advskews, database constraints, passwords at rest."""

from __future__ import annotations

import itertools

import pytest
from django.db import IntegrityError, transaction
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from cluster import crypto
from cluster.advskew import BACKUP, DEMOTED_ADVSKEW, PRIMARY, SECONDARY, STEP, derive_advskew
from cluster.models import AliasPriority, IPAlias, Node
from tests.factories import make_alias, make_nodes

TIERS = [PRIMARY, SECONDARY, BACKUP]
ORDINALS = range(1, 10)


def test_the_advskew_table_is_what_the_docstring_says() -> None:
    assert [derive_advskew(PRIMARY, o) for o in ORDINALS] == [0] * 9
    assert [derive_advskew(SECONDARY, o) for o in ORDINALS] == list(range(13, 118, 13))
    assert [derive_advskew(BACKUP, o) for o in ORDINALS] == list(range(130, 235, 13))


def test_every_tier_is_below_the_next_and_all_below_demotion() -> None:
    for lower, higher in itertools.pairwise(TIERS):
        assert max(derive_advskew(lower, o) for o in ORDINALS) < min(
            derive_advskew(higher, o) for o in ORDINALS
        )
    assert max(derive_advskew(t, o) for t in TIERS for o in ORDINALS) < DEMOTED_ADVSKEW


@given(
    st.lists(st.sampled_from([SECONDARY, BACKUP]), min_size=0, max_size=8),
    st.integers(min_value=1, max_value=9),
    st.randoms(),
)
def test_no_two_nodes_of_a_valid_alias_share_an_advskew(
    others: list[str], primary_ordinal: int, rng: object
) -> None:
    # Any valid alias: one Primary and up to eight other nodes, distinct ordinals.
    ordinals = [o for o in ORDINALS if o != primary_ordinal]
    rng.shuffle(ordinals)  # type: ignore[attr-defined]
    skews = [derive_advskew(PRIMARY, primary_ordinal)]
    skews += [derive_advskew(tier, o) for tier, o in zip(others, ordinals, strict=False)]
    assert len(set(skews)) == len(skews)
    ordered = sorted(skews)
    # Neighbouring nodes are at least one step (51 ms of master-down time) apart.
    assert all(b - a >= STEP for a, b in itertools.pairwise(ordered))


def test_derive_advskew_refuses_what_cannot_be() -> None:
    with pytest.raises(ValueError, match="unknown priority tier"):
        derive_advskew("master", 1)
    with pytest.raises(ValueError, match="between 1 and 9"):
        derive_advskew(BACKUP, 10)


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
