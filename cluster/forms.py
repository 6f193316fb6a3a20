"""The console's forms.

They only carry the posted text to ``cluster.services`` in the shape it
takes (``AliasData`` / ``NodeData``): the addresses box becomes a list, the
per-node selects become the priorities, a blank field is left out. Every rule,
"is required" included, is checked once by the service, and its messages are
put back next to the fields with ``add_service_errors``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.validators import ProhibitNullCharactersValidator

from cluster import choices, services
from cluster.advskew import Timing, derive_advskew
from cluster.models import Node
from cluster.services import AliasData, NodeData, PriorityData

NOT_A_MEMBER = ""
PRIORITY_CHOICES = [(NOT_A_MEMBER, "— not a member —"), *choices.Priority.choices]
# The page's and the admin's words for advbase, with the trade-off of 0.
ADVBASE_HELP = (
    f"Seconds between advertisements, {choices.ADVBASE_MIN} to {choices.ADVBASE_MAX}. "
    "A backup takes over after about three of them. 0 is sub-second (OpenBSD): each node "
    "advertises every advskew/256 s (the Primary every 15.6 ms) and failover takes about "
    "0.2 s, but every sub-second master sends tens of adverts a second and every member "
    "wakes for each (about 0.5 ms of CPU each in Python), so a node may take part in at most "
    f"{choices.SUBSECOND_ALIASES_PER_NODE_MAX} enabled such aliases; leave a 2-core node "
    "under load some margin."
)


def add_service_errors(form: forms.Form, error: ValidationError) -> None:
    """Show a service's ``ValidationError`` on ``form``, each message by its field.

    A key the form has no field for becomes a non-field error, so no message
    is ever lost.
    """
    for key, messages in error_items(error):
        form.add_error(key if key in form.fields else None, messages)


def error_items(error: ValidationError) -> Iterable[tuple[str, list[str]]]:
    """The (field, messages) pairs of a ValidationError, whatever its shape."""
    if not hasattr(error, "error_dict"):
        return [(NON_FIELD_ERRORS, list(error.messages))]
    return [
        (key, [message for item in items for message in item.messages])
        for key, items in error.error_dict.items()
    ]


def without_nul_check(field: forms.CharField) -> forms.CharField:
    """``field`` without Django's own "Null characters are not allowed.": the
    service refuses a NUL in the fields where it matters (description,
    password) in the words the API and the admin use too."""
    field.validators = [
        v for v in field.validators if not isinstance(v, ProhibitNullCharactersValidator)
    ]
    return field


def text_field(help_text: str, label: str | None = None, number: bool = False) -> forms.CharField:
    """A field that passes its text on as typed; the service judges it."""
    widget = forms.NumberInput() if number else forms.TextInput()
    return forms.CharField(required=False, label=label, help_text=help_text, widget=widget)


def blank_to_none(value: str) -> str | None:
    """Leave a blank field out, so the service says that it is required."""
    return value if value.strip() else None


class AliasForm(forms.Form):
    """An IP alias (one CARP virtual host) with one priority select per node."""

    vhid = text_field(
        f"Virtual host ID, {choices.VHID_MIN} to {choices.VHID_MAX}, unique on its interface.",
        label="VHID",
        number=True,
    )
    interface = text_field("The network interface that carries the addresses, e.g. eth0.")
    advbase = text_field(ADVBASE_HELP, label="Advbase", number=True)
    advbase.initial = choices.ADVBASE_DEFAULT
    password = without_nul_check(
        forms.CharField(
            required=False,
            strip=False,
            widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
            help_text=(
                f"Shared secret of the virtual host, at most {choices.PASSWORD_MAX_BYTES} bytes. "
                "It is never shown again."
            ),
        )
    )
    addresses = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "data-autogrow": "", "spellcheck": "false"}),
        help_text="One address per line, each with its prefix: 192.0.2.100/24 or 2001:db8::100/64.",
    )
    enabled = forms.BooleanField(
        required=False, initial=True, help_text="Advertise this virtual host."
    )
    preempt = forms.BooleanField(
        required=False,
        initial=True,
        help_text="The node with the best priority takes the addresses back when it returns.",
    )
    description = without_nul_check(forms.CharField(required=False))
    # Not an input: it carries the service's priority messages to the page,
    # shown under the per-node selects that make up the priorities.
    priorities = forms.Field(required=False, disabled=True, label="Node priorities")

    # The stability rule of advbase 0, for the page's note (cluster.choices).
    SUBSECOND_LIMIT = choices.SUBSECOND_ALIASES_PER_NODE_MAX
    # Marked with * on the page; the service is what checks them.
    REQUIRED: tuple[str, ...] = ("vhid", "interface", "password", "addresses", "priorities")
    MAIN_FIELDS = (
        "vhid",
        "interface",
        "advbase",
        "password",
        "addresses",
        "enabled",
        "preempt",
        "description",
    )

    def __init__(
        self, *args: Any, nodes: Sequence[Node], editing: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.nodes = list(nodes)
        if editing:
            self.REQUIRED = tuple(name for name in self.REQUIRED if name != "password")
            self.fields["password"].help_text = (
                f"At most {choices.PASSWORD_MAX_BYTES} bytes. Leave blank to keep the "
                "current password, which is never shown."
            )
        for node in self.nodes:
            field = forms.ChoiceField(label=node.name, choices=PRIORITY_CHOICES, required=False)
            field.node = node  # type: ignore[attr-defined]
            self.fields[self.priority_field_name(node)] = field

    @classmethod
    def initial_from(cls, data: AliasData, nodes: Sequence[Node]) -> dict[str, Any]:
        """The form's starting values from the service's ``alias_form_data``."""
        initial: dict[str, Any] = {name: data.get(name) for name in cls.MAIN_FIELDS}
        initial["addresses"] = "\n".join(data.get("addresses", []))
        by_name = {item["node"]: item["priority"] for item in data.get("priorities", [])}
        for node in nodes:
            initial[cls.priority_field_name(node)] = by_name.get(node.name, NOT_A_MEMBER)
        return initial

    @staticmethod
    def priority_field_name(node: Node) -> str:
        return f"priority_{node.pk}"

    def main_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.MAIN_FIELDS]

    def priority_fields(self) -> list[forms.BoundField]:
        return [self[self.priority_field_name(node)] for node in self.nodes]

    def priority_rows(self) -> list[tuple[forms.BoundField, Timing | None]]:
        """Each node's select with the timing its tier gives under the advbase shown
        (as posted, or as stored); None where either is not (yet) a valid value."""
        try:
            advbase: int | None = int(str(self["advbase"].value()).strip())
        except ValueError:
            advbase = None
        if advbase is not None and not choices.ADVBASE_MIN <= advbase <= choices.ADVBASE_MAX:
            advbase = None
        rows: list[tuple[forms.BoundField, Timing | None]] = []
        for node, field in zip(self.nodes, self.priority_fields(), strict=True):
            tier = field.value()
            timing = None
            if advbase is not None and tier in choices.Priority.values:
                timing = Timing(advbase, derive_advskew(tier, node.ordinal, advbase))
            rows.append((field, timing))
        return rows

    def service_data(self) -> AliasData:
        """The ``AliasData`` for ``services.create_alias`` / ``update_alias``."""
        data = self.cleaned_data
        priorities: list[PriorityData] = [
            {"node": node.name, "priority": data[self.priority_field_name(node)]}
            for node in self.nodes
            if data[self.priority_field_name(node)] != NOT_A_MEMBER
        ]
        values: dict[str, Any] = {
            "vhid": blank_to_none(data["vhid"]),
            "interface": blank_to_none(data["interface"]),
            "advbase": blank_to_none(data["advbase"]),
            # Blank: required on create, "keep the current one" on edit.
            "password": data["password"],
            "addresses": [line.strip() for line in data["addresses"].splitlines() if line.strip()],
            "priorities": priorities,
            "enabled": data["enabled"],
            "preempt": data["preempt"],
            "description": data["description"],
        }
        return values  # type: ignore[return-value]


class NodeForm(forms.Form):
    """A cluster node: one appliance with its own address."""

    name = text_field(
        f"Lowercase letters, digits and hyphens, at most {choices.NODE_NAME_MAX_LENGTH}."
    )
    address = text_field("The node's own IPv4 or IPv6 address, without prefix. Never a VIP.")
    interface = text_field("The interface CARP runs on, e.g. eth0.")
    ordinal = text_field(
        f"{choices.ORDINAL_MIN} to {choices.ORDINAL_MAX}, unique. It orders the nodes within "
        "a tier: the derived advskew grows with it.",
        number=True,
    )
    maintenance = forms.BooleanField(
        required=False, help_text="The node gives up its addresses and takes none."
    )

    REQUIRED = ("name", "address", "interface", "ordinal")

    def service_data(self) -> NodeData:
        """The ``NodeData`` for ``services.create_node`` / ``update_node``."""
        values: dict[str, Any] = {
            name: blank_to_none(value) if isinstance(value, str) else value
            for name, value in self.cleaned_data.items()
        }
        return values  # type: ignore[return-value]


def node_initial(node: Node) -> dict[str, Any]:
    """A node's current values for its edit form."""
    return {name: getattr(node, name) for name in NodeForm.base_fields}


# --------------------------------------------------------------------------
# Health checks (issue 10)


class HealthCheckForm(forms.Form):
    """A health check. Every kind's fields are on the page, grouped; only those
    of the chosen kind go to the service (``services.only_kind_fields``), so a
    value left in another kind's field is neither refused nor stored."""

    name = text_field(
        f"Lowercase letters, digits, '-' and '_', at most {choices.CHECK_NAME_MAX_LENGTH}. "
        "A failing check demotes the node as health:<name>."
    )
    kind = forms.ChoiceField(choices=choices.CheckKind.choices, initial=choices.CheckKind.SMTP)
    enabled = forms.BooleanField(required=False, initial=True, help_text="Run this check.")
    host = text_field("smtp, tcp, http: an IP address or host name. Blank: the node itself.")
    port = text_field(
        "smtp, tcp, http. Blank: smtp 25, http 80; a tcp check needs one.", number=True
    )
    starttls = forms.BooleanField(
        required=False, label="STARTTLS", help_text="smtp: also STARTTLS after EHLO."
    )
    path = text_field("http: the URL path (blank: /). disk: the absolute path to measure.")
    expect_status = text_field("http: the status that passes, 100 to 599.", number=True)
    expect_status.label = "Expected status"
    expect_status.initial = choices.HTTP_STATUS_DEFAULT
    min_free_percent = text_field(
        "disk: passes at or above this much free space, 1 to 99 %.", number=True
    )
    min_free_percent.label = "Minimum free percent"
    min_free_percent.initial = choices.FREE_PERCENT_DEFAULT
    argv = forms.CharField(
        required=False,
        strip=False,
        label="Command",
        widget=forms.Textarea(attrs={"rows": 3, "data-autogrow": "", "spellcheck": "false"}),
        help_text="command: the program's absolute path on the first line, then one argument "
        "per line. No shell runs it; exit status 0 passes.",
    )
    interval_ms = text_field(
        f"How often it runs, {choices.CHECK_INTERVAL_MS_MIN} to {choices.CHECK_INTERVAL_MS_MAX}.",
        label="Interval (ms)",
        number=True,
    )
    interval_ms.initial = choices.CHECK_INTERVAL_MS_DEFAULT
    timeout_ms = text_field(
        f"At least {choices.CHECK_TIMEOUT_MS_MIN} and shorter than the interval; a timeout is a "
        "failure.",
        label="Timeout (ms)",
        number=True,
    )
    timeout_ms.initial = choices.CHECK_TIMEOUT_MS_DEFAULT
    fall = text_field("Failures in a row that demote the node, 1 to 10.", number=True)
    fall.initial = choices.CHECK_FALL_DEFAULT
    rise = text_field("Passes in a row that clear the demotion, 1 to 10.", number=True)
    rise.initial = choices.CHECK_RISE_DEFAULT
    weight = text_field(
        "The demotion while failing, 1 to 240; 240 is a full demotion (the node gives up "
        "every VIP it can).",
        number=True,
    )
    weight.initial = choices.CHECK_WEIGHT_DEFAULT
    boot_needs_rise = forms.BooleanField(
        required=False,
        label="Boot gating",
        help_text="After a start, keep the node demoted until the check has passed rise times "
        "(unticked: once).",
    )
    scope = forms.ChoiceField(
        choices=choices.CheckScope.choices,
        initial=choices.CheckScope.ALL,
        widget=forms.RadioSelect,
    )
    nodes = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="With “Chosen nodes”: the nodes that run the check.",
    )

    REQUIRED: tuple[str, ...] = ("name", "kind")
    GROUPS = (
        ("Check", ("name", "kind", "enabled")),
        (
            "Target",
            ("host", "port", "starttls", "path", "expect_status", "min_free_percent", "argv"),
        ),
        ("Timing and demotion", ("interval_ms", "timeout_ms", "fall", "rise", "weight")),
        ("Boot and scope", ("boot_needs_rise", "scope", "nodes")),
    )

    def __init__(self, *args: Any, nodes: Sequence[Node], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["nodes"].choices = [(n.name, n.name) for n in nodes]  # type: ignore[attr-defined]

    @staticmethod
    def initial_from(data: Mapping[str, Any]) -> dict[str, Any]:
        """The form's starting values from ``services.check_form_data``."""
        initial = dict(data)
        initial["argv"] = "\n".join(data.get("argv", []))
        # 0 is "the kind's default", which a blank field says better.
        initial["port"] = data.get("port") or ""
        return initial

    def groups(self) -> list[tuple[str, list[forms.BoundField]]]:
        return [(title, [self[name] for name in names]) for title, names in self.GROUPS]

    def service_data(self) -> dict[str, Any]:
        """The ``CheckData`` for ``services.create_check`` / ``update_check``."""
        data = self.cleaned_data
        values: dict[str, Any] = {
            name: blank_to_none(value) if isinstance(value, str) else value
            for name, value in data.items()
        }
        # Blank means "none" for these, not "not given".
        values["host"] = data["host"]
        values["path"] = data["path"]
        values["argv"] = [line for line in data["argv"].splitlines() if line.strip()]
        values["nodes"] = list(data["nodes"])
        return services.only_kind_fields(values)
