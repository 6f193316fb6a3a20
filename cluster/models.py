"""The desired state of the cluster, plus its history.

Every write goes through ``cluster.services``: these classes hold fields,
constraints that the database enforces as a last line of defence, and small
derived values. The messages users see come from ``cluster.validators`` and
``cluster.services``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from cluster import checks, choices, crypto, validators
from cluster.advskew import Timing, derive_advskew


class Node(models.Model):
    """One appliance of the cluster (at most nine).

    Its ``name`` names its Celery queue (``carp.<name>``) and appears in the
    priority matrix; its ``address`` is its own unicast address, which no
    alias may use; its ``ordinal`` (1..9) is what makes every node's derived
    advskew distinct within a tier. A node in ``maintenance`` gives up its
    virtual hosts: its engine sets the demotion source ``maintenance`` (240).
    """

    name = models.CharField(
        max_length=choices.NODE_NAME_MAX_LENGTH,
        unique=True,
        validators=[validators.validate_node_name],
    )
    address = models.GenericIPAddressField(unique=True, unpack_ipv4=True)
    interface = models.CharField(
        max_length=choices.INTERFACE_MAX_LENGTH, validators=[validators.validate_interface]
    )
    ordinal = models.PositiveSmallIntegerField(
        unique=True, validators=[validators.validate_ordinal]
    )
    maintenance = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["ordinal"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ordinal__gte=choices.ORDINAL_MIN, ordinal__lte=choices.ORDINAL_MAX),
                name="node_ordinal_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class IPAlias(models.Model):
    """One CARP virtual host: a VHID on an interface with its addresses.

    The VHID is unique per interface. The password is stored encrypted (see
    ``cluster.crypto``) because the engine needs the plaintext for the HMAC;
    it is written through ``set_password`` and never rendered anywhere.
    ``version`` goes up by one on every change so that an apply task (and the
    engine) can tell a newer desired state from an older one.
    """

    vhid = models.PositiveSmallIntegerField("VHID", validators=[validators.validate_vhid])
    interface = models.CharField(
        max_length=choices.INTERFACE_MAX_LENGTH, validators=[validators.validate_interface]
    )
    advbase = models.PositiveSmallIntegerField(
        default=choices.ADVBASE_DEFAULT, validators=[validators.validate_advbase]
    )
    password_encrypted = models.TextField(editable=False)
    enabled = models.BooleanField(default=True)
    # On by default: the appliance takes its role back when it returns.
    preempt = models.BooleanField(default=True)
    description = models.CharField(
        max_length=choices.DESCRIPTION_MAX_LENGTH,
        blank=True,
        validators=[validators.validate_description],
    )
    version = models.PositiveIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "IP alias"
        verbose_name_plural = "IP aliases"
        ordering = ["interface", "vhid"]
        constraints = [
            models.UniqueConstraint(
                fields=["interface", "vhid"], name="ipalias_vhid_per_interface"
            ),
            models.CheckConstraint(
                condition=Q(vhid__gte=choices.VHID_MIN, vhid__lte=choices.VHID_MAX),
                name="ipalias_vhid_range",
            ),
            models.CheckConstraint(
                condition=Q(advbase__gte=choices.ADVBASE_MIN, advbase__lte=choices.ADVBASE_MAX),
                name="ipalias_advbase_range",
            ),
        ]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        """How messages name this alias: its VHID and interface, and description."""
        text = f"VHID {self.vhid} on {self.interface}"
        return f"{text} ({self.description})" if self.description else text

    def set_password(self, raw: str) -> None:
        self.password_encrypted = crypto.encrypt(raw)

    def get_password(self) -> str:
        """The plaintext, for the engine's HMAC only. Never render it."""
        return crypto.decrypt(self.password_encrypted)


class AliasAddress(models.Model):
    """One address, with its prefix, of an alias.

    The host address ``ip`` is unique across all aliases whatever the prefix,
    so one address can never be claimed by two virtual hosts. ``address`` is
    the text form users write and read, e.g. ``192.0.2.100/24``.
    """

    alias = models.ForeignKey(IPAlias, on_delete=models.CASCADE, related_name="addresses")
    ip = models.GenericIPAddressField("IP", unique=True)
    prefixlen = models.PositiveSmallIntegerField("prefix length")

    class Meta:
        verbose_name = "alias address"
        verbose_name_plural = "alias addresses"
        # Creation order is the order the administrator wrote them in.
        ordering = ["alias_id", "id"]

    def __str__(self) -> str:
        return self.address

    @property
    def address(self) -> str:
        return f"{self.ip}/{self.prefixlen}"


class AliasPriority(models.Model):
    """A node's tier (Primary, Secondary, Backup) for one alias.

    A node takes part in an alias only through one of these rows; each node
    appears at most once per alias and exactly one row per alias is Primary
    (the database enforces "at most one"; the service enforces "exactly").
    The advskew on the wire is derived, never stored: see ``cluster.advskew``.
    It depends on the alias's advbase too (advbase 0 shifts it), so reading it
    loads the alias unless the row came through it (``alias.priorities.all()``).
    """

    alias = models.ForeignKey(IPAlias, on_delete=models.CASCADE, related_name="priorities")
    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="priorities")
    priority = models.CharField(max_length=16, choices=choices.Priority.choices)

    class Meta:
        verbose_name = "alias priority"
        verbose_name_plural = "alias priorities"
        ordering = ["alias_id", "node__ordinal"]
        constraints = [
            models.UniqueConstraint(fields=["alias", "node"], name="aliaspriority_node_once"),
            models.UniqueConstraint(
                fields=["alias"],
                condition=Q(priority=choices.Priority.PRIMARY),
                name="aliaspriority_one_primary",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.node_id}: {self.get_priority_display()}"

    @property
    def advskew(self) -> int:
        return derive_advskew(self.priority, self.node.ordinal, self.alias.advbase)

    @property
    def timing(self) -> Timing:
        """This node's advert interval and master-down time for the alias."""
        return Timing(self.alias.advbase, self.advskew)


class Transition(models.Model):
    """A state change of one virtual host on one node, as the engine reported it.

    Written by the node host (cluster/node/history.py, through
    ``services.record_transitions``); kept for the timeline on the cluster page
    and ``GET /api/v1/transitions/``. The VHID is copied rather than linked so
    the history stays readable after an alias is deleted. ``source`` names the
    demotion source (``maintenance``, ``link:eth0``, ``health:<check>``) when a
    demotion caused the change.
    """

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="transitions")
    vhid = models.PositiveSmallIntegerField("VHID")
    interface = models.CharField(max_length=choices.INTERFACE_MAX_LENGTH, blank=True)
    from_state = models.CharField(max_length=16, choices=choices.CarpState.choices)
    to_state = models.CharField(max_length=16, choices=choices.CarpState.choices)
    reason = models.CharField(max_length=32, choices=choices.TransitionReason.choices)
    source = models.CharField(max_length=64, blank=True, default="")
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.node_id} VHID {self.vhid}: {self.from_state} -> {self.to_state}"


class AuditEntry(models.Model):
    """Who changed what, when, with the object before and after.

    ``actor_name`` keeps the user's name after the user is deleted.
    ``before`` and ``after`` are snapshots built by ``cluster.services``;
    they never contain a password, only the mark ``(changed)`` when one was set.
    """

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    actor_name = models.CharField(max_length=150)
    action = models.CharField(max_length=16, choices=choices.AuditAction.choices)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=255)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name = "audit entry"
        verbose_name_plural = "audit entries"
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.actor_name} {self.action} {self.object_type} {self.object_repr}"

    def changes(self) -> dict[str, tuple[Any, Any]]:
        """The keys whose value differs between before and after."""
        before, after = self.before or {}, self.after or {}
        return {
            key: (before.get(key), after.get(key))
            for key in sorted(set(before) | set(after))
            if before.get(key) != after.get(key)
        }


# --------------------------------------------------------------------------
# Health checks (issue 10)


class HealthCheck(models.Model):
    """A check that the nodes in its scope run on themselves, off the protocol loop.

    While it fails (``fall`` results in a row) a node sets the demotion source
    ``health:<name>`` at ``weight``; ``rise`` passes clear it. A blank ``host``
    means the node's own address and ``port`` 0 the kind's default (smtp 25,
    http 80). ``path`` is the URL path of an http check or the file system path
    of a disk check; ``argv`` is a command check's program (an absolute path) and
    arguments, run without a shell. ``boot_needs_rise``: after a start the node
    stays demoted until the check has passed ``rise`` times rather than once.
    ``scope`` "all" runs it on every node, "nodes" on ``nodes`` only. ``version``
    goes up by one on every change, as an alias's does.
    """

    name = models.CharField(
        max_length=choices.CHECK_NAME_MAX_LENGTH,
        unique=True,
        validators=[validators.validate_check_name],
    )
    kind = models.CharField(max_length=16, choices=choices.CheckKind.choices)
    host = models.CharField(max_length=choices.CHECK_HOST_MAX_LENGTH, blank=True)
    port = models.PositiveIntegerField(default=0)
    path = models.CharField(max_length=choices.CHECK_PATH_MAX_LENGTH, blank=True)
    expect_status = models.PositiveSmallIntegerField(
        "expected status",
        default=choices.HTTP_STATUS_DEFAULT,
        validators=[validators.validate_expect_status],
    )
    min_free_percent = models.PositiveSmallIntegerField(
        "minimum free percent",
        default=choices.FREE_PERCENT_DEFAULT,
        validators=[validators.validate_min_free_percent],
    )
    argv = models.JSONField("command", default=list, blank=True)
    starttls = models.BooleanField("STARTTLS", default=False)
    interval_ms = models.PositiveIntegerField(
        "interval (ms)",
        default=choices.CHECK_INTERVAL_MS_DEFAULT,
        validators=[validators.validate_interval_ms],
    )
    timeout_ms = models.PositiveIntegerField(
        "timeout (ms)",
        default=choices.CHECK_TIMEOUT_MS_DEFAULT,
        validators=[validators.validate_timeout_ms],
    )
    rise = models.PositiveSmallIntegerField(
        default=choices.CHECK_RISE_DEFAULT, validators=[validators.validate_rise]
    )
    fall = models.PositiveSmallIntegerField(
        default=choices.CHECK_FALL_DEFAULT, validators=[validators.validate_fall]
    )
    weight = models.PositiveSmallIntegerField(
        default=choices.CHECK_WEIGHT_DEFAULT, validators=[validators.validate_weight]
    )
    boot_needs_rise = models.BooleanField("boot gating needs rise passes", default=False)
    scope = models.CharField(
        max_length=8, choices=choices.CheckScope.choices, default=choices.CheckScope.ALL
    )
    nodes = models.ManyToManyField(Node, blank=True, related_name="health_checks")
    enabled = models.BooleanField(default=True)
    version = models.PositiveIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "health check"
        verbose_name_plural = "health checks"
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    interval_ms__gte=choices.CHECK_INTERVAL_MS_MIN,
                    interval_ms__lte=choices.CHECK_INTERVAL_MS_MAX,
                ),
                name="healthcheck_interval_range",
            ),
            models.CheckConstraint(
                condition=Q(
                    timeout_ms__gte=choices.CHECK_TIMEOUT_MS_MIN,
                    timeout_ms__lt=models.F("interval_ms"),
                ),
                name="healthcheck_timeout_below_interval",
            ),
            models.CheckConstraint(
                condition=Q(
                    rise__gte=choices.CHECK_COUNT_MIN,
                    rise__lte=choices.CHECK_COUNT_MAX,
                    fall__gte=choices.CHECK_COUNT_MIN,
                    fall__lte=choices.CHECK_COUNT_MAX,
                ),
                name="healthcheck_rise_fall_range",
            ),
            models.CheckConstraint(
                condition=Q(
                    weight__gte=choices.CHECK_WEIGHT_MIN, weight__lte=choices.CHECK_WEIGHT_MAX
                ),
                name="healthcheck_weight_range",
            ),
            models.CheckConstraint(
                condition=Q(port__lte=choices.PORT_MAX), name="healthcheck_port_range"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=choices.CheckKind.values), name="healthcheck_kind_known"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def source(self) -> str:
        """The demotion source a failing check sets: ``health:<name>``."""
        return checks.source_name(self.name)

    @property
    def effective_port(self) -> int:
        """The port the check connects to: its own, else its kind's default (0: none)."""
        return self.port or choices.CHECK_DEFAULT_PORTS.get(self.kind, 0)

    @property
    def target(self) -> str:
        """Where the check looks, in words, for the pages and the admin."""
        if self.kind == choices.CheckKind.COMMAND:
            return " ".join(self.argv) if isinstance(self.argv, list) else ""
        if self.kind == choices.CheckKind.DISK:
            return f"{self.path} ≥ {self.min_free_percent} % free"
        host = self.host or "(the node)"
        where = f"[{host}]" if ":" in host else host
        text = f"{where}:{self.effective_port}"
        if self.kind == choices.CheckKind.HTTP:
            return f"http://{text}{self.path} → {self.expect_status}"
        if self.kind == choices.CheckKind.SMTP and self.starttls:
            return f"{text} (STARTTLS)"
        return text


class ClusterEvent(models.Model):
    """Something that happened to the cluster, once per occurrence however many
    detectors (notifier processes) saw it.

    ``subject`` names what the event is about (``owner:eth0:1``, ``node:node2``,
    ``check:node1:smtp``...) and ``seq`` counts that subject's events: a detector
    stores the next one only when the subject's condition differs from its last
    stored one, and ``(subject, seq)`` is unique, so two detectors racing to store
    the same change store it once (``dedup_key`` is the two in one string).
    ``condition`` is the subject's state after this event (the new owner, ``down``,
    ``failing``...), what the next detection compares with.
    """

    kind = models.CharField(max_length=32, choices=choices.EventKind.choices, db_index=True)
    subject = models.CharField(max_length=128)
    seq = models.PositiveIntegerField()
    dedup_key = models.CharField(max_length=160, unique=True)
    condition = models.CharField(max_length=128, blank=True)
    vhid = models.PositiveSmallIntegerField("VHID", null=True, blank=True)
    interface = models.CharField(max_length=choices.INTERFACE_MAX_LENGTH, blank=True)
    node = models.CharField(max_length=choices.NODE_NAME_MAX_LENGTH, blank=True)
    old_owner = models.CharField(max_length=choices.NODE_NAME_MAX_LENGTH, blank=True)
    new_owner = models.CharField(max_length=choices.NODE_NAME_MAX_LENGTH, blank=True)
    cause = models.CharField(max_length=255, blank=True)
    message = models.CharField(max_length=500)
    detail = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name = "cluster event"
        verbose_name_plural = "cluster events"
        ordering = ["-at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["subject", "seq"], name="clusterevent_subject_seq"),
        ]

    def __str__(self) -> str:
        return self.message


class EventBaseline(models.Model):
    """A subject's condition first seen with no event to say so (the owner of a VIP
    when it came up, or when the first notifier started): what detection compares
    with until the subject's first event. Written once per subject, never notified;
    a notifier that was down then reports the owner change it missed."""

    subject = models.CharField(max_length=128, unique=True)
    condition = models.CharField(max_length=128, blank=True)
    at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.subject}: {self.condition}"


class NotificationChannel(models.Model):
    """Where events are sent: an e-mail address list or a webhook URL.

    Desired state, written through ``cluster.notify`` (validated, audited). The
    webhook's signing secret is encrypted at rest (``cluster.crypto``, as the alias
    passwords) and never shown back. ``events`` lists the event kinds the channel
    gets; empty means all of them.
    """

    name = models.CharField(max_length=choices.CHANNEL_NAME_MAX_LENGTH, unique=True)
    kind = models.CharField(max_length=16, choices=choices.ChannelKind.choices)
    url = models.CharField("URL", max_length=choices.CHANNEL_URL_MAX_LENGTH, blank=True)
    recipients = models.JSONField(default=list, blank=True)
    secret_encrypted = models.TextField(blank=True, editable=False)
    events = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "notification channel"
        verbose_name_plural = "notification channels"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def set_secret(self, raw: str) -> None:
        self.secret_encrypted = crypto.encrypt(raw) if raw else ""

    def get_secret(self) -> str:
        """The plaintext, to sign a webhook body only. Never render it."""
        return crypto.decrypt(self.secret_encrypted) if self.secret_encrypted else ""

    def wants(self, kind: str) -> bool:
        return not self.events or kind in self.events or kind == choices.EventKind.TEST


class Delivery(models.Model):
    """One event to one channel: delivered exactly once.

    ``(event, channel)`` is unique. A notifier claims a row by compare-and-set
    (``cluster.notify.claim``: pending and due, or a sending claim whose lease has
    run out, to sending with its name), sends, and records the result; a failure
    goes back to pending with ``next_at`` backed off, until ``MAX_ATTEMPTS``.
    """

    event = models.ForeignKey(ClusterEvent, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(
        NotificationChannel, on_delete=models.CASCADE, related_name="deliveries"
    )
    status = models.CharField(
        max_length=16,
        choices=choices.DeliveryStatus.choices,
        default=choices.DeliveryStatus.PENDING,
    )
    attempts = models.PositiveIntegerField(default=0)
    next_at = models.DateTimeField(default=timezone.now)
    last_error = models.CharField(max_length=500, blank=True)
    claimed_by = models.CharField(max_length=128, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["event", "channel"], name="delivery_once"),
        ]
        indexes = [models.Index(fields=["status", "next_at"], name="delivery_due")]

    def __str__(self) -> str:
        return f"event {self.event_id} to {self.channel_id}: {self.status}"


class DeliveryAttempt(models.Model):
    """One try of one delivery, with its result: the delivery log."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="log")
    number = models.PositiveIntegerField()
    notifier = models.CharField(max_length=128)
    ok = models.BooleanField()
    result = models.CharField(max_length=500)
    duration_ms = models.PositiveIntegerField(default=0)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"delivery {self.delivery_id} #{self.number}: {self.result}"
