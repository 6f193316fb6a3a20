"""Serializers of the REST API.

They parse and render only: every rule is checked by ``cluster.services``
(so the API, the pages and the admin show the same messages), and a
``ValidationError`` from a service becomes a 400 field by field
(``cluster.api.exceptions``). The alias password is write-only.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cluster import services
from cluster.choices import Priority
from cluster.models import IPAlias, Node


@extend_schema_field({"type": "string", "enum": list(Priority.values)})
class PriorityField(serializers.CharField):
    """A tier name; checked by the service so its message is the shared one."""


class AddressListField(serializers.ListField):
    """Written as a list of strings; read from the alias's prefetched address rows."""

    def get_attribute(self, instance: IPAlias) -> list[str]:
        return [a.address for a in instance.addresses.all()]


class PrioritySerializer(serializers.Serializer[dict[str, Any]]):
    node = serializers.CharField(help_text="The node's name.")
    priority = PriorityField(help_text="primary, secondary or backup")
    advskew = serializers.IntegerField(
        read_only=True, help_text="Derived from the tier and the node's ordinal."
    )


class AliasSerializer(serializers.Serializer[IPAlias]):
    id = serializers.IntegerField(read_only=True)
    url = serializers.HyperlinkedIdentityField(view_name="api:ipalias-detail")
    vhid = serializers.IntegerField(help_text="1..255, unique per interface.")
    interface = serializers.CharField()
    advbase = serializers.IntegerField(required=False, help_text="1..255 seconds, default 1.")
    password = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text="At most 19 bytes. Required on create; blank or absent on update keeps it.",
    )
    addresses = AddressListField(
        child=serializers.CharField(), help_text='Addresses with prefix, e.g. "192.0.2.100/24".'
    )
    priorities = PrioritySerializer(many=True)
    enabled = serializers.BooleanField(required=False)
    preempt = serializers.BooleanField(required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    version = serializers.IntegerField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def create(self, validated_data: dict[str, Any]) -> IPAlias:
        return services.create_alias(self.context["request"].user, validated_data)

    def update(self, instance: IPAlias, validated_data: dict[str, Any]) -> IPAlias:
        user = self.context["request"].user
        return services.update_alias(user, instance, validated_data, partial=self.partial)


class NodeSerializer(serializers.Serializer[Node]):
    id = serializers.IntegerField(read_only=True)
    url = serializers.HyperlinkedIdentityField(view_name="api:node-detail")
    name = serializers.CharField(help_text="Lowercase letters, digits and hyphens.")
    address = serializers.CharField(help_text="The node's own unicast address.")
    interface = serializers.CharField()
    ordinal = serializers.IntegerField(help_text="1..9, unique; sets the node's advskews.")
    maintenance = serializers.BooleanField(required=False)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def create(self, validated_data: dict[str, Any]) -> Node:
        return services.create_node(self.context["request"].user, validated_data)

    def update(self, instance: Node, validated_data: dict[str, Any]) -> Node:
        user = self.context["request"].user
        return services.update_node(user, instance, validated_data, partial=self.partial)
