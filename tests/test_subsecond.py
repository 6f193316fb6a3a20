"""Sub-second timing (advbase 0) in the services: the node host's desired
configuration and the stability rule (at most four enabled sub-second aliases
per node). The page, the API and the admin show the same rule: see
tests/pages/test_subsecond_pages.py, tests/api/test_subsecond.py, tests/test_admin.py."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from cluster import services
from cluster.models import AuditEntry, IPAlias
from cluster.node.apply import node_config
from tests.factories import make_alias, make_nodes

pytestmark = pytest.mark.django_db

THREE_TIERS = [
    {"node": "node1", "priority": "primary"},
    {"node": "node2", "priority": "secondary"},
    {"node": "node3", "priority": "backup"},
]
# What the page, the API and the admin all show for a fifth alias on node1 and node2.
FIFTH_ON_NODE1_AND_NODE2 = (
    "Advbase 0 (sub-second adverts) is allowed on at most 4 enabled aliases per node, "
    "so that its engine keeps up with their adverts: node1 already takes part in 4; "
    "node2 already takes part in 4."
)


def make_four_subsecond_aliases() -> list[IPAlias]:
    """VHIDs 1..4 with advbase 0 on node1 (Primary) and node2 (Secondary)."""
    return [make_alias(number, advbase=0) for number in range(1, 5)]


def test_the_node_host_is_told_the_sub_second_advskews() -> None:
    make_nodes(3)
    make_alias(42, advbase=0, priorities=THREE_TIERS)
    desired = {name: services.desired_node(name).vhosts[0] for name in ("node1", "node2", "node3")}
    assert {name: (v.advbase, v.advskew) for name, v in desired.items()} == {
        "node1": (0, 4),
        "node2": (0, 30),
        "node3": (0, 160),
    }


def test_the_engine_takes_every_sub_second_virtual_host_it_is_given() -> None:
    make_nodes(3)
    make_alias(42, advbase=0, priorities=THREE_TIERS)
    for name in ("node1", "node2", "node3"):
        config = node_config(services.desired_node(name))
        assert config.problems == ()
        (vhost,) = config.vhosts
        assert vhost.advbase == 0
        assert vhost.advskew > 0


def test_switching_an_alias_to_advbase_0_shifts_its_advskews_in_the_audit() -> None:
    make_nodes(2)
    alias = make_alias(42)
    services.update_alias(None, alias, {"advbase": 0}, partial=True)
    entry = AuditEntry.objects.latest("id")
    sides = [entry.before or {}, entry.after or {}]
    skews = [[p["advskew"] for p in side["priorities"]] for side in sides]
    assert skews == [[0, 26], [4, 30]]


def test_a_fifth_enabled_sub_second_alias_on_a_node_is_refused_naming_the_rule() -> None:
    make_nodes(3)
    make_four_subsecond_aliases()
    with pytest.raises(ValidationError) as exc:
        make_alias(5, advbase=0)
    assert exc.value.message_dict == {"advbase": [FIFTH_ON_NODE1_AND_NODE2]}
    assert IPAlias.objects.count() == 4


def test_the_rule_names_only_the_nodes_at_the_limit() -> None:
    make_nodes(3)
    make_four_subsecond_aliases()
    tiers = [{"node": "node3", "priority": "primary"}, {"node": "node1", "priority": "backup"}]
    with pytest.raises(ValidationError) as exc:
        make_alias(5, advbase=0, priorities=tiers)
    assert exc.value.message_dict["advbase"][0].endswith(": node1 already takes part in 4.")


def test_a_fifth_alias_is_accepted_on_other_nodes_with_advbase_1_or_disabled() -> None:
    make_nodes(3)
    make_four_subsecond_aliases()
    make_alias(5, advbase=0, priorities=[{"node": "node3", "priority": "primary"}])
    make_alias(6, advbase=1)
    make_alias(7, advbase=0, enabled=False)
    assert IPAlias.objects.count() == 7


def test_enabling_a_disabled_sub_second_alias_past_the_limit_is_refused() -> None:
    make_nodes(3)
    parked = make_alias(9, advbase=0, enabled=False)
    make_four_subsecond_aliases()
    with pytest.raises(ValidationError) as exc:
        services.update_alias(None, parked, {"enabled": True}, partial=True)
    assert exc.value.message_dict == {"advbase": [FIFTH_ON_NODE1_AND_NODE2]}
    assert IPAlias.objects.get(pk=parked.pk).enabled is False


def test_one_of_the_four_is_not_counted_against_itself_when_it_changes() -> None:
    make_nodes(3)
    aliases = make_four_subsecond_aliases()
    updated = services.update_alias(None, aliases[3], {"description": "edited"}, partial=True)
    assert (updated.description, updated.version) == ("edited", 2)
