"""Filters of the list endpoints (``?vhid=``, ``?enabled=``, ``?node=`` ...)."""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING, Any

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions
from rest_framework.filters import OrderingFilter, SearchFilter
from rest_framework.request import Request

from cluster import choices, services
from cluster.models import ClusterEvent, HealthCheck, IPAlias, Node, Transition

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise


def refuse_blank(value: Any, message: StrOrPromise) -> None:
    """A parameter given blank (``?vhid=``, ``?since=``) is a 400, not read as
    absent: django-filter drops a blank filter, so the client got every row as
    if it had not asked."""
    if isinstance(value, str) and not value.strip():
        raise ValidationError(message, code="invalid")


class FlagField(forms.Field):
    """``?enabled=`` read with the words the service reads in a request body.

    django-filter's own boolean filter ignores any value other than true or
    false, so ``?enabled=0`` or ``?enabled=no`` listed every alias, enabled ones
    included; an unknown word is now a 400 with the service's message.
    """

    def __init__(self, *args: Any, key: str, **kwargs: Any) -> None:
        self.key = key
        super().__init__(*args, **kwargs)

    def to_python(self, value: Any) -> bool | None:
        refuse_blank(value, services.flag_message(self.key))
        if value in self.empty_values:
            return None
        flag = services.parse_flag(value)
        if flag is None:
            raise ValidationError(services.flag_message(self.key), code="invalid")
        return flag


class FlagFilter(django_filters.Filter):  # type: ignore[misc]
    field_class = FlagField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("key", kwargs.get("field_name"))
        super().__init__(*args, **kwargs)


class WholeNumberField(forms.IntegerField):
    """Django's whole number field, refusing a blank one (``refuse_blank``)."""

    def to_python(self, value: Any) -> int | None:
        refuse_blank(value, self.error_messages["invalid"])
        number: int | None = super().to_python(value)
        return number


class IntegerFilter(django_filters.NumberFilter):  # type: ignore[misc]
    """A whole number: NumberFilter's decimal field took ``?vhid=1.5``."""

    field_class = WholeNumberField


def ranged_filter(field_name: str, low: int, high: int, label: str) -> IntegerFilter:
    """A whole number from ``low`` to ``high`` (else a 400 naming the parameter),
    with its range in the schema."""
    schema = {"type": "integer", "minimum": low, "maximum": high}
    made: IntegerFilter = extend_schema_field(schema)(
        IntegerFilter(field_name=field_name, min_value=low, max_value=high, label=label)
    )
    return made


class AddressFilter(django_filters.CharFilter):  # type: ignore[misc]
    """``?address=`` is a host address: anything else matches nothing, and
    PostgreSQL's inet column refused it with a 500."""

    field_class = forms.GenericIPAddressField


class NamedSearchFilter(SearchFilter):
    """``?search=`` whose refusal (a NUL in it) names the parameter, as every
    other 400 does: DRF's answered a bare list."""

    def get_search_terms(self, request: Request) -> Any:
        try:
            return super().get_search_terms(request)
        except exceptions.ValidationError as exc:
            raise exceptions.ValidationError({self.search_param: exc.detail}) from None


class AliasFilterSet(django_filters.FilterSet):  # type: ignore[misc]
    node = django_filters.CharFilter(
        field_name="priorities__node__name", distinct=True, label="Node name"
    )
    address = AddressFilter(field_name="addresses__ip", label="Address (no prefix)")
    enabled = FlagFilter(field_name="enabled", label="Enabled (true or false)")
    preempt = FlagFilter(field_name="preempt", label="Preempt (true or false)")
    vhid = ranged_filter("vhid", choices.VHID_MIN, choices.VHID_MAX, "VHID")

    class Meta:
        model = IPAlias
        fields = ["vhid", "interface", "enabled", "preempt"]


class NodeFilterSet(django_filters.FilterSet):  # type: ignore[misc]
    maintenance = FlagFilter(field_name="maintenance", label="Maintenance (true or false)")
    ordinal = ranged_filter("ordinal", choices.ORDINAL_MIN, choices.ORDINAL_MAX, "Ordinal")

    class Meta:
        model = Node
        fields = ["name", "interface", "ordinal", "maintenance"]


class InstantField(django_filters.fields.IsoDateTimeField):  # type: ignore[misc]
    """An ISO 8601 time the database can compare: one that is valid on its own
    but leaves years 1 to 9999 in UTC (``0001-01-01T00:00:00+05:00``) was a 500
    (OverflowError) when the query was built. A value without an offset is in
    ``TIME_ZONE``, as Django reads it. The query gets the instant in UTC:
    Python takes offsets up to 24 hours, PostgreSQL refuses those past 15:59
    (``+16:05`` was a 500 there)."""

    def to_python(self, value: Any) -> Any:
        refuse_blank(value, self.error_messages["invalid"])
        instant = super().to_python(value)
        if instant is None:
            return None
        try:
            return instant.astimezone(UTC)
        except OverflowError:
            raise ValidationError(
                "Enter a date/time between the years 1 and 9999 in UTC.", code="invalid"
            ) from None


class InstantFilter(django_filters.IsoDateTimeFilter):  # type: ignore[misc]
    field_class = InstantField


class TransitionFilterSet(django_filters.FilterSet):  # type: ignore[misc]
    """``?node=node1&vhid=1&since=2025-01-01T00:00:00Z&until=…``: a malformed
    value is a 400 that names its parameter."""

    node = django_filters.CharFilter(field_name="node__name", label="Node name")
    vhid = ranged_filter("vhid", choices.VHID_MIN, choices.VHID_MAX, "VHID")
    since = InstantFilter(field_name="at", lookup_expr="gte", label="At or after (ISO 8601)")
    until = InstantFilter(field_name="at", lookup_expr="lt", label="Before (ISO 8601)")

    class Meta:
        model = Transition
        fields = ["node", "vhid", "interface", "since", "until"]


class EventFilterSet(django_filters.FilterSet):  # type: ignore[misc]
    """``?kind=owner_changed&since=2026-01-01T00:00:00Z&node=node2&vhid=1``: a
    malformed value is a 400 that names its parameter."""

    kind = django_filters.MultipleChoiceFilter(choices=choices.EventKind.choices, label="Kind")
    vhid = ranged_filter("vhid", choices.VHID_MIN, choices.VHID_MAX, "VHID")
    since = InstantFilter(field_name="at", lookup_expr="gte", label="At or after (ISO 8601)")
    until = InstantFilter(field_name="at", lookup_expr="lt", label="Before (ISO 8601)")

    class Meta:
        model = ClusterEvent
        fields = ["kind", "node", "vhid", "interface", "since", "until"]


class StableOrderingFilter(OrderingFilter):
    """``?ordering=`` with the primary key as the last tie-breaker.

    Many rows share a sort value (transitions written in one batch share their
    time, aliases on two interfaces their VHID): without a unique last key the
    database may order the ties differently per query, so a row could appear on
    two pages or on none.
    """

    def get_ordering(self, request: Any, queryset: QuerySet[Any], view: Any) -> Any:
        ordering = super().get_ordering(request, queryset, view)
        if not ordering or any(str(term).lstrip("-") in ("id", "pk") for term in ordering):
            return ordering
        last = str(ordering[-1])
        return [*ordering, "-id" if last.startswith("-") else "id"]


# --------------------------------------------------------------------------
# Health checks (issue 10)


class StrictChoiceField(django_filters.fields.ChoiceField):  # type: ignore[misc]
    """A choice given blank (``?kind=``) is a 400 naming the choices, not "absent"."""

    def to_python(self, value: Any) -> Any:
        names = ", ".join(str(key) for key, _ in self.choices if key)
        refuse_blank(value, f"Choose one of: {names}.")
        return super().to_python(value)


class StrictChoiceFilter(django_filters.ChoiceFilter):  # type: ignore[misc]
    field_class = StrictChoiceField


class HealthCheckFilterSet(django_filters.FilterSet):  # type: ignore[misc]
    kind = StrictChoiceFilter(choices=choices.CheckKind.choices, label="Kind")
    enabled = FlagFilter(field_name="enabled", label="Enabled (true or false)")

    class Meta:
        model = HealthCheck
        fields = ["kind", "enabled"]
