"""Serializers of the REST API.

They render, and pass the request's values on as they came: every rule,
types and "is required" included, is checked by ``cluster.services`` (so the
API, the pages and the admin show the same messages, e.g. "VHID must be a
whole number." rather than DRF's own words), and a ``ValidationError`` from a
service becomes a 400 field by field (``cluster.api.exceptions``). The
declared fields describe the shape for the schema. The alias password is
write-only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty
from rest_framework.settings import api_settings

from cluster import choices, live, notify, services
from cluster.choices import Priority
from cluster.models import (
    ClusterEvent,
    HealthCheck,
    IPAlias,
    Node,
    NotificationChannel,
    Transition,
)


@extend_schema_field({"type": "string", "enum": list(Priority.values)})
class PriorityField(serializers.CharField):
    """A tier name; checked by the service so its message is the shared one."""


class PrioritySerializer(serializers.Serializer[dict[str, Any]]):
    node = serializers.CharField(
        max_length=choices.NODE_NAME_MAX_LENGTH, help_text="The node's name."
    )
    priority = PriorityField(help_text="primary, secondary or backup")
    advskew = serializers.IntegerField(
        read_only=True,
        help_text="Derived from the tier, the node's ordinal and the alias's advbase"
        " (advbase 0 adds 4).",
    )
    advert_interval_ms = serializers.FloatField(
        read_only=True,
        help_text="How often this node advertises as master: advbase + advskew/256 s.",
    )
    master_down_ms = serializers.FloatField(
        read_only=True,
        help_text="How long this node waits as a backup before taking over: "
        "3 x advbase + advskew/256 s, or 3 x (advbase + advskew/256) s when advbase is 0.",
    )


class ServiceInput:
    """``to_internal_value`` that hands the writable values to the service unjudged.

    Only the request's shape is checked here (an object); what each value must
    be is the service's rule, with the service's message.
    """

    fields: Any

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            message = f"Invalid data. Expected a dictionary, but got {type(data).__name__}."
            raise serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: [message]})
        values: dict[str, Any] = {}
        for name, field in self.fields.items():
            if field.read_only:
                continue
            value = field.get_value(data)  # handles form-encoded lists too
            if value is not empty:
                values[name] = value
        return values


class AliasSerializer(ServiceInput, serializers.Serializer[IPAlias]):
    id = serializers.IntegerField(read_only=True)
    url = serializers.HyperlinkedIdentityField(view_name="api:ipalias-detail")
    vhid = serializers.IntegerField(
        min_value=choices.VHID_MIN,
        max_value=choices.VHID_MAX,
        help_text="1..255, unique per interface.",
    )
    interface = serializers.CharField(max_length=choices.INTERFACE_MAX_LENGTH)
    advbase = serializers.IntegerField(
        required=False,
        min_value=choices.ADVBASE_MIN,
        max_value=choices.ADVBASE_MAX,
        help_text="0..255 seconds. Default 1 on create; absent on update keeps it. 0 is"
        " sub-second (OpenBSD): each node advertises every advskew/256 s (the Primary every"
        " 15.6 ms), failover within about 0.2 s, for tens of adverts a second of CPU on"
        " every member; a node may take part in at most"
        f" {choices.SUBSECOND_ALIASES_PER_NODE_MAX} enabled such aliases.",
    )
    password = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        # maxLength counts characters; the rule counts UTF-8 bytes, which are never fewer.
        max_length=choices.PASSWORD_MAX_BYTES,
        style={"input_type": "password"},
        help_text=f"At most {choices.PASSWORD_MAX_BYTES} bytes. Required on create; blank or"
        " absent on update keeps it.",
    )
    addresses = serializers.ListField(
        child=serializers.CharField(),
        min_length=1,
        max_length=choices.ADDRESSES_PER_ALIAS_MAX,
        help_text='1 to 16 addresses with prefix, e.g. "192.0.2.100/24".',
    )
    priorities = PrioritySerializer(many=True)
    enabled = serializers.BooleanField(
        required=False, help_text="Default true on create; absent on update (PUT too) keeps it."
    )
    preempt = serializers.BooleanField(
        required=False, help_text="Default true on create; absent on update (PUT too) keeps it."
    )
    description = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=choices.DESCRIPTION_MAX_LENGTH,
        help_text="Default empty on create; absent on update (PUT too) keeps it.",
    )
    version = serializers.IntegerField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def to_representation(self, instance: IPAlias) -> dict[str, Any]:
        # Written out rather than field by field: the full list renders 255
        # aliases x 9 priorities, and DRF's generic path was most of its time.
        # The declared fields above still describe the shape (and the schema).
        # A list view passes every alias's relations in the context (two
        # queries for the page); a single alias loads its own.
        views = self.context.get("alias_views") or services.alias_views([instance])
        view = views[instance.pk]
        fields = self.fields
        return {
            "id": instance.pk,
            "url": fields["url"].to_representation(instance),
            "vhid": instance.vhid,
            "interface": instance.interface,
            "advbase": instance.advbase,
            "addresses": view.addresses,
            "priorities": [
                {
                    "node": p.node,
                    "priority": p.priority,
                    "advskew": p.advskew,
                    "advert_interval_ms": p.timing.advert_interval_ms,
                    "master_down_ms": p.timing.master_down_ms,
                }
                for p in view.priorities
            ],
            "enabled": instance.enabled,
            "preempt": instance.preempt,
            "description": instance.description,
            "version": instance.version,
            "created_at": fields["created_at"].to_representation(instance.created_at),
            "updated_at": fields["updated_at"].to_representation(instance.updated_at),
        }

    def create(self, validated_data: dict[str, Any]) -> IPAlias:
        return services.create_alias(self.context["request"].user, validated_data)

    def update(self, instance: IPAlias, validated_data: dict[str, Any]) -> IPAlias:
        user = self.context["request"].user
        return services.update_alias(user, instance, validated_data, partial=self.partial)


class NodeSerializer(ServiceInput, serializers.Serializer[Node]):
    id = serializers.IntegerField(read_only=True)
    url = serializers.HyperlinkedIdentityField(view_name="api:node-detail")
    name = serializers.CharField(
        max_length=choices.NODE_NAME_MAX_LENGTH,
        help_text="Lowercase letters, digits and hyphens.",
    )
    address = serializers.CharField(help_text="The node's own unicast address.")
    interface = serializers.CharField(max_length=choices.INTERFACE_MAX_LENGTH)
    ordinal = serializers.IntegerField(
        min_value=choices.ORDINAL_MIN,
        max_value=choices.ORDINAL_MAX,
        help_text="1..9, unique; sets the node's advskews.",
    )
    maintenance = serializers.BooleanField(
        required=False, help_text="Default false on create; absent on update (PUT too) keeps it."
    )
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def create(self, validated_data: dict[str, Any]) -> Node:
        return services.create_node(self.context["request"].user, validated_data)

    def update(self, instance: Node, validated_data: dict[str, Any]) -> Node:
        user = self.context["request"].user
        return services.update_node(user, instance, validated_data, partial=self.partial)


# GET /api/v1/status/ renders cluster.live.Status.as_dict() as it is (the event
# stream sends the same body); these serializers describe it for the schema,
# and tests/api/test_status.py checks that the two keep the same fields.


class DemotionSourceSerializer(serializers.Serializer[dict[str, Any]]):
    # "source" is also an attribute of every DRF field; declared through locals() so
    # that the type checker does not take it for Field.source.
    locals()["source"] = serializers.CharField(
        help_text='"maintenance", "link:<interface>", "health:<check>" or "operator".'
    )
    level = serializers.IntegerField(help_text="What this source adds to the advskew.")
    reason = serializers.CharField(help_text="Why, in words.")


class DemotionSerializer(serializers.Serializer[dict[str, Any]]):
    total = serializers.IntegerField(
        help_text="The sum of the sources; the advertised advskew is capped at 240."
    )
    sources = DemotionSourceSerializer(many=True)


class CheckStatusSerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.CharField(
        help_text="The check's name (its demotion source is health:<name>)."
    )
    kind = serializers.CharField(help_text="smtp, tcp, http, disk or command.")
    passing = serializers.BooleanField(
        allow_null=True, help_text="The last result; null before the first one."
    )
    count = serializers.IntegerField(help_text="How many results in a row were the same.")
    message = serializers.CharField(
        help_text='The last result in words, e.g. "connection refused", "timeout after 2000 ms".'
    )
    last_at = serializers.FloatField(allow_null=True, help_text="Epoch seconds of the last result.")
    changed_at = serializers.FloatField(
        allow_null=True, help_text="Epoch seconds of the last change between passing and failing."
    )
    demotion = serializers.IntegerField(
        help_text="What the check adds to the node's demotion now (its weight, or 0)."
    )
    gating = serializers.BooleanField(
        help_text="It still holds the node demoted at boot (it has not passed yet)."
    )


class NodeStatusSerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.CharField()
    ordinal = serializers.IntegerField()
    maintenance = serializers.BooleanField()
    reporting = serializers.BooleanField(
        help_text="Its heartbeat key is present in Redis and the connection it names is open."
    )
    last_seen = serializers.FloatField(
        allow_null=True, help_text="Epoch seconds of its last heartbeat (or last write)."
    )
    config_source = serializers.CharField(
        help_text='"database", "local" (its copy on disk), "none" (nothing applied yet)'
        ' or "" (unknown).'
    )
    config_version = serializers.CharField(
        allow_null=True, help_text="The digest of the configuration the node applied."
    )
    summary = serializers.CharField(help_text="What the pages show, e.g. 'reporting · …'.")
    demotion = DemotionSerializer(help_text="The node's demotion, source by source.")
    unreadable = serializers.CharField(
        help_text="Why what the node wrote to Redis cannot be read; empty when it can."
    )
    checks = CheckStatusSerializer(many=True, help_text="Its health checks, as it reports them.")


class CellSerializer(serializers.Serializer[dict[str, Any]]):
    node = serializers.CharField()
    tier = PriorityField(allow_null=True, help_text="null: the node is not a member.")
    advskew = serializers.IntegerField(allow_null=True, help_text="The derived advskew.")
    state = serializers.ChoiceField(choices=list(live.STATES))
    advertised_advskew = serializers.IntegerField(
        allow_null=True, help_text="What the engine advertises (higher when demoted)."
    )
    last_reason = serializers.CharField(help_text="Reason of its last transition.")
    last_at = serializers.FloatField(allow_null=True, help_text="Epoch seconds.")
    last_source = serializers.CharField(
        help_text="The demotion source behind its last transition, if one was."
    )
    detail = serializers.CharField(help_text='e.g. "unreadable state from node2".')
    stale = serializers.BooleanField(
        help_text="A MASTER claim older than another member's taking over: not counted."
    )


class AliasStatusSerializer(serializers.Serializer[dict[str, Any]]):
    id = serializers.IntegerField()
    vhid = serializers.IntegerField()
    interface = serializers.CharField()
    addresses = serializers.ListField(child=serializers.CharField())
    enabled = serializers.BooleanField()
    description = serializers.CharField()
    cells = CellSerializer(many=True, help_text="One per node, in ordinal order.")
    expected_owner = serializers.CharField(
        allow_null=True, help_text="Lowest derived advskew among members up."
    )
    masters = serializers.ListField(child=serializers.CharField())
    mismatch = serializers.BooleanField(help_text="masters differ from [expected_owner].")
    summary = serializers.CharField(help_text='e.g. "MASTER on node2".')
    alert = serializers.ChoiceField(
        choices=["", *live.ROW_ALERT_WORDS], help_text="The row's worst problem, or empty."
    )
    alert_text = serializers.CharField(help_text='e.g. "split brain".')


class AlertSerializer(serializers.Serializer[dict[str, Any]]):
    kind = serializers.ChoiceField(choices=list(live.ALERT_KINDS))
    message = serializers.CharField()
    node = serializers.CharField(allow_null=True)
    vhid = serializers.IntegerField(allow_null=True)
    interface = serializers.CharField(allow_null=True)


class StatusSerializer(serializers.Serializer[dict[str, Any]]):
    available = serializers.BooleanField(help_text="false: Redis cannot be reached.")
    error = serializers.CharField()
    generated_at = serializers.FloatField(help_text="Epoch seconds.")
    nodes = NodeStatusSerializer(many=True)
    aliases = AliasStatusSerializer(many=True)
    alerts = AlertSerializer(many=True)


class TransitionSerializer(serializers.ModelSerializer[Transition]):
    node: serializers.SlugRelatedField[Node] = serializers.SlugRelatedField(
        slug_field="name", read_only=True
    )

    class Meta:
        model = Transition
        fields = [
            "id", "node", "vhid", "interface", "from_state", "to_state", "reason", "source", "at",
        ]  # fmt: skip


# --------------------------------------------------------------------------
# Health checks (issue 10): desired state, written through services.create_check
# and update_check, whose messages a 400 carries field by field.


class HealthCheckSerializer(ServiceInput, serializers.Serializer[HealthCheck]):
    id = serializers.IntegerField(read_only=True)
    url = serializers.HyperlinkedIdentityField(view_name="api:healthcheck-detail")
    name = serializers.CharField(
        max_length=choices.CHECK_NAME_MAX_LENGTH,
        help_text="Unique; lowercase letters, digits, '-' and '_'. A failing check sets the"
        " demotion source health:<name>.",
    )
    kind = serializers.ChoiceField(
        choices=choices.CheckKind.choices,
        help_text="smtp: 220 banner, EHLO 250, QUIT (optionally STARTTLS); tcp: connect;"
        " http: GET, expected status; disk: free space on a path; command: a program run"
        " without a shell, exit 0 passes.",
    )
    host = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=choices.CHECK_HOST_MAX_LENGTH,
        help_text="smtp, tcp, http: an IP address or host name; blank = the node itself.",
    )
    port = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=choices.PORT_MAX,
        help_text="smtp, tcp, http: 0 = the kind's default (smtp 25, http 80); tcp needs one.",
    )
    effective_port = serializers.IntegerField(
        read_only=True, help_text="The port the check connects to (0: the kind has none)."
    )
    path = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=choices.CHECK_PATH_MAX_LENGTH,
        help_text="http: the URL path (default /); disk: the absolute path whose file system"
        " is measured.",
    )
    expect_status = serializers.IntegerField(
        required=False,
        min_value=choices.HTTP_STATUS_MIN,
        max_value=choices.HTTP_STATUS_MAX,
        help_text=f"http: the status that passes (default {choices.HTTP_STATUS_DEFAULT}).",
    )
    min_free_percent = serializers.IntegerField(
        required=False,
        min_value=choices.FREE_PERCENT_MIN,
        max_value=choices.FREE_PERCENT_MAX,
        help_text="disk: the free space, in percent, at or above which it passes"
        f" (default {choices.FREE_PERCENT_DEFAULT}).",
    )
    argv = serializers.ListField(
        child=serializers.CharField(
            max_length=choices.ARGV_ITEM_MAX_LENGTH, allow_blank=True, trim_whitespace=False
        ),
        required=False,
        max_length=choices.ARGV_MAX_ITEMS,
        help_text="command: the program (an absolute path) and its arguments, e.g."
        ' ["/usr/local/bin/queue-ok", "500"]; no shell.',
    )
    starttls = serializers.BooleanField(
        required=False, help_text="smtp: also STARTTLS after EHLO (default false)."
    )
    interval_ms = serializers.IntegerField(
        required=False,
        min_value=choices.CHECK_INTERVAL_MS_MIN,
        max_value=choices.CHECK_INTERVAL_MS_MAX,
        help_text=f"Default {choices.CHECK_INTERVAL_MS_DEFAULT}.",
    )
    timeout_ms = serializers.IntegerField(
        required=False,
        min_value=choices.CHECK_TIMEOUT_MS_MIN,
        max_value=choices.CHECK_INTERVAL_MS_MAX - 1,
        help_text=f"Shorter than the interval; default {choices.CHECK_TIMEOUT_MS_DEFAULT}."
        " A timeout is a failure.",
    )
    rise = serializers.IntegerField(
        required=False,
        min_value=choices.CHECK_COUNT_MIN,
        max_value=choices.CHECK_COUNT_MAX,
        help_text="Passes in a row that clear the demotion"
        f" (default {choices.CHECK_RISE_DEFAULT}).",
    )
    fall = serializers.IntegerField(
        required=False,
        min_value=choices.CHECK_COUNT_MIN,
        max_value=choices.CHECK_COUNT_MAX,
        help_text=f"Failures in a row that demote (default {choices.CHECK_FALL_DEFAULT}).",
    )
    weight = serializers.IntegerField(
        required=False,
        min_value=choices.CHECK_WEIGHT_MIN,
        max_value=choices.CHECK_WEIGHT_MAX,
        help_text="The demotion while failing; 240 (the default) is a full demotion.",
    )
    boot_needs_rise = serializers.BooleanField(
        required=False,
        help_text="Boot gating: after a start the node stays demoted until the check passed"
        " rise times (true) or once (false, the default).",
    )
    scope = serializers.ChoiceField(
        choices=choices.CheckScope.choices,
        required=False,
        help_text="all (every node, the default) or nodes (those in nodes).",
    )
    nodes = serializers.ListField(
        child=serializers.CharField(max_length=choices.NODE_NAME_MAX_LENGTH),
        required=False,
        max_length=choices.MAX_NODES,
        help_text="Scope nodes: the names of the nodes that run the check; empty otherwise.",
    )
    enabled = serializers.BooleanField(required=False, help_text="Default true.")
    locals()["source"] = serializers.CharField(
        read_only=True, help_text="The demotion source it sets while failing: health:<name>."
    )
    version = serializers.IntegerField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def to_representation(self, instance: HealthCheck) -> dict[str, Any]:
        data: dict[str, Any] = dict(services.check_form_data(instance))
        fields = self.fields
        return {
            "id": instance.pk,
            "url": fields["url"].to_representation(instance),
            **data,
            "effective_port": instance.effective_port,
            "source": instance.source,
            "version": instance.version,
            "created_at": fields["created_at"].to_representation(instance.created_at),
            "updated_at": fields["updated_at"].to_representation(instance.updated_at),
        }

    def create(self, validated_data: dict[str, Any]) -> HealthCheck:
        return services.create_check(self.context["request"].user, validated_data)

    def update(self, instance: HealthCheck, validated_data: dict[str, Any]) -> HealthCheck:
        user = self.context["request"].user
        return services.update_check(user, instance, validated_data, partial=self.partial)


class ClusterEventSerializer(serializers.ModelSerializer[ClusterEvent]):
    class Meta:
        model = ClusterEvent
        fields = [
            "id", "kind", "message", "at", "vhid", "interface", "node", "old_owner",
            "new_owner", "cause", "detail", "dedup_key",
        ]  # fmt: skip


class NotificationChannelSerializer(ServiceInput, serializers.Serializer[NotificationChannel]):
    """A notification channel; written through ``cluster.notify`` (its rules, its
    messages). The secret is write-only: ``has_secret`` says whether one is set."""

    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=choices.CHANNEL_NAME_MAX_LENGTH)
    kind = serializers.ChoiceField(choices=choices.ChannelKind.choices)
    url = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=choices.CHANNEL_URL_MAX_LENGTH,
        help_text="webhook: the http(s) URL to POST to; empty for e-mail.",
    )
    recipients = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        max_length=choices.CHANNEL_RECIPIENTS_MAX,
        help_text="e-mail: the addresses; empty for a webhook.",
    )
    secret = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=choices.CHANNEL_SECRET_MAX_LENGTH,
        style={"input_type": "password"},
        help_text=f"webhook: the HMAC-SHA256 key ({notify.SECRET_MIN_LENGTH} characters or"
        " more), required on create; blank or absent on update keeps it. Never shown back.",
    )
    has_secret = serializers.SerializerMethodField()
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=notify.EVENT_KINDS),
        required=False,
        help_text="The event kinds this channel gets; empty for all.",
    )
    enabled = serializers.BooleanField(required=False, help_text="Default true.")
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def get_has_secret(self, channel: NotificationChannel) -> bool:
        return bool(channel.secret_encrypted)

    def create(self, validated_data: dict[str, Any]) -> NotificationChannel:
        return notify.create_channel(self.context["request"].user, validated_data)

    def update(
        self, instance: NotificationChannel, validated_data: dict[str, Any]
    ) -> NotificationChannel:
        return notify.update_channel(self.context["request"].user, instance, validated_data)
