"""Choices and limits of the cluster's data model, in one place.

Never compare against bare strings elsewhere: use these constants.
"""

from __future__ import annotations

from typing import Final

from django.db import models

from cluster import advskew

VHID_MIN: Final = 1
VHID_MAX: Final = 255
ADVBASE_MIN: Final = 1
ADVBASE_MAX: Final = 255
ADVBASE_DEFAULT: Final = 1
# BSD's carp(4) and ucarp both keep at most this many bytes of the passphrase.
PASSWORD_MAX_BYTES: Final = 19
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


class CarpState(models.TextChoices):
    """The states of a CARP virtual host (RFC-less, as in BSD carp(4))."""

    INIT = "init", "Init"
    BACKUP = "backup", "Backup"
    MASTER = "master", "Master"


class TransitionReason(models.TextChoices):
    """Why a virtual host changed state on a node.

    The values are those of the engine's ``cluster.carp.types.Reason``, so the
    bridge stores what the engine reports as it is.
    """

    STARTUP = "startup", "Startup"
    MASTER_DOWN = "master_down", "Master down"
    PREEMPTED = "preempted", "Preempted"
    BOW_OUT = "bow_out", "Master bowed out"
    HIGHER_PRIORITY_SEEN = "higher_priority_seen", "Higher priority seen"
    DEMOTED = "demoted", "Demoted"
    MAINTENANCE = "maintenance", "Maintenance"
    HEALTH_CHECK = "health_check", "Health check"
    SHUTDOWN = "shutdown", "Shutdown"
    LINK_DOWN = "link_down", "Link down"
    LINK_UP = "link_up", "Link up"
    CONFIG_CHANGED = "config_changed", "Configuration changed"


class AuditAction(models.TextChoices):
    """What a change did to its object."""

    CREATE = "create", "Created"
    UPDATE = "update", "Updated"
    DELETE = "delete", "Deleted"


class Role(models.TextChoices):
    """The two roles of the console; a user with neither has no access."""

    ADMINISTRATOR = "administrator", "Administrator"
    SUPPORT = "support", "Support"
