"""The services: one transaction, every rule, an audit entry, an apply after commit."""

from __future__ import annotations

from unittest import mock

import pytest
from django.core.exceptions import ValidationError

from cluster import services
from cluster.choices import PASSWORD_CHANGED_MARK, AuditAction
from cluster.models import AliasAddress, AliasPriority, AuditEntry, IPAlias
from tests.factories import ALIAS_SECRET, alias_data, make_alias, make_nodes, make_user

pytestmark = pytest.mark.django_db


def errors_of(exc: pytest.ExceptionInfo[ValidationError]) -> dict[str, list[str]]:
    return exc.value.message_dict


def test_create_alias_stores_everything_and_encrypts_the_password() -> None:
    make_nodes(2)
    alias = make_alias(42)
    assert (alias.vhid, alias.interface, alias.version) == (42, "eth0", 1)
    assert [a.address for a in alias.addresses.all()] == ["192.0.2.42/24"]
    assert ALIAS_SECRET not in alias.password_encrypted
    assert alias.get_password() == ALIAS_SECRET
    skews = {p.node.name: p.advskew for p in alias.priorities.all()}
    assert skews == {"node1": 0, "node2": 26}


def test_a_failed_create_changes_nothing() -> None:
    make_nodes(2)
    with pytest.raises(ValidationError):
        services.create_alias(None, alias_data(42, addresses=["192.0.2.0/24"]))
    assert IPAlias.objects.count() == 0
    assert AliasAddress.objects.count() == 0
    assert AliasPriority.objects.count() == 0
