from __future__ import annotations

import django_filters

from cluster.models import IPAlias, Node


class AliasFilterSet(django_filters.FilterSet):  # type: ignore[misc]
    node = django_filters.CharFilter(
        field_name="priorities__node__name", distinct=True, label="Node name"
    )
    address = django_filters.CharFilter(field_name="addresses__ip", label="Address (no prefix)")

    class Meta:
        model = IPAlias
        fields = ["vhid", "interface", "enabled", "preempt"]


class NodeFilterSet(django_filters.FilterSet):  # type: ignore[misc]
    class Meta:
        model = Node
        fields = ["name", "interface", "ordinal", "maintenance"]
