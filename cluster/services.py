"""Every write to the cluster's desired state (DESIGN.md rule 4).

Pages, the REST API and the admin all call these functions; none of them
saves a model itself. Each function runs in one transaction, checks every
rule (so a failed call changes nothing), raises
``django.core.exceptions.ValidationError`` with a dict keyed by field name,
writes an ``AuditEntry``, and after the commit asks each affected node to
apply its configuration (``cluster.dispatch.dispatch_apply``).

Input shapes (plain dicts, so a form's ``cleaned_data``, a serializer's
``validated_data`` or a test can pass them as they are)::

    AliasData = {
        "vhid": 42,                      # 1..255, unique per interface
        "interface": "eth0",
        "advbase": 1,                    # 0..255, default 1; 0 = sub-second,
                                         # on at most 4 enabled aliases per node
        "password": "s3cret",            # <= 19 bytes; required on create,
                                         # "" or missing on update = keep
        # advbase, enabled, preempt, description: missing on create = the
        # default, missing on update (partial or not) = keep
        "addresses": ["192.0.2.100/24", "2001:db8::100/64"],
        "priorities": [{"node": "node1", "priority": "primary"},
                       {"node": "node2", "priority": "secondary"}],
        "enabled": True, "preempt": True, "description": "mail",
    }
    NodeData = {"name": "node1", "address": "192.0.2.11", "interface": "eth0",
                "ordinal": 1, "maintenance": False}

Error keys are the input keys (``vhid``, ``interface``, ``advbase``,
``password``, ``addresses``, ``priorities``, ``description``, ``name``,
``address``, ``ordinal``, ``force``) and ``__all__`` when no field fits.

``alias_form_data(alias)`` returns the AliasData of an existing alias
(without its password) for edit forms.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, NotRequired, TypedDict

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from cluster import access, choices, dispatch, validators
from cluster.advskew import Timing, derive_advskew
from cluster.checks import CheckSpec
from cluster.choices import AuditAction, Priority
from cluster.crypto import PasswordDecryptionError
from cluster.models import (
    AliasAddress,
    AliasPriority,
    AuditEntry,
    HealthCheck,
    IPAlias,
    Node,
    Transition,
)

logger = logging.getLogger(__name__)

__all__ = [
    "AccountData",
    "AliasData",
    "NodeData",
    "PriorityData",
    "account_snapshot",
    "alias_form_data",
    "alias_matrix",
    "alias_snapshot",
    "alias_views",
    "aliases_with_relations",
    "change_own_password",
    "config_version",
    "create_account",
    "create_alias",
    "create_node",
    "delete_account",
    "delete_alias",
    "delete_node",
    "desired_node",
    "desired_versions",
    "flag_message",
    "grant_token",
    "node_snapshot",
    "parse_flag",
    "record_lockout",
    "revoke_token",
    "subsecond_limit_message",
    "token_label",
    "update_account",
    "update_alias",
    "update_node",
    "validate_account",
    "validate_alias",
    "validate_node",
]


class PriorityData(TypedDict):
    node: str
    priority: str


class AliasData(TypedDict, total=False):
    vhid: int
    interface: str
    advbase: int
    password: str
    addresses: list[str]
    priorities: list[PriorityData]
    enabled: bool
    preempt: bool
    description: str


class NodeData(TypedDict, total=False):
    name: str
    address: str
    interface: str
    ordinal: int
    maintenance: bool


class _AliasDefaults(TypedDict):
    advbase: int
    enabled: bool
    preempt: bool
    description: str
    password: NotRequired[str]


ALIAS_DEFAULTS: _AliasDefaults = {
    "advbase": choices.ADVBASE_DEFAULT,
    "enabled": True,
    "preempt": True,
    "description": "",
}
ALIAS_REQUIRED = ("vhid", "interface", "addresses", "priorities")
NODE_DEFAULTS: dict[str, Any] = {"maintenance": False}
NODE_REQUIRED = ("name", "address", "interface", "ordinal")
LABELS = {
    "vhid": "VHID",
    "interface": "Interface",
    "advbase": "Advbase",
    "password": "Password",
    "addresses": "At least one address",
    "priorities": "A Primary node",
    "name": "Name",
    "address": "Address",
    "ordinal": "Ordinal",
    "description": "Description",
    "enabled": "Enabled",
    "preempt": "Preempt",
    "maintenance": "Maintenance",
}
# The words a boolean may be written with (a form's checkbox posts "on").
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})

Actor = Any  # a User, an AnonymousUser or None (a system change)


# --------------------------------------------------------------------------
# Reading helpers the pages, the API and the admin share.


def aliases_with_relations() -> QuerySet[IPAlias]:
    """All aliases with addresses, priorities and their nodes prefetched: four
    queries however many aliases there are. The nodes are prefetched rather
    than joined so that 255 aliases x 9 nodes share nine Node objects instead
    of building 2,295 (a third of the list endpoint's time)."""
    return IPAlias.objects.prefetch_related("addresses", "priorities__node")


class PriorityView(NamedTuple):
    """A node's part in an alias, as read-only values."""

    node: str
    ordinal: int
    priority: str
    advskew: int
    # The alias's: with the advskew it gives the node's advert and master-down times.
    advbase: int

    @property
    def timing(self) -> Timing:
        return Timing(self.advbase, self.advskew)


@dataclass
class AliasView:
    """An alias's addresses and priorities as plain lists (see ``alias_views``)."""

    addresses: list[str] = field(default_factory=list)
    priorities: list[PriorityView] = field(default_factory=list)


def alias_views(aliases: Sequence[IPAlias]) -> dict[int, AliasView]:
    """The addresses and priorities of ``aliases`` by alias id, in two queries.

    Plain tuples rather than model instances: 255 aliases on nine nodes would
    otherwise build some 2,800 related objects per request, most of the API
    list's time. Priorities come in node ordinal order, addresses as written.
    """
    views: dict[int, AliasView] = {alias.pk: AliasView() for alias in aliases}
    advbases = {alias.pk: alias.advbase for alias in aliases}
    addresses = AliasAddress.objects.filter(alias_id__in=views).order_by("id")
    for alias_id, ip, prefixlen in addresses.values_list("alias_id", "ip", "prefixlen"):
        views[alias_id].addresses.append(f"{ip}/{prefixlen}")
    priorities = AliasPriority.objects.filter(alias_id__in=views).order_by("node__ordinal")
    for alias_id, name, ordinal, tier in priorities.values_list(
        "alias_id", "node__name", "node__ordinal", "priority"
    ):
        advbase = advbases[alias_id]
        views[alias_id].priorities.append(
            PriorityView(name, ordinal, tier, derive_advskew(tier, ordinal, advbase), advbase)
        )
    return views


@dataclass(frozen=True)
class MatrixRow:
    """An alias with its addresses and one cell per node, in the nodes' order: the
    node's tier and derived advskew, or None where the node is not a member."""

    alias: IPAlias
    addresses: list[str]
    cells: list[PriorityView | None]


def alias_matrix(nodes: Sequence[Node]) -> list[MatrixRow]:
    """The alias x node join that the live status and the pages share, in three queries."""
    aliases = list(IPAlias.objects.all())
    views = alias_views(aliases)
    rows = []
    for alias in aliases:
        by_node = {priority.node: priority for priority in views[alias.pk].priorities}
        rows.append(
            MatrixRow(alias, views[alias.pk].addresses, [by_node.get(n.name) for n in nodes])
        )
    return rows


@dataclass(frozen=True)
class DesiredVirtualHost:
    """One enabled alias as ``node`` should run it.

    It holds the plaintext password (the HMAC needs it): never log or render
    one; the repr leaves it out. ``alias_id`` and ``version`` name the alias's
    change: an alias deleted and created again starts over at version 1.
    """

    alias_id: int
    version: int
    vhid: int
    interface: str
    advbase: int
    advskew: int
    preempt: bool
    addresses: tuple[str, ...]
    password: str = field(repr=False)
    # The other members' own addresses: the only sources its adverts may come from.
    peers: tuple[str, ...] = ()


@dataclass(frozen=True)
class LeftOutAlias:
    """An alias the node takes part in but cannot run, and why (in words)."""

    alias_id: int
    version: int
    vhid: int
    interface: str
    cause: str


@dataclass(frozen=True)
class DesiredNode:
    """Everything one node should run: the node host's input (cluster/node/apply.py).

    ``address`` is None when the node is not in the database (deleted: it must
    release its VIPs and run nothing).
    """

    node: str
    address: str | None
    maintenance: bool
    vhosts: tuple[DesiredVirtualHost, ...] = ()
    left_out: tuple[LeftOutAlias, ...] = ()
    # (interface, vhid) of the enabled aliases this node is not a member of: a
    # virtual host it stops running that is not among them is going away on every
    # node (disabled or deleted), so it stops without a bow-out.
    elsewhere: frozenset[tuple[str, int]] = frozenset()
    # The enabled health checks this node runs (cluster/checks.py).
    checks: tuple[CheckSpec, ...] = ()


UNDECRYPTABLE_CAUSE = (
    "its password cannot be decrypted: CLUSTER_SECRET_KEY differs from the key that saved it"
)


def desired_node(node_name: str) -> DesiredNode:
    """What ``node_name`` should run: every enabled alias it takes part in.

    An alias whose password cannot be decrypted (a database written under
    another ``CLUSTER_SECRET_KEY``) is left out with its cause; every other alias
    still runs.
    """
    node = Node.objects.filter(name=node_name).values("address", "maintenance").first()
    if node is None:
        return DesiredNode(node_name, None, False)
    rows = (
        AliasPriority.objects.filter(node__name=node_name, alias__enabled=True)
        .select_related("alias", "node")
        .order_by("alias__interface", "alias__vhid")
    )
    views = alias_views([row.alias for row in rows])
    members: dict[int, list[str]] = {}
    for alias_id, member, address in AliasPriority.objects.filter(alias_id__in=views).values_list(
        "alias_id", "node__name", "node__address"
    ):
        if member != node_name:
            members.setdefault(alias_id, []).append(address)
    vhosts: list[DesiredVirtualHost] = []
    left_out: list[LeftOutAlias] = []
    for row in rows:
        alias = row.alias
        try:
            password = alias.get_password()
        except PasswordDecryptionError:
            left_out.append(
                LeftOutAlias(
                    alias.pk, alias.version, alias.vhid, alias.interface, UNDECRYPTABLE_CAUSE
                )
            )
            continue
        vhosts.append(
            DesiredVirtualHost(
                alias_id=alias.pk,
                version=alias.version,
                vhid=alias.vhid,
                interface=alias.interface,
                advbase=alias.advbase,
                advskew=row.advskew,
                preempt=alias.preempt,
                addresses=tuple(views[alias.pk].addresses),
                password=password,
                peers=tuple(sorted(members.get(alias.pk, []))),
            )
        )
    elsewhere = (
        IPAlias.objects.filter(enabled=True)
        .exclude(priorities__node__name=node_name)
        .values_list("interface", "vhid")
    )
    return DesiredNode(
        node_name,
        node["address"],
        node["maintenance"],
        tuple(vhosts),
        tuple(left_out),
        frozenset(elsewhere),
        desired_checks(node_name),
    )


def config_version(desired: DesiredNode) -> str:
    """A digest of what the node runs, without the passwords: the version the node
    host applies (cluster/node/apply.py) and reports in its heartbeat, and what the
    event detector compares it with (configuration drift). Here, not in the node
    host, so that the web side computes the same digest without loading it.

    An alias's ``version`` goes up on every change of the alias, its password
    included, and starts over at 1 when the alias is deleted and created again, so
    the alias's id goes in with it; advskew depends on the node's ordinal and the
    source on the node's address, which the alias version does not see, so the
    virtual host's public data (the ``[[vhost]]`` table less its password) is
    digested too. A hash of a password would let anyone who reads Redis (the
    heartbeat carries the version) try passwords offline, so it stays out.
    """
    address = desired.address or ""
    facts = sorted([v.alias_id, v.version, public_vhost_data(v, address)] for v in desired.vhosts)
    left_out = sorted([a.alias_id, a.version] for a in desired.left_out)
    # A check's whole settings (no secret among them: a command check's arguments
    # are shown on its page too), so that editing one is a new version.
    checks = sorted((c.to_data() for c in desired.checks), key=lambda c: str(c["name"]))
    text = json.dumps(
        [facts, left_out, address, desired.maintenance, checks],
        separators=(",", ":"),
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def public_vhost_data(vhost: DesiredVirtualHost, address: str) -> dict[str, Any]:
    """The node's ``[[vhost]]`` table (cluster/node/apply._plain) less its password:
    what the version digests, and what the node runs with the password added."""
    return {
        "vhid": vhost.vhid,
        "interface": vhost.interface,
        "srcip": [address] if address else [],
        "addresses": sorted(vhost.addresses),
        "advbase": vhost.advbase,
        "advskew": vhost.advskew,
        "preempt": vhost.preempt,
        "peers": list(vhost.peers),
        "strict_counters": bool(vhost.peers),
    }


def desired_versions() -> dict[str, str]:
    """Every node's desired configuration version (``config_version``), by name."""
    return {
        name: config_version(desired_node(name))
        for name in Node.objects.values_list("name", flat=True)
    }


def alias_form_data(alias: IPAlias) -> AliasData:
    """The AliasData of ``alias`` for an edit form: everything but the password."""
    return {
        "vhid": alias.vhid,
        "interface": alias.interface,
        "advbase": alias.advbase,
        "addresses": [a.address for a in alias.addresses.all()],
        "priorities": [
            {"node": p.node.name, "priority": p.priority}
            for p in sorted(alias.priorities.all(), key=lambda p: p.node.ordinal)
        ],
        "enabled": alias.enabled,
        "preempt": alias.preempt,
        "description": alias.description,
    }


def alias_snapshot(alias: IPAlias) -> dict[str, Any]:
    """The audit log's picture of an alias. Never contains the password."""
    data: dict[str, Any] = dict(alias_form_data(alias))
    for item, prio in zip(
        data["priorities"],
        sorted(alias.priorities.all(), key=lambda p: p.node.ordinal),
        strict=True,
    ):
        item["advskew"] = prio.advskew
    data["version"] = alias.version
    return data


def node_snapshot(node: Node) -> dict[str, Any]:
    return {
        "name": node.name,
        "address": node.address,
        "interface": node.interface,
        "ordinal": node.ordinal,
        "maintenance": node.maintenance,
    }


# --------------------------------------------------------------------------
# Validation


class _Errors:
    """Collects messages per field so one call reports every problem at once."""

    def __init__(self) -> None:
        self.by_field: dict[str, list[str]] = {}

    def add(self, key: str, error: ValidationError | str) -> None:
        messages = error.messages if isinstance(error, ValidationError) else [error]
        self.by_field.setdefault(key, []).extend(messages)

    def has(self, key: str) -> bool:
        return key in self.by_field

    def check(self, key: str, rule: Callable[[Any], object], value: Any) -> bool:
        """Apply a rule from ``cluster.validators``; record its message if it fails."""
        try:
            rule(value)
        except ValidationError as exc:
            self.add(key, exc)
            return False
        return True

    def raise_if_any(self) -> None:
        if self.by_field:
            raise ValidationError(self.by_field)


def _as_int(value: Any, key: str, errors: _Errors) -> int | None:
    if isinstance(value, bool):
        value = None
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        errors.add(key, f"{LABELS[key]} must be a whole number.")
        return None


def _text(
    merged: Mapping[str, Any], key: str, rule: Callable[[str], object], errors: _Errors
) -> str | None:
    """The stripped text under ``key`` if given and valid, else None."""
    if key not in merged:
        return None
    if not isinstance(merged[key], str):
        errors.add(key, f"{LABELS[key]} must be text.")
        return None
    value = merged[key].strip()
    return value if errors.check(key, rule, value) else None


def _number(
    merged: Mapping[str, Any], key: str, rule: Callable[[int], object], errors: _Errors
) -> int | None:
    """The whole number under ``key`` if given and valid, else None."""
    if key not in merged:
        return None
    value = _as_int(merged[key], key, errors)
    return value if value is not None and errors.check(key, rule, value) else None


def parse_flag(value: Any) -> bool | None:
    """A boolean from true/false, 1/0, yes/no, on/off (a form's checkbox posts
    "on", a blank one nothing); None if ``value`` is none of these."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower() if isinstance(value, str | int) else None
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None


def flag_message(key: str) -> str:
    """The message for a value of ``key`` that ``parse_flag`` cannot read."""
    return f"{LABELS[key]} must be true or false."


def _flag(merged: Mapping[str, Any], key: str, errors: _Errors) -> bool:
    """The boolean under ``key`` (see ``parse_flag``)."""
    flag = parse_flag(merged[key])
    if flag is None:
        errors.add(key, flag_message(key))
    return bool(flag)


def _defaults(defaults: Mapping[str, Any], stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """What an optional key left out means: its default on create, and on an
    update (even a full one, like an API PUT) the value it has now. A PUT that
    leaves out ``enabled`` must not switch a disabled alias back on, nor one
    that leaves out ``maintenance`` take a node out of maintenance."""
    if stored is None:
        return dict(defaults)
    return {key: stored.get(key, value) for key, value in defaults.items()}


def _merged(
    data: Mapping[str, Any],
    current: Mapping[str, Any] | None,
    defaults: Mapping[str, Any],
    required: Iterable[str],
    errors: _Errors,
) -> dict[str, Any]:
    """Fill a partial update from the current values, a create from the defaults."""
    merged: dict[str, Any] = dict(defaults)
    if current is not None:
        merged.update(current)
    required = tuple(required)

    def given(key: str, value: Any) -> bool:
        # None, or blank text for a required field, is "not given".
        blank = key in required and isinstance(value, str) and not value.strip()
        return value is not None and not blank

    merged.update({k: v for k, v in data.items() if given(k, v)})
    for key in required:
        # An explicit null or blank clears a required value: refused like a missing one.
        if key not in merged or (key in data and not given(key, data[key])):
            errors.add(key, f"{LABELS[key]} is required.")
    return merged


@dataclass
class AliasChange:
    """A validated alias: what the write will store."""

    vhid: int
    interface: str
    advbase: int
    enabled: bool
    preempt: bool
    description: str
    password: str | None  # None keeps the stored one
    addresses: list[validators.IPInterface] = field(default_factory=list)
    priorities: list[tuple[Node, str]] = field(default_factory=list)


def validate_alias(
    data: Mapping[str, Any], alias: IPAlias | None = None, partial: bool = False
) -> AliasChange:
    """Check ``data`` against every rule; raise ValidationError(dict) or return it cleaned.

    ``alias`` is the alias being updated (None on create). With ``partial``,
    missing keys keep the alias's current values.
    """
    errors = _Errors()
    stored = alias_form_data(alias) if alias is not None else None
    current = stored if partial else None
    merged = _merged(data, current, _defaults(ALIAS_DEFAULTS, stored), ALIAS_REQUIRED, errors)

    vhid = _number(merged, "vhid", validators.validate_vhid, errors)
    interface = _text(merged, "interface", validators.validate_interface, errors)
    advbase = _number(merged, "advbase", validators.validate_advbase, errors)
    description = _text(merged, "description", validators.validate_description, errors) or ""
    enabled = _flag(merged, "enabled", errors)
    preempt = _flag(merged, "preempt", errors)
    password = _clean_password(data.get("password"), creating=alias is None, errors=errors)

    if vhid is not None and interface is not None:
        clash = IPAlias.objects.filter(vhid=vhid, interface=interface)
        if alias is not None:
            clash = clash.exclude(pk=alias.pk)
        other = clash.first()
        if other is not None:
            owner = f" by alias '{other.description}'" if other.description else ""
            errors.add("vhid", f"VHID {vhid} is already used on interface {interface}{owner}.")

    addresses = _clean_addresses(merged.get("addresses"), alias, errors)
    priorities = _clean_priorities(merged.get("priorities"), errors)
    if advbase == 0 and enabled:
        _check_subsecond_load(priorities, alias, errors)
    errors.raise_if_any()
    # All are set whenever no error was recorded.
    assert vhid is not None
    assert interface is not None
    assert advbase is not None
    return AliasChange(
        vhid=vhid,
        interface=interface,
        advbase=advbase,
        enabled=enabled,
        preempt=preempt,
        description=description,
        password=password,
        addresses=addresses,
        priorities=priorities,
    )


def subsecond_limit_message(loads: Sequence[tuple[str, int]]) -> str:
    """The stability rule's message, naming each node at the limit and its count."""
    limit = choices.SUBSECOND_ALIASES_PER_NODE_MAX
    full = "; ".join(f"{name} already takes part in {count}" for name, count in loads)
    return (
        f"Advbase 0 (sub-second adverts) is allowed on at most {limit} enabled aliases "
        f"per node, so that its engine keeps up with their adverts: {full}."
    )


def _check_subsecond_load(
    priorities: Sequence[tuple[Node, str]], alias: IPAlias | None, errors: _Errors
) -> None:
    """An enabled advbase-0 alias may not bring a node past
    ``SUBSECOND_ALIASES_PER_NODE_MAX`` of them (see ``cluster.choices``): each
    member wakes for every one of their tens of adverts a second."""
    nodes = {node.pk: node for node, _ in priorities}
    others = AliasPriority.objects.filter(node_id__in=nodes, alias__advbase=0, alias__enabled=True)
    if alias is not None:
        others = others.exclude(alias=alias)
    counts = Counter(others.values_list("node_id", flat=True))
    limit = choices.SUBSECOND_ALIASES_PER_NODE_MAX
    loads = [
        (node.name, counts[pk])
        for pk, node in sorted(nodes.items(), key=lambda item: item[1].ordinal)
        if counts[pk] >= limit
    ]
    if loads:
        errors.add("advbase", subsecond_limit_message(loads))


def _clean_password(value: Any, creating: bool, errors: _Errors) -> str | None:
    if value is not None and not isinstance(value, str):
        errors.add("password", "Password must be text.")
        return None
    text = value or ""
    if not text:
        if creating:
            errors.add("password", "Password is required.")
        return None
    return text if errors.check("password", validators.validate_password_length, text) else None


def _clean_addresses(
    value: Any, alias: IPAlias | None, errors: _Errors
) -> list[validators.IPInterface]:
    if value is None:
        return []  # already reported as required
    if not isinstance(value, list | tuple):
        errors.add("addresses", "Addresses must be a list of addresses with prefix.")
        return []
    if not errors.check("addresses", validators.validate_address_count, value):
        return []
    parsed: list[validators.IPInterface] = []
    seen: set[str] = set()
    for item in value:
        if not isinstance(item, str):
            errors.add("addresses", "Each address must be text, e.g. 192.0.2.100/24.")
            continue
        try:
            iface = validators.parse_alias_address(item)
        except ValidationError as exc:
            errors.add("addresses", exc)
            continue
        host = str(iface.ip)
        if host in seen:
            errors.add("addresses", f"{host} appears more than once.")
            continue
        seen.add(host)
        parsed.append(iface)
    if not parsed and not errors.has("addresses"):
        errors.add("addresses", "At least one address is required.")
    if not seen:
        return parsed
    taken = AliasAddress.objects.filter(ip__in=seen).select_related("alias")
    if alias is not None:
        taken = taken.exclude(alias=alias)
    for row in taken:
        errors.add("addresses", f"{row.ip} is already used by alias {row.alias.label}.")
    for node in Node.objects.filter(address__in=seen):
        errors.add("addresses", f"{node.address} is the own address of node {node.name}.")
    return parsed


def _clean_priorities(value: Any, errors: _Errors) -> list[tuple[Node, str]]:
    if value is None:
        return []  # already reported as required
    if not isinstance(value, list | tuple):
        errors.add("priorities", 'Priorities must be a list of {"node", "priority"} items.')
        return []
    rows: list[tuple[str, str]] = []
    for item in value:
        if not isinstance(item, Mapping) or "node" not in item or "priority" not in item:
            errors.add("priorities", 'Each priority must name a "node" and a "priority".')
            continue
        rows.append((str(item["node"]), str(item["priority"])))
    # No node's name has a NUL (validate_node_name), so such a name stays out of
    # the query, where PostgreSQL refused it with a DataError (a 500).
    names = [name for name, _ in rows if "\x00" not in name]
    nodes = Node.objects.in_bulk(names, field_name="name")
    result: list[tuple[Node, str]] = []
    seen: set[str] = set()
    tiers = ", ".join(str(t) for t in Priority.values)
    for name, tier in rows:
        if name in seen:
            errors.add("priorities", f"{name} appears more than once.")
            continue
        seen.add(name)
        if name not in nodes:
            errors.add("priorities", f"There is no node named '{name}'.")
            continue
        if tier not in Priority.values:
            errors.add("priorities", f"'{tier}' is not a priority; choose one of {tiers}.")
            continue
        result.append((nodes[name], tier))
    primaries = sum(1 for _, tier in rows if tier == Priority.PRIMARY)
    if primaries != 1:
        errors.add("priorities", f"Exactly one node must be Primary (found {primaries}).")
    return result


@dataclass
class NodeChange:
    name: str
    address: str
    interface: str
    ordinal: int
    maintenance: bool


def validate_node(
    data: Mapping[str, Any], node: Node | None = None, partial: bool = False
) -> NodeChange:
    """Check ``data`` for a node; raise ValidationError(dict) or return it cleaned."""
    errors = _Errors()
    stored = node_snapshot(node) if node is not None else None
    current = stored if partial else None
    merged = _merged(data, current, _defaults(NODE_DEFAULTS, stored), NODE_REQUIRED, errors)
    others = Node.objects.exclude(pk=node.pk) if node is not None else Node.objects.all()

    name = _text(merged, "name", validators.validate_node_name, errors)
    if name is not None and others.filter(name=name).exists():
        errors.add("name", f"A node named {name} already exists.")

    address = ""
    if "address" in merged:
        try:
            address = validators.parse_host_address(merged["address"])
        except ValidationError as exc:
            errors.add("address", exc)
        else:
            owner = others.filter(address=address).first()
            if owner is not None:
                errors.add("address", f"{address} is the own address of node {owner.name}.")
            used = AliasAddress.objects.filter(ip=address).select_related("alias").first()
            if used is not None:
                errors.add("address", f"{address} is already used by alias {used.alias.label}.")

    interface = _text(merged, "interface", validators.validate_interface, errors)
    ordinal = _number(merged, "ordinal", validators.validate_ordinal, errors)
    maintenance = _flag(merged, "maintenance", errors)
    if ordinal is not None:
        holder = others.filter(ordinal=ordinal).first()
        if holder is not None:
            errors.add("ordinal", f"Ordinal {ordinal} is already used by node {holder.name}.")

    if node is None and Node.objects.count() >= choices.MAX_NODES:
        errors.add("__all__", "A cluster has at most nine nodes.")
    errors.raise_if_any()
    # All are set whenever no error was recorded.
    assert name is not None
    assert interface is not None
    assert ordinal is not None
    return NodeChange(
        name=name,
        address=address,
        interface=interface,
        ordinal=ordinal,
        maintenance=maintenance,
    )


# --------------------------------------------------------------------------
# Writes


def _actor_name(actor: Actor) -> str:
    if actor is None or not getattr(actor, "is_authenticated", False):
        return "system"
    return str(actor.get_username())


def _audit(
    actor: Actor,
    action: AuditAction,
    obj: IPAlias | Node,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> AuditEntry:
    authenticated = actor is not None and getattr(actor, "is_authenticated", False)
    return AuditEntry.objects.create(
        actor=actor if authenticated else None,
        actor_name=_actor_name(actor),
        action=action,
        object_type=obj._meta.model_name or "",
        object_id=str(obj.pk),
        object_repr=str(obj)[:255],
        before=before,
        after=after,
    )


def _apply_on_commit(node_names: Iterable[str]) -> None:
    """After the commit, tell each node to converge to its desired state, and the
    status hubs that the desired state changed."""
    transaction.on_commit(dispatch.announce_desired_change, robust=True)
    names = sorted(set(node_names))
    if not names:
        return
    transaction.on_commit(lambda: dispatch.dispatch_apply(names), robust=True)


def _node_names(alias: IPAlias) -> set[str]:
    return {p.node.name for p in alias.priorities.all()}


def _reload(alias_pk: int) -> IPAlias:
    return aliases_with_relations().get(pk=alias_pk)


def _new_alias_version(actor: Actor, alias_pk: int, before: dict[str, Any], **changes: Any) -> None:
    """Store ``changes`` and one more version for an alias whose desired state changed
    through another object (a node's new ordinal, a deleted node), and audit it.

    The database does the increment, so a concurrent ``update_alias`` (which locks
    the row) cannot lose it.
    """
    IPAlias.objects.filter(pk=alias_pk).update(
        version=F("version") + 1, updated_at=timezone.now(), **changes
    )
    refreshed = _reload(alias_pk)
    _audit(actor, AuditAction.UPDATE, refreshed, before, alias_snapshot(refreshed))


def _integrity_error() -> ValidationError:
    # Two concurrent writes both passed validation; the database refused the second.
    return ValidationError({"__all__": ["Another change got there first; please try again."]})


def _store_alias(alias: IPAlias, change: AliasChange) -> None:
    alias.vhid = change.vhid
    alias.interface = change.interface
    alias.advbase = change.advbase
    alias.enabled = change.enabled
    alias.preempt = change.preempt
    alias.description = change.description
    if change.password is not None:
        alias.set_password(change.password)
    alias.save()
    # Replace the children: simple, and inside the transaction nothing sees the gap.
    alias.addresses.all().delete()
    alias.priorities.all().delete()
    AliasAddress.objects.bulk_create(
        AliasAddress(alias=alias, ip=str(i.ip), prefixlen=i.network.prefixlen)
        for i in change.addresses
    )
    AliasPriority.objects.bulk_create(
        AliasPriority(alias=alias, node=node, priority=tier) for node, tier in change.priorities
    )


def _with_password_mark(snapshot: dict[str, Any], changed: bool) -> dict[str, Any]:
    if changed:
        snapshot["password"] = choices.PASSWORD_CHANGED_MARK
    return snapshot


def create_alias(actor: Actor, data: Mapping[str, Any]) -> IPAlias:
    """Create an alias with its addresses and priorities."""
    try:
        with transaction.atomic():
            change = validate_alias(data)
            alias = IPAlias(version=1)
            _store_alias(alias, change)
            alias = _reload(alias.pk)
            after = _with_password_mark(alias_snapshot(alias), True)
            _audit(actor, AuditAction.CREATE, alias, None, after)
            _apply_on_commit(_node_names(alias))
    except IntegrityError as exc:
        raise _integrity_error() from exc
    return alias


def _alias_unchanged(alias: IPAlias, change: AliasChange) -> bool:
    """Would storing ``change`` leave ``alias`` (prefetched) exactly as it is?"""
    if change.password is not None and change.password != alias.get_password():
        return False
    fields = ("vhid", "interface", "advbase", "enabled", "preempt", "description")
    return (
        all(getattr(alias, name) == getattr(change, name) for name in fields)
        and [a.address for a in alias.addresses.all()]
        == [f"{i.ip}/{i.network.prefixlen}" for i in change.addresses]
        and {(p.node_id, p.priority) for p in alias.priorities.all()}
        == {(node.pk, tier) for node, tier in change.priorities}
    )


def update_alias(
    actor: Actor, alias: IPAlias, data: Mapping[str, Any], partial: bool = False
) -> IPAlias:
    """Change an alias. With ``partial`` only the keys given change. A blank
    or missing password keeps the stored one."""
    try:
        with transaction.atomic():
            # Lock the row so two concurrent updates cannot both take version N+1.
            locked = IPAlias.objects.select_for_update().get(pk=alias.pk)
            current = _reload(locked.pk)
            before = alias_snapshot(current)
            old_nodes = _node_names(current)
            change = validate_alias(data, current, partial=partial)
            if _alias_unchanged(current, change):
                # Nothing to store, audit or apply: no "version N -> N+1" noise.
                return current
            current.version = locked.version + 1
            _store_alias(current, change)
            updated = _reload(current.pk)
            after = _with_password_mark(alias_snapshot(updated), change.password is not None)
            _audit(actor, AuditAction.UPDATE, updated, before, after)
            _apply_on_commit(old_nodes | _node_names(updated))
    except IntegrityError as exc:
        raise _integrity_error() from exc
    return updated


def delete_alias(actor: Actor, alias: IPAlias) -> None:
    """Delete an alias; its nodes drop its addresses on their next apply."""
    with transaction.atomic():
        current = _reload(alias.pk)
        before = alias_snapshot(current)
        nodes = _node_names(current)
        _audit(actor, AuditAction.DELETE, current, before, None)
        current.delete()
        _apply_on_commit(nodes)


def create_node(actor: Actor, data: Mapping[str, Any]) -> Node:
    """Add a node (at most nine)."""
    try:
        with transaction.atomic():
            change = validate_node(data)
            node = Node.objects.create(**change.__dict__)
            _audit(actor, AuditAction.CREATE, node, None, node_snapshot(node))
            _apply_on_commit([node.name])
    except IntegrityError as exc:
        raise _integrity_error() from exc
    return node


def update_node(actor: Actor, node: Node, data: Mapping[str, Any], partial: bool = False) -> Node:
    """Change a node. A new ordinal changes its derived advskews: each alias it
    belongs to gets a new version and an audit entry of its own."""
    try:
        with transaction.atomic():
            current = Node.objects.select_for_update().get(pk=node.pk)
            before = node_snapshot(current)
            change = validate_node(data, current, partial=partial)
            if change.__dict__ == before:
                return current  # nothing changed: no audit entry, no apply
            # A new ordinal changes the node's advskews, so the desired state of
            # its aliases changes too. Their snapshots are taken before the save,
            # while they still hold the old advskews.
            affected: list[IPAlias] = []
            if change.ordinal != before["ordinal"]:
                affected = list(aliases_with_relations().filter(priorities__node=current))
            alias_befores = {alias.pk: alias_snapshot(alias) for alias in affected}
            for key, value in change.__dict__.items():
                setattr(current, key, value)
            current.save()
            _audit(actor, AuditAction.UPDATE, current, before, node_snapshot(current))
            for alias in affected:
                _new_alias_version(actor, alias.pk, alias_befores[alias.pk])
            _apply_on_commit({before["name"], current.name})
    except IntegrityError as exc:
        raise _integrity_error() from exc
    return current


def delete_node(actor: Actor, node: Node, force: bool = False) -> None:
    """Delete a node. If aliases use it, ``force`` must say so: its priorities
    go with it, a lost Primary passes to the remaining member with the lowest
    advskew that is not in maintenance (to the lowest advskew of all only when
    every remaining member is in maintenance), and an alias left with no node
    is disabled."""
    with transaction.atomic():
        current = Node.objects.select_for_update().get(pk=node.pk)
        users = list(aliases_with_relations().filter(priorities__node=current).distinct())
        if users and not force:
            names = ", ".join(a.label for a in users)
            count = f"{len(users)} alias" if len(users) == 1 else f"{len(users)} aliases"
            raise ValidationError(
                {
                    "force": [
                        f"Node {current.name} is used by {count} ({names}); "
                        "confirm to delete it together with its priorities."
                    ]
                }
            )
        nodes_to_tell = {current.name}
        for alias in users:
            before = alias_snapshot(alias)
            remaining = [p for p in alias.priorities.all() if p.node_id != current.pk]
            nodes_to_tell |= {p.node.name for p in remaining}
            AliasPriority.objects.filter(alias=alias, node=current).delete()
            if remaining and not any(p.priority == Priority.PRIMARY for p in remaining):
                heir = min(remaining, key=lambda p: (p.node.maintenance, p.advskew))
                heir.priority = Priority.PRIMARY
                heir.save(update_fields=["priority"])
            # An alias left with no member is disabled.
            _new_alias_version(actor, alias.pk, before, **({} if remaining else {"enabled": False}))
        _checks_lose_node(actor, current)
        _audit(actor, AuditAction.DELETE, current, node_snapshot(current), None)
        current.delete()
        _apply_on_commit(nodes_to_tell)


# ---- transition history: what the engines report, not an administrator's change,
# so no audit entry and no apply task; written here all the same (DESIGN rule 4).
class TransitionData(TypedDict):
    vhid: int
    interface: str
    from_state: str
    to_state: str
    reason: str
    source: str
    at: datetime.datetime


def record_transitions(node_name: str, rows: Sequence[TransitionData]) -> bool:
    """Store the engine's transitions of ``node_name``; False (nothing stored) when
    the node is not in the database: it was deleted, and its history goes with it."""
    node = Node.objects.filter(name=node_name).first()
    if node is None:
        return False
    Transition.objects.bulk_create(Transition(node=node, **row) for row in rows)
    return True


def prune_transitions(days: int) -> int:
    """Delete the transitions older than ``days``; returns how many went."""
    cutoff = timezone.now() - datetime.timedelta(days=days)
    deleted, _ = Transition.objects.filter(at__lt=cutoff).delete()
    return deleted


# --------------------------------------------------------------------------
# Health checks (issue 10): desired state, validated, audited and applied to the
# nodes like the aliases. Each node runs the enabled checks whose scope names it
# (``desired_checks``, part of ``desired_node``); every write tells the nodes of
# the old and the new scope to apply.
#
#     CheckData = {
#         "name": "smtp-25",            # required; 1..40 of a-z 0-9 - _ ("health:<name>")
#         "kind": "smtp",               # required; smtp, tcp, http, disk or command
#         "host": "",                   # smtp/tcp/http: blank = the node itself
#         "port": 0,                    # smtp/tcp/http: 0 = the kind's (smtp 25, http 80);
#                                       # tcp needs one
#         "path": "/health",            # http: URL path (default "/"); disk: absolute path
#         "expect_status": 200,         # http: 100..599
#         "min_free_percent": 10,       # disk: 1..99
#         "argv": ["/usr/local/bin/queue-ok", "500"],  # command: absolute program, args
#         "starttls": False,            # smtp
#         "interval_ms": 2000,          # 200..3600000
#         "timeout_ms": 1000,           # 50..interval - 1
#         "rise": 2, "fall": 3,         # 1..10
#         "weight": 240,                # 1..240, the demotion while failing
#         "boot_needs_rise": False,     # boot gating: rise passes (True) or one (False)
#         "scope": "all",               # "all" or "nodes"
#         "nodes": ["node1"],           # scope "nodes" only: at least one node
#         "enabled": True,
#     }
#
# Missing on create: the default; missing on update (partial or not): kept, except
# that a new kind starts its own fields (host, port, path, ...) from their defaults.
# A field the kind does not use, given with a value other than its default, is
# refused ("Port applies to smtp, tcp and http checks only.").


class CheckData(TypedDict, total=False):
    name: str
    kind: str
    host: str
    port: int
    path: str
    expect_status: int
    min_free_percent: int
    argv: list[str]
    starttls: bool
    interval_ms: int
    timeout_ms: int
    rise: int
    fall: int
    weight: int
    boot_needs_rise: bool
    scope: str
    nodes: list[str]
    enabled: bool


CHECK_TYPE = "healthcheck"
CHECK_REQUIRED = ("name", "kind")
# The fields only some kinds use, with the value they have when unused.
CHECK_KIND_DEFAULTS: dict[str, Any] = {
    "host": "",
    "port": 0,
    "path": "",
    "expect_status": choices.HTTP_STATUS_DEFAULT,
    "min_free_percent": choices.FREE_PERCENT_DEFAULT,
    "argv": [],
    "starttls": False,
}
CHECK_DEFAULTS: dict[str, Any] = {
    **CHECK_KIND_DEFAULTS,
    "interval_ms": choices.CHECK_INTERVAL_MS_DEFAULT,
    "timeout_ms": choices.CHECK_TIMEOUT_MS_DEFAULT,
    "rise": choices.CHECK_RISE_DEFAULT,
    "fall": choices.CHECK_FALL_DEFAULT,
    "weight": choices.CHECK_WEIGHT_DEFAULT,
    "boot_needs_rise": False,
    "scope": choices.CheckScope.ALL.value,
    "nodes": [],
    "enabled": True,
}
CheckKind = choices.CheckKind
# Which of CHECK_KIND_DEFAULTS each kind uses.
CHECK_KIND_FIELDS: dict[str, frozenset[str]] = {
    CheckKind.SMTP: frozenset({"host", "port", "starttls"}),
    CheckKind.TCP: frozenset({"host", "port"}),
    CheckKind.HTTP: frozenset({"host", "port", "path", "expect_status"}),
    CheckKind.DISK: frozenset({"path", "min_free_percent"}),
    CheckKind.COMMAND: frozenset({"argv"}),
}
LABELS.update(
    {
        "kind": "Kind",
        "host": "Host",
        "port": "Port",
        "path": "Path",
        "expect_status": "Expected status",
        "min_free_percent": "Minimum free percent",
        "argv": "Command",
        "starttls": "STARTTLS",
        "interval_ms": "Interval",
        "timeout_ms": "Timeout",
        "rise": "Rise",
        "fall": "Fall",
        "weight": "Weight",
        "boot_needs_rise": "Boot gating",
        "scope": "Scope",
        "nodes": "Nodes",
    }
)
CHANGE_REFUSED = "Your role cannot change the configuration."

__all__ += [
    "CheckData",
    "check_form_data",
    "check_node_names",
    "check_snapshot",
    "check_spec",
    "checks_with_nodes",
    "create_check",
    "delete_check",
    "desired_checks",
    "only_kind_fields",
    "update_check",
    "validate_check",
]


def only_kind_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` without the fields its kind does not use: what a form that shows
    every kind's fields passes on, so that a value left in another kind's field
    (an http check's expected status, after switching it to disk) is not refused
    as "applies to http checks only"."""
    used = CHECK_KIND_FIELDS.get(str(data.get("kind")), frozenset(CHECK_KIND_DEFAULTS))
    return {
        key: value for key, value in data.items() if key not in CHECK_KIND_DEFAULTS or key in used
    }


def checks_with_nodes() -> QuerySet[HealthCheck]:
    """Every health check with its chosen nodes prefetched (two queries)."""
    return HealthCheck.objects.prefetch_related("nodes")


def _chosen_nodes(check: HealthCheck) -> list[Node]:
    return sorted(check.nodes.all(), key=lambda node: node.ordinal)


def check_form_data(check: HealthCheck) -> CheckData:
    """The CheckData of ``check``, for edit forms and the audit log."""
    return {
        "name": check.name,
        "kind": check.kind,
        "host": check.host,
        "port": check.port,
        "path": check.path,
        "expect_status": check.expect_status,
        "min_free_percent": check.min_free_percent,
        "argv": list(check.argv),
        "starttls": check.starttls,
        "interval_ms": check.interval_ms,
        "timeout_ms": check.timeout_ms,
        "rise": check.rise,
        "fall": check.fall,
        "weight": check.weight,
        "boot_needs_rise": check.boot_needs_rise,
        "scope": check.scope,
        "nodes": [node.name for node in _chosen_nodes(check)],
        "enabled": check.enabled,
    }


def check_snapshot(check: HealthCheck) -> dict[str, Any]:
    """The audit log's picture of a check."""
    data: dict[str, Any] = dict(check_form_data(check))
    data["version"] = check.version
    return data


def check_node_names(check: HealthCheck) -> set[str]:
    """The nodes whose desired state includes ``check`` (enabled or not): every
    node for the scope "all", else the chosen ones."""
    if check.scope == choices.CheckScope.ALL:
        return set(Node.objects.values_list("name", flat=True))
    return {node.name for node in check.nodes.all()}


def check_spec(check: HealthCheck) -> CheckSpec:
    """What a node runs for ``check`` (cluster.checks). The port is resolved to the
    kind's default here; the host stays blank for "the node itself", which the
    node resolves to its own address."""
    return CheckSpec(
        name=check.name,
        kind=check.kind,
        host=check.host,
        port=check.effective_port,
        path=check.path,
        expect_status=check.expect_status,
        min_free_percent=check.min_free_percent,
        argv=tuple(str(item) for item in check.argv),
        starttls=check.starttls,
        interval_ms=check.interval_ms,
        timeout_ms=check.timeout_ms,
        rise=check.rise,
        fall=check.fall,
        weight=check.weight,
        boot_needs_rise=check.boot_needs_rise,
        check_id=check.pk,
        version=check.version,
    )


def desired_checks(node_name: str) -> tuple[CheckSpec, ...]:
    """The enabled checks ``node_name`` runs, by name: scope "all", or it is chosen."""
    found = (
        HealthCheck.objects.filter(enabled=True)
        .filter(Q(scope=choices.CheckScope.ALL) | Q(nodes__name=node_name))
        .distinct()
        .order_by("name")
    )
    return tuple(check_spec(check) for check in found)


@dataclass
class CheckChange:
    """A validated health check: what the write will store."""

    name: str
    kind: str
    host: str
    port: int
    path: str
    expect_status: int
    min_free_percent: int
    argv: list[str]
    starttls: bool
    interval_ms: int
    timeout_ms: int
    rise: int
    fall: int
    weight: int
    boot_needs_rise: bool
    scope: str
    enabled: bool
    nodes: list[Node] = field(default_factory=list)

    def as_data(self) -> dict[str, Any]:
        """The CheckData this change stores (``check_form_data`` of the result)."""
        data = {key: value for key, value in self.__dict__.items() if key != "nodes"}
        data["nodes"] = [node.name for node in sorted(self.nodes, key=lambda n: n.ordinal)]
        return data


def _kinds_using(key: str) -> str:
    kinds = [kind for kind in CheckKind.values if key in CHECK_KIND_FIELDS[kind]]
    return kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " and " + kinds[-1]


def _unused_given(data: Mapping[str, Any], key: str) -> bool:
    """Does ``data`` give ``key`` a value other than its unused default?"""
    if key not in data or data[key] is None:
        return False
    value, default = data[key], CHECK_KIND_DEFAULTS[key]
    if isinstance(value, str) and not value.strip():
        return False
    if isinstance(default, bool):
        return parse_flag(value) is not default
    if isinstance(default, int):
        try:
            return int(str(value).strip()) != default
        except ValueError:
            return True
    if isinstance(default, list):
        return bool(value != [])
    return bool(value != default)


def _clean_check_host(merged: Mapping[str, Any], errors: _Errors) -> str:
    value = merged.get("host", "")
    if not isinstance(value, str):
        errors.add("host", "Host must be text.")
        return ""
    if not value.strip():
        return ""
    try:
        return validators.parse_check_host(value)
    except ValidationError as exc:
        errors.add("host", exc)
        return ""


def _clean_check_port(merged: Mapping[str, Any], kind: str, errors: _Errors) -> int:
    value = _as_int(merged.get("port", 0), "port", errors)
    if value is None:
        return 0
    if value == 0 and kind == CheckKind.TCP:
        errors.add("port", "A tcp check needs a port: 1 to 65535.")
    elif value != 0:
        errors.check("port", validators.validate_port, value)
    return value


def _clean_check_path(merged: Mapping[str, Any], kind: str, errors: _Errors) -> str:
    value = merged.get("path", "")
    if not isinstance(value, str):
        errors.add("path", "Path must be text.")
        return ""
    text = value.strip()
    limit = choices.CHECK_PATH_MAX_LENGTH
    if len(text) > limit:
        errors.add("path", f"Path must be at most {limit} characters (got {len(text)}).")
        return ""
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        errors.add("path", "Path must not contain control characters.")
        return ""
    if kind == CheckKind.HTTP:
        if not text:
            return choices.HTTP_PATH_DEFAULT
        if not text.startswith("/") or any(char.isspace() for char in text):
            errors.add("path", "An http path starts with '/' and has no spaces, e.g. /health.")
    elif kind == CheckKind.DISK:
        if not text:
            errors.add("path", "A disk check needs a path: give an absolute path, e.g. /var.")
        elif not text.startswith("/"):
            errors.add("path", "A disk check's path must be absolute, e.g. /var/spool.")
    return text


def _clean_argv(merged: Mapping[str, Any], kind: str, errors: _Errors) -> list[str]:
    value = merged.get("argv", [])
    if not isinstance(value, list | tuple):
        errors.add("argv", "Command must be a list: the program, then each argument.")
        return []
    if not all(isinstance(item, str) for item in value):
        errors.add("argv", "Each item of the command must be text.")
        return []
    argv = list(value)
    limit = choices.ARGV_MAX_ITEMS
    if len(argv) > limit:
        errors.add("argv", f"A command has at most {limit} items (got {len(argv)}).")
        return []
    if kind == CheckKind.COMMAND:
        if not argv or not argv[0].strip():
            errors.add("argv", "A command check needs a program: give an absolute path.")
            return []
        if not argv[0].startswith("/"):
            errors.add(
                "argv",
                f"The program must be an absolute path (got {argv[0][:80]!r}): it runs "
                "without a shell, which would look it up.",
            )
    if any("\x00" in item for item in argv):
        errors.add("argv", "The command must not contain a NUL character.")
    longest = max((len(item) for item in argv), default=0)
    if longest > choices.ARGV_ITEM_MAX_LENGTH:
        errors.add(
            "argv",
            f"Each item of the command is at most {choices.ARGV_ITEM_MAX_LENGTH} characters.",
        )
    return argv


def _clean_scope(
    data: Mapping[str, Any], merged: Mapping[str, Any], errors: _Errors
) -> tuple[str, list[Node]]:
    scope = merged.get("scope")
    if scope not in choices.CheckScope.values:
        errors.add("scope", "Scope must be all (every node) or nodes (the chosen ones).")
        return "", []
    value = merged.get("nodes", [])
    if scope == choices.CheckScope.ALL:
        if data.get("nodes"):
            errors.add("nodes", "Nodes are chosen only with the scope nodes: set it too.")
        return scope, []
    if not isinstance(value, list | tuple) or not all(isinstance(n, str) for n in value):
        errors.add("nodes", "Nodes must be a list of node names.")
        return scope, []
    # No node's name has a NUL (validate_node_name): keep such a name out of the query.
    found = Node.objects.in_bulk([n for n in value if "\x00" not in n], field_name="name")
    chosen: list[Node] = []
    for name in value:
        if name in {node.name for node in chosen}:
            errors.add("nodes", f"{name} appears more than once.")
        elif name not in found:
            errors.add("nodes", f"There is no node named '{name}'.")
        else:
            chosen.append(found[name])
    if not value:
        errors.add("nodes", "Choose at least one node, or the scope all.")
    return scope, chosen


def validate_check(
    data: Mapping[str, Any], check: HealthCheck | None = None, partial: bool = False
) -> CheckChange:
    """Check ``data`` against every rule; raise ValidationError(dict) or return it cleaned.

    ``check`` is the check being updated (None on create). With ``partial``,
    missing keys keep the check's current values.
    """
    errors = _Errors()
    stored = dict(check_form_data(check)) if check is not None else None
    current = stored if partial else None
    merged = _merged(data, current, _defaults(CHECK_DEFAULTS, stored), CHECK_REQUIRED, errors)

    name = _text(merged, "name", validators.validate_check_name, errors)
    if name is not None:
        others = HealthCheck.objects.filter(name=name)
        if check is not None:
            others = others.exclude(pk=check.pk)
        if others.exists():
            errors.add("name", f"A check named {name} already exists.")

    kind = merged.get("kind")
    if "kind" in merged and kind not in CheckKind.values:
        kinds = ", ".join(CheckKind.values)
        errors.add("kind", f"Kind must be one of {kinds}.")
    kind = kind if kind in CheckKind.values else ""
    used = CHECK_KIND_FIELDS.get(kind, frozenset())
    if stored is not None and kind and kind != stored["kind"]:
        # A new kind starts its own fields afresh: an http check's path is no
        # disk check's path.
        for key, default in CHECK_KIND_DEFAULTS.items():
            if data.get(key) is None:
                merged[key] = default
    for key in CHECK_KIND_DEFAULTS:
        if kind and key not in used and _unused_given(data, key):
            errors.add(key, f"{LABELS[key]} applies to {_kinds_using(key)} checks only.")

    values: dict[str, Any] = dict(CHECK_KIND_DEFAULTS)
    if "host" in used:
        values["host"] = _clean_check_host(merged, errors)
    if "port" in used:
        values["port"] = _clean_check_port(merged, kind, errors)
    if "path" in used:
        values["path"] = _clean_check_path(merged, kind, errors)
    if "expect_status" in used:
        values["expect_status"] = _number(
            merged, "expect_status", validators.validate_expect_status, errors
        )
    if "min_free_percent" in used:
        values["min_free_percent"] = _number(
            merged, "min_free_percent", validators.validate_min_free_percent, errors
        )
    if "argv" in used:
        values["argv"] = _clean_argv(merged, kind, errors)
    if "starttls" in used:
        values["starttls"] = _flag(merged, "starttls", errors)

    interval = _number(merged, "interval_ms", validators.validate_interval_ms, errors)
    timeout = _number(merged, "timeout_ms", validators.validate_timeout_ms, errors)
    if interval is not None and timeout is not None and timeout >= interval:
        errors.add(
            "timeout_ms",
            f"Timeout must be shorter than the interval ({timeout} ms is not below "
            f"{interval} ms): the next run would start before this one gives up.",
        )
    rise = _number(merged, "rise", validators.validate_rise, errors)
    fall = _number(merged, "fall", validators.validate_fall, errors)
    weight = _number(merged, "weight", validators.validate_weight, errors)
    boot_needs_rise = _flag(merged, "boot_needs_rise", errors)
    enabled = _flag(merged, "enabled", errors)
    scope, nodes = _clean_scope(data, merged, errors)

    if check is None and HealthCheck.objects.count() >= choices.CHECKS_MAX:
        errors.add("__all__", f"A cluster has at most {choices.CHECKS_MAX} health checks.")
    errors.raise_if_any()
    # All are set whenever no error was recorded.
    assert name is not None
    assert interval is not None
    assert timeout is not None
    assert rise is not None
    assert fall is not None
    assert weight is not None
    return CheckChange(
        name=name,
        kind=kind,
        interval_ms=interval,
        timeout_ms=timeout,
        rise=rise,
        fall=fall,
        weight=weight,
        boot_needs_rise=boot_needs_rise,
        scope=scope,
        enabled=enabled,
        nodes=nodes,
        **values,
    )


def _check_change_rights(actor: Actor) -> None:
    """A person changing checks needs the administrator role (the pages, the API
    and the admin ask first; this is the last word). None is the system."""
    if actor is not None and not access.can_change(actor):
        raise PermissionDenied(CHANGE_REFUSED)


def _audit_check(
    actor: Actor,
    action: AuditAction,
    check: HealthCheck,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> AuditEntry:
    return _audit_entry(actor, action, CHECK_TYPE, str(check.pk), check.name, before, after)


def _store_check(check: HealthCheck, change: CheckChange) -> None:
    for key, value in change.__dict__.items():
        if key != "nodes":
            setattr(check, key, value)
    check.save()
    check.nodes.set(change.nodes)


def _reload_check(pk: int) -> HealthCheck:
    return checks_with_nodes().get(pk=pk)


def create_check(actor: Actor, data: Mapping[str, Any]) -> HealthCheck:
    """Create a health check; the nodes in its scope start running it."""
    _check_change_rights(actor)
    try:
        with transaction.atomic():
            change = validate_check(data)
            check = HealthCheck(version=1)
            _store_check(check, change)
            check = _reload_check(check.pk)
            _audit_check(actor, AuditAction.CREATE, check, None, check_snapshot(check))
            _apply_on_commit(check_node_names(check))
    except IntegrityError as exc:
        raise _integrity_error() from exc
    return check


def update_check(
    actor: Actor, check: HealthCheck, data: Mapping[str, Any], partial: bool = False
) -> HealthCheck:
    """Change a check. With ``partial`` only the keys given change. The nodes of
    the old and of the new scope apply (a node left out stops running it)."""
    _check_change_rights(actor)
    try:
        with transaction.atomic():
            # Lock the row so two concurrent updates cannot both take version N+1.
            locked = HealthCheck.objects.select_for_update().get(pk=check.pk)
            current = _reload_check(locked.pk)
            before = check_snapshot(current)
            old_nodes = check_node_names(current)
            change = validate_check(data, current, partial=partial)
            if change.as_data() == check_form_data(current):
                # Nothing to store, audit or apply: no "version N -> N+1" noise.
                return current
            current.version = locked.version + 1
            _store_check(current, change)
            updated = _reload_check(current.pk)
            _audit_check(actor, AuditAction.UPDATE, updated, before, check_snapshot(updated))
            _apply_on_commit(old_nodes | check_node_names(updated))
    except IntegrityError as exc:
        raise _integrity_error() from exc
    return updated


def delete_check(actor: Actor, check: HealthCheck) -> None:
    """Delete a check; its nodes stop running it and drop its demotion source."""
    _check_change_rights(actor)
    with transaction.atomic():
        current = _reload_check(check.pk)
        nodes = check_node_names(current)
        _audit_check(actor, AuditAction.DELETE, current, check_snapshot(current), None)
        current.delete()
        _apply_on_commit(nodes)


def _checks_lose_node(actor: Actor, node: Node) -> None:
    """``node`` is being deleted: each check chosen for it gets a new version
    without it, audited; one left with no node is disabled, as an alias is."""
    for check in checks_with_nodes().filter(scope=choices.CheckScope.NODES, nodes=node):
        before = check_snapshot(check)
        remaining = [other for other in check.nodes.all() if other.pk != node.pk]
        check.nodes.remove(node)
        changes: dict[str, Any] = {} if remaining else {"enabled": False}
        HealthCheck.objects.filter(pk=check.pk).update(
            version=F("version") + 1, updated_at=timezone.now(), **changes
        )
        refreshed = _reload_check(check.pk)
        _audit_check(actor, AuditAction.UPDATE, refreshed, before, check_snapshot(refreshed))


# --------------------------------------------------------------------------
# Accounts, API tokens and lockouts (the admin, the token endpoint, cluster.lockout).
# Audited like every other change; a password never appears in an entry, only the
# "(changed)" mark, and a token only by its first characters.

ACCOUNT_TYPE = "user"
TOKEN_TYPE = "token"
# Enough of a token to tell it from the user's others; far too little to use it.
TOKEN_SHOWN_CHARS = 8
ACCOUNT_TEXT = {"username": "User name", "first_name": "First name", "last_name": "Last name"}


class AccountData(TypedDict, total=False):
    username: str
    first_name: str
    last_name: str
    email: str
    is_active: bool
    role: str  # "" (no role), "support" or "administrator"
    is_superuser: bool  # only a superuser may set it
    password: str  # required on create; "" or missing on update keeps the password


@dataclass
class AccountChange:
    """Validated account values; ``password`` is None when it stays as it is."""

    username: str
    first_name: str
    last_name: str
    email: str
    is_active: bool
    role: choices.Role | None
    is_superuser: bool
    password: str | None


def _group_role(user: Any) -> choices.Role | None:
    """The role the user's groups give (what the admin edits); a superuser's too."""
    names = set(user.groups.values_list("name", flat=True))
    for found in (choices.Role.ADMINISTRATOR, choices.Role.SUPPORT):
        if found.value in names:
            return found
    return None


def account_snapshot(user: Any) -> dict[str, Any]:
    found = _group_role(user)
    return {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_active": user.is_active,
        "is_superuser": user.is_superuser,
        "role": found.value if found is not None else "",
    }


def _audit_entry(
    actor: Actor,
    action: AuditAction,
    object_type: str,
    object_id: str,
    object_repr: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    actor_name: str | None = None,
) -> AuditEntry:
    authenticated = actor is not None and getattr(actor, "is_authenticated", False)
    return AuditEntry.objects.create(
        actor=actor if authenticated else None,
        actor_name=(actor_name or _actor_name(actor))[:150],
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr[:255],
        before=before,
        after=after,
    )


def _check_account_rights(actor: Actor, user: Any | None, superuser: bool) -> None:
    """Administrators manage accounts; only a superuser touches or makes a superuser.

    ``superuser`` is what the change asks for. Raises PermissionDenied (403), not a
    field error: the admin never offers these changes to whoever may not make them.
    """
    if not access.can_change(actor):
        raise PermissionDenied("Your role cannot manage accounts.")
    if getattr(actor, "is_superuser", False):
        return
    if user is not None and user.is_superuser:
        raise PermissionDenied("Only a superuser may change a superuser's account.")
    if superuser:
        raise PermissionDenied("Only a superuser may make a superuser.")


def validate_account(
    actor: Actor, data: Mapping[str, Any], user: Any | None = None
) -> AccountChange:
    """Check ``data`` for a new account (``user`` None) or a change of ``user``.

    Missing keys keep the stored value (on create: blank, active, no role). The
    password must pass ``AUTH_PASSWORD_VALIDATORS``, with the account's new name
    and e-mail address in view.
    """
    from django.contrib.auth import get_user_model, password_validation
    from django.core.validators import validate_email

    user_model = get_user_model()
    stored = account_snapshot(user) if user is not None else {}
    merged: dict[str, Any] = {
        "first_name": "",
        "last_name": "",
        "email": "",
        "is_active": True,
        "role": "",
        "is_superuser": False,
        **stored,
        **{key: value for key, value in data.items() if value is not None},
    }
    _check_account_rights(actor, user, bool(merged["is_superuser"]))
    errors = _Errors()
    texts: dict[str, str] = {}
    for key, label in {**ACCOUNT_TEXT, "email": "E-mail address"}.items():
        value = str(merged.get(key, "")).strip()
        if len(value) > 150:
            errors.add(key, f"{label} must be at most 150 characters.")
        texts[key] = value
    username = texts["username"]
    if not username:
        errors.add("username", "User name is required.")
    else:
        errors.check("username", user_model.username_validator, username)
        others = user_model.objects.filter(username=username)
        if user is not None:
            others = others.exclude(pk=user.pk)
        if others.exists():
            errors.add("username", f"User name {username} is already taken.")
    if texts["email"]:
        errors.check("email", validate_email, texts["email"])
    role: choices.Role | None = None
    if merged["role"]:
        try:
            role = choices.Role(merged["role"])
        except ValueError:
            errors.add("role", "Role must be support, administrator or none.")
    password = data.get("password") or None
    if password is None and user is None:
        errors.add("password", "Password is required.")
    elif password is not None:
        candidate = user_model(
            username=username,
            email=texts["email"],
            first_name=texts["first_name"],
            last_name=texts["last_name"],
        )
        errors.check(
            "password", lambda p: password_validation.validate_password(p, candidate), password
        )
    errors.raise_if_any()
    return AccountChange(
        username=username,
        first_name=texts["first_name"],
        last_name=texts["last_name"],
        email=texts["email"],
        is_active=bool(merged["is_active"]),
        role=role,
        is_superuser=bool(merged["is_superuser"]),
        password=password,
    )


def _store_account(user: Any, change: AccountChange) -> None:
    user.username = change.username
    user.first_name = change.first_name
    user.last_name = change.last_name
    user.email = change.email
    user.is_active = change.is_active
    user.is_superuser = change.is_superuser
    if change.password is not None:
        user.set_password(change.password)
    user.save()
    access.set_role(user, change.role)


def create_account(actor: Actor, data: Mapping[str, Any]) -> Any:
    """Create a user with a password and a role (support, administrator or none)."""
    from django.contrib.auth import get_user_model

    try:
        with transaction.atomic():
            change = validate_account(actor, data)
            user = get_user_model()()
            _store_account(user, change)
            after = _with_password_mark(account_snapshot(user), True)
            _audit_entry(
                actor, AuditAction.CREATE, ACCOUNT_TYPE, str(user.pk), user.username, None, after
            )
    except IntegrityError as exc:
        raise _integrity_error() from exc
    return user


def update_account(actor: Actor, user: Any, data: Mapping[str, Any]) -> Any:
    """Change a user's names, e-mail, role, active flag or password (blank: kept)."""
    user_model = type(user)
    try:
        with transaction.atomic():
            current = user_model.objects.select_for_update().get(pk=user.pk)
            before = account_snapshot(current)
            change = validate_account(actor, data, current)
            _store_account(current, change)
            after = _with_password_mark(account_snapshot(current), change.password is not None)
            if after != before:
                _audit_entry(
                    actor,
                    AuditAction.UPDATE,
                    ACCOUNT_TYPE,
                    str(current.pk),
                    current.username,
                    before,
                    after,
                )
    except IntegrityError as exc:
        raise _integrity_error() from exc
    return current


def delete_account(actor: Actor, user: Any) -> None:
    """Delete a user; its API tokens go with it, its audit entries keep its name."""
    with transaction.atomic():
        current = type(user).objects.select_for_update().get(pk=user.pk)
        _check_account_rights(actor, current, False)
        before = account_snapshot(current)
        _audit_entry(
            actor, AuditAction.DELETE, ACCOUNT_TYPE, str(current.pk), current.username, before, None
        )
        current.delete()


def change_own_password(user: Any, password: str) -> None:
    """Any user with a role, support included, may change its own password: it is
    the user's own credential, not the cluster's configuration (README, Roles).
    The caller has checked the old password; the validators run here again."""
    from django.contrib.auth import password_validation

    password_validation.validate_password(password, user)
    with transaction.atomic():
        user.set_password(password)
        user.save(update_fields=["password"])
        mark = {"password": choices.PASSWORD_CHANGED_MARK}
        _audit_entry(user, AuditAction.UPDATE, ACCOUNT_TYPE, str(user.pk), user.username, {}, mark)


def token_label(token: Any) -> str:
    return f"{token.token_key[:TOKEN_SHOWN_CHARS]}… of {token.user.get_username()}"


def grant_token(actor: Actor, user: Any) -> str:
    """A new API token for ``user``; returns the key, which is stored only as a
    digest and so can never be shown again. The user's expired tokens are purged
    here rather than on every request (cluster.api.auth.TokenAuthentication)."""
    from knox.models import AuthToken

    with transaction.atomic():
        AuthToken.objects.filter(user=user, expiry__lt=timezone.now()).delete()
        token, key = AuthToken.objects.create(user=user)
        after = {
            "user": user.get_username(),
            "expiry": token.expiry.isoformat() if token.expiry else None,
        }
        _audit_entry(
            actor,
            AuditAction.CREATE,
            TOKEN_TYPE,
            token.token_key[:TOKEN_SHOWN_CHARS],
            token_label(token),
            None,
            after,
        )
    return str(key)


def revoke_token(actor: Actor, token: Any) -> None:
    """Delete an API token: the user's own, or anyone's for a superuser."""
    if token.user_id != getattr(actor, "pk", None) and not getattr(actor, "is_superuser", False):
        raise PermissionDenied("Only a superuser may revoke another user's token.")
    with transaction.atomic():
        before = {"user": token.user.get_username(), "created": token.created.isoformat()}
        _audit_entry(
            actor,
            AuditAction.DELETE,
            TOKEN_TYPE,
            token.token_key[:TOKEN_SHOWN_CHARS],
            token_label(token),
            before,
            None,
        )
        token.delete()


def record_lockout(
    username: str | None, address: str | None, failures: int, via: str, until: datetime.datetime
) -> AuditEntry:
    """Audit a lockout: ``failures`` failed logins for ``username`` from ``address``
    (through the page at ``via``) lock that pair out until ``until``. The "who" is
    the address: whoever typed the passwords is not known to be the user."""
    from django.contrib.auth import get_user_model

    name = username or ""
    user = get_user_model().objects.filter(username=name).first() if name else None
    after = {
        "address": address or "",
        "failures": failures,
        "via": via,
        "locked until": until.isoformat(timespec="seconds"),
    }
    return _audit_entry(
        None,
        AuditAction.LOCKOUT,
        ACCOUNT_TYPE,
        str(user.pk) if user is not None else "",
        name or "(no user name)",
        None,
        after,
        actor_name=address or "unknown address",
    )
