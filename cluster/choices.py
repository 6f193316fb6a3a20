"""Choices and limits of the cluster's data model, in one place.

Never compare against bare strings elsewhere: use these constants.
"""

from __future__ import annotations

from typing import Final

from django.db import models

from cluster import advskew
from cluster.carp.types import MAX_PASSWORD_BYTES, Reason, State

VHID_MIN: Final = 1
VHID_MAX: Final = 255
# 0 is OpenBSD's sub-second timing: the interval is advskew/256 s alone
# (cluster.advskew shifts the derived skews so that it is never 0).
ADVBASE_MIN: Final = 0
ADVBASE_MAX: Final = 255
ADVBASE_DEFAULT: Final = 1
# How many enabled advbase-0 aliases one node may take part in. Every member
# wakes for each advert (about 530 us of CPU in Python): the Primary's 15.6 ms
# adverts are 64 a second, and four such aliases cost some 14 % of a core per
# node, which a 2-core node under mail load can spare with margin. More, and a
# busy engine risks answering late enough for a backup to take over (flapping).
SUBSECOND_ALIASES_PER_NODE_MAX: Final = 4
# BSD's carp(4) and ucarp both keep at most this many bytes of the passphrase.
PASSWORD_MAX_BYTES: Final = MAX_PASSWORD_BYTES
ORDINAL_MIN: Final = 1
ORDINAL_MAX: Final = advskew.MAX_ORDINAL
MAX_NODES: Final = advskew.MAX_ORDINAL
NODE_NAME_MAX_LENGTH: Final = 32
# Linux IFNAMSIZ is 16 including the terminating NUL.
INTERFACE_MAX_LENGTH: Final = 15
DESCRIPTION_MAX_LENGTH: Final = 200
# Each takeover sends a gratuitous ARP or unsolicited NA per address, and the
# IP ALIAS page lists every address in the alias's row: a few per virtual host
# is what the appliance needs (IPv4 and IPv6 of a service or two).
ADDRESSES_PER_ALIAS_MAX: Final = 16
# Apply tasks for a node whose worker is gone must not pile up in its queue.
APPLY_TASK_EXPIRES_SECONDS: Final = 300

# What the audit log writes instead of a password.
PASSWORD_CHANGED_MARK: Final = "(changed)"


class Priority(models.TextChoices):
    """A node's tier for one alias; the wire advskew is derived from it."""

    PRIMARY = advskew.PRIMARY, "Primary"
    SECONDARY = advskew.SECONDARY, "Secondary"
    BACKUP = advskew.BACKUP, "Backup"


# The engine's own vocabularies (cluster.carp.types), so that the history stores
# what the engine reports as it is and every layer spells a state one way.
class CarpState(models.TextChoices):
    """The states of a CARP virtual host (BSD carp(4)), spelt as the engine spells them."""

    INIT = State.INIT.value, "INIT"
    BACKUP = State.BACKUP.value, "BACKUP"
    MASTER = State.MASTER.value, "MASTER"


class TransitionReason(models.TextChoices):
    """Why a virtual host changed state on a node (the engine's ``Reason``)."""

    STARTUP = Reason.STARTUP.value, "Startup"
    MASTER_DOWN = Reason.MASTER_DOWN.value, "Master down"
    PREEMPTED = Reason.PREEMPTED.value, "Preempted"
    BOW_OUT = Reason.BOW_OUT.value, "Master bowed out"
    HIGHER_PRIORITY_SEEN = Reason.HIGHER_PRIORITY_SEEN.value, "Higher priority seen"
    DEMOTED = Reason.DEMOTED.value, "Demoted"
    MAINTENANCE = Reason.MAINTENANCE.value, "Maintenance"
    HEALTH_CHECK = Reason.HEALTH_CHECK.value, "Health check"
    SHUTDOWN = Reason.SHUTDOWN.value, "Shutdown"
    LINK_DOWN = Reason.LINK_DOWN.value, "Link down"
    LINK_UP = Reason.LINK_UP.value, "Link up"


class AuditAction(models.TextChoices):
    """What a change did to its object."""

    CREATE = "create", "Created"
    UPDATE = "update", "Updated"
    DELETE = "delete", "Deleted"
    # Too many failed logins for one user name from one address (cluster.lockout).
    LOCKOUT = "lockout", "Locked out"


class Role(models.TextChoices):
    """The two roles of the console; a user with neither has no access."""

    ADMINISTRATOR = "administrator", "Administrator"
    SUPPORT = "support", "Support"


# --------------------------------------------------------------------------
# Health checks (issue 10): the desired state of each check a node runs
# (cluster.models.HealthCheck, cluster.checks.CheckSpec).

# The name becomes the demotion source "health:<name>" and a Prometheus label value.
CHECK_NAME_MAX_LENGTH: Final = 40
# RFC 1035 2.3.4: a domain name is at most 253 characters in its text form.
CHECK_HOST_MAX_LENGTH: Final = 253
CHECK_PATH_MAX_LENGTH: Final = 1024
PORT_MIN: Final = 1
PORT_MAX: Final = 65535
# Faster than 200 ms costs a connection five times a second per node for little
# gain: failover is bounded by fall x interval anyway. An hour is the slowest
# interval that still deserves the word "check".
CHECK_INTERVAL_MS_MIN: Final = 200
CHECK_INTERVAL_MS_MAX: Final = 3_600_000
CHECK_INTERVAL_MS_DEFAULT: Final = 2000
CHECK_TIMEOUT_MS_MIN: Final = 50
CHECK_TIMEOUT_MS_DEFAULT: Final = 1000
CHECK_COUNT_MIN: Final = 1
CHECK_COUNT_MAX: Final = 10
CHECK_RISE_DEFAULT: Final = 2
CHECK_FALL_DEFAULT: Final = 3
# A demotion level: 240 is FreeBSD's cap on the advertised advskew, a full demotion.
CHECK_WEIGHT_MIN: Final = 1
CHECK_WEIGHT_MAX: Final = 240
CHECK_WEIGHT_DEFAULT: Final = 240
HTTP_STATUS_MIN: Final = 100
HTTP_STATUS_MAX: Final = 599
HTTP_STATUS_DEFAULT: Final = 200
HTTP_PATH_DEFAULT: Final = "/"
FREE_PERCENT_MIN: Final = 1
FREE_PERCENT_MAX: Final = 99
FREE_PERCENT_DEFAULT: Final = 10
# A command check's argv: the program and its arguments, no shell.
ARGV_MAX_ITEMS: Final = 32
ARGV_ITEM_MAX_LENGTH: Final = 1024
# Each node runs every check in its scope; the status page shows one line per
# check and node. More than this many is a monitoring system's job, not the cluster's.
CHECKS_MAX: Final = 64


class CheckKind(models.TextChoices):
    """What a health check does (cluster.checks.KINDS)."""

    SMTP = "smtp", "SMTP (220 banner, EHLO)"
    TCP = "tcp", "TCP connect"
    HTTP = "http", "HTTP GET"
    DISK = "disk", "Disk free space"
    COMMAND = "command", "Command (exit 0)"


# The port a check of these kinds uses when none is given.
CHECK_DEFAULT_PORTS: Final = {CheckKind.SMTP.value: 25, CheckKind.HTTP.value: 80}


class CheckScope(models.TextChoices):
    """Which nodes run a health check."""

    ALL = "all", "All nodes"
    NODES = "nodes", "Chosen nodes"


class EventKind(models.TextChoices):
    """What happened in the cluster (cluster.events detects them, once per occurrence)."""

    OWNER_CHANGED = "owner_changed", "Owner changed"
    FLAPPING = "flapping", "Owner flapping"
    SPLIT_BRAIN = "split_brain", "Split brain"
    NO_MASTER = "no_master", "No master"
    MASTER_RESTORED = "master_restored", "One master again"
    NODE_NOT_REPORTING = "node_not_reporting", "Node not reporting"
    NODE_REPORTING = "node_reporting", "Node reporting again"
    CHECK_FAILING = "check_failing", "Health check failing"
    CHECK_PASSING = "check_passing", "Health check passing again"
    CONFIG_DRIFT = "config_drift", "Configuration drift"
    CONFIG_CONVERGED = "config_converged", "Configuration applied again"
    TEST = "test", "Test notification"


class ChannelKind(models.TextChoices):
    EMAIL = "email", "E-mail"
    WEBHOOK = "webhook", "Webhook"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


CHANNEL_NAME_MAX_LENGTH: Final = 64
CHANNEL_URL_MAX_LENGTH: Final = 500
CHANNEL_RECIPIENTS_MAX: Final = 20
CHANNEL_SECRET_MAX_LENGTH: Final = 200
