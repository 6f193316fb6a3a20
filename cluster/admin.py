"""The Django admin for support staff and administrators.

Writes go through ``cluster.services`` exactly as the pages and the API do:
the forms validate by calling the service's validator (so the messages are
the same), ``save_form`` calls the service (which writes the audit entry and
sends the apply tasks), and deletes call the service too. Support users have
the view permissions only; ``cluster.access`` is asked as well, so a role
without the right to change never gets a change button.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from cluster import access, services
from cluster.forms import NOT_A_MEMBER, PRIORITY_CHOICES
from cluster.models import AliasAddress, AliasPriority, AuditEntry, IPAlias, Node, Transition

PRIORITY_PREFIX = "priority__"


class ServiceField(forms.CharField):
    """A field that hands its text to the service unjudged (blank becomes None).

    Django's own field checks ("This field is required.", "Enter a whole
    number.", "Ensure this value is greater than or equal to 0.") would word
    the rules differently from the page and the API, and would stop the
    service from reporting every problem at once. ``required`` only marks the
    label in bold; the service says what is missing.
    """

    def __init__(self, *, number: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("widget", forms.NumberInput() if number else forms.TextInput())
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> str | None:
        text = super().to_python(value)
        return text if text else None

    def validate(self, value: Any) -> None:
        """The service validates."""


class ServiceForm(forms.ModelForm):  # type: ignore[type-arg]
    """A ModelForm whose checks are the service's, with the service's messages."""

    # The browser must not refuse a blank field before the service can word it.
    use_required_attribute = False

    def _post_clean(self) -> None:
        # Skip ModelForm's own full_clean/validate_unique: their generic
        # messages would differ from the pages' and the API's.
        try:
            self.validate_with_service()
        except ValidationError as exc:
            for key, messages in exc.message_dict.items():
                self.add_error(key if key in self.fields else None, messages)

    def validate_with_service(self) -> None:
        raise NotImplementedError


class AliasAdminForm(ServiceForm):
    vhid = ServiceField(label="VHID", number=True, help_text="1 to 255, unique on its interface.")
    interface = ServiceField()
    advbase = ServiceField(number=True, help_text="Seconds between advertisements, 1 to 255.")
    description = ServiceField(required=False)
    password = ServiceField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="At most 19 bytes. Leave blank to keep the current password.",
    )
    addresses = ServiceField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One address with prefix per line, e.g. 192.0.2.100/24.",
    )

    class Meta:
        model = IPAlias
        fields = ["vhid", "interface", "advbase", "enabled", "preempt", "description"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is None:
            # On add the password is required (the service says so when blank).
            password = self.fields["password"]
            password.required = True
            password.help_text = "At most 19 bytes. It is never shown again."
        if self.instance.pk is not None and not self.is_bound:
            data = services.alias_form_data(self.instance)
            self.initial["addresses"] = "\n".join(data["addresses"])
            for item in data["priorities"]:
                self.initial[PRIORITY_PREFIX + item["node"]] = item["priority"]

    def service_data(self) -> services.AliasData:
        data = self.cleaned_data
        priorities: list[services.PriorityData] = [
            {"node": key.removeprefix(PRIORITY_PREFIX), "priority": value}
            for key, value in data.items()
            if key.startswith(PRIORITY_PREFIX) and value != NOT_A_MEMBER
        ]
        # Text as typed (None when blank): the service parses and judges it.
        values: dict[str, Any] = {
            "vhid": data.get("vhid"),
            "interface": data.get("interface"),
            "advbase": data.get("advbase"),
            "password": data.get("password", ""),
            "addresses": [a for a in re.split(r"[\s,]+", data.get("addresses") or "") if a],
            "priorities": priorities,
            "enabled": data.get("enabled", False),
            "preempt": data.get("preempt", False),
            "description": data.get("description") or "",
        }
        return values  # type: ignore[return-value]

    def validate_with_service(self) -> None:
        alias = self.instance if self.instance.pk is not None else None
        services.validate_alias(self.service_data(), alias)


class NodeAdminForm(ServiceForm):
    name = ServiceField(help_text="Lowercase letters, digits and hyphens.")
    address = ServiceField(help_text="The node's own IPv4 or IPv6 address, without prefix.")
    interface = ServiceField()
    ordinal = ServiceField(number=True, help_text="1 to 9, unique.")

    class Meta:
        model = Node
        fields = ["name", "address", "interface", "ordinal", "maintenance"]

    def service_data(self) -> services.NodeData:
        return {key: self.cleaned_data.get(key) for key in self.Meta.fields}  # type: ignore[return-value]

    def validate_with_service(self) -> None:
        node = self.instance if self.instance.pk is not None else None
        services.validate_node(self.service_data(), node)


class RoleAwareAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Changes need both the Django permission and the administrator role, and
    go through a service: ``save_form`` calls it, so the admin's own saves are off."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return access.can_change(request.user) and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return access.can_change(request.user) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return access.can_change(request.user) and super().has_delete_permission(request, obj)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        # The addresses and priorities that go with an alias or a node are the
        # service's to delete; nobody has (or needs) delete rights on them here.
        deleted, counts, _perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, set(), protected

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Saved already by ``save_form`` through the service."""

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """The service saved the related rows too."""


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Rows written only by the services or the engine: nobody edits them here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(IPAlias)
class IPAliasAdmin(RoleAwareAdmin):
    form = AliasAdminForm
    list_display = [
        "vhid",
        "interface",
        "address_list",
        "priority_list",
        "advbase",
        "enabled",
        "preempt",
        "description",
        "version",
        "updated_at",
    ]
    list_display_links = ["vhid", "interface"]
    list_filter = ["interface", "enabled", "preempt", "priorities__node"]
    search_fields = ["description", "interface", "=vhid", "addresses__ip"]
    readonly_fields = ["version", "address_list", "priority_list"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[IPAlias]:
        return services.aliases_with_relations()

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if not self.has_change_permission(request, obj):
            # View-only: the model's fields and the rendered lists, no password.
            return [
                (
                    None,
                    {
                        "fields": [
                            "vhid",
                            "interface",
                            "advbase",
                            "enabled",
                            "preempt",
                            "description",
                            "address_list",
                            "priority_list",
                            "version",
                        ]
                    },
                )
            ]
        nodes = [PRIORITY_PREFIX + n.name for n in Node.objects.order_by("ordinal")]
        return [
            (None, {"fields": ["vhid", "interface", "advbase", "password", "description"]}),
            ("Addresses", {"fields": ["addresses"]}),
            (
                "Priorities",
                {
                    "fields": nodes,
                    "description": "Exactly one Primary. The advskew is derived from the tier "
                    "and the node's ordinal.",
                },
            ),
            ("Options", {"fields": ["enabled", "preempt"]}),
        ]

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        # One priority select per node, declared on a class built per request.
        declared = {
            PRIORITY_PREFIX + node.name: forms.ChoiceField(
                label=f"{node.name} (ordinal {node.ordinal})",
                choices=PRIORITY_CHOICES,
                required=False,
            )
            for node in Node.objects.order_by("ordinal")
        }
        kwargs["form"] = type("AliasAdminForm", (AliasAdminForm,), declared)
        return super().get_form(request, obj, change, **kwargs)

    @admin.display(description="addresses")
    def address_list(self, alias: IPAlias) -> str:
        return ", ".join(a.address for a in alias.addresses.all())

    @admin.display(description="priorities (advskew)")
    def priority_list(self, alias: IPAlias) -> str:
        return ", ".join(
            f"{p.node.name} {p.get_priority_display()} ({p.advskew})"
            for p in sorted(alias.priorities.all(), key=lambda p: p.node.ordinal)
        )

    def save_form(self, request: HttpRequest, form: Any, change: bool) -> IPAlias:
        if change:
            return services.update_alias(request.user, form.instance, form.service_data())
        return services.create_alias(request.user, form.service_data())

    def delete_model(self, request: HttpRequest, obj: IPAlias) -> None:
        services.delete_alias(request.user, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[IPAlias]) -> None:
        for alias in queryset:
            services.delete_alias(request.user, alias)


@admin.register(Node)
class NodeAdmin(RoleAwareAdmin):
    form = NodeAdminForm
    list_display = ["name", "ordinal", "address", "interface", "maintenance", "updated_at"]
    list_filter = ["interface", "maintenance"]
    search_fields = ["name", "address", "interface"]

    def save_form(self, request: HttpRequest, form: Any, change: bool) -> Node:
        if change:
            return services.update_node(request.user, form.instance, form.service_data())
        return services.create_node(request.user, form.service_data())

    def delete_model(self, request: HttpRequest, obj: Node) -> None:
        # The admin's confirmation page lists the priorities that go with the
        # node: confirming it is the explicit "yes" the service asks for.
        services.delete_node(request.user, obj, force=True)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        for node in queryset:
            services.delete_node(request.user, node, force=True)


@admin.register(AliasAddress)
class AliasAddressAdmin(ReadOnlyAdmin):
    list_display = ["address", "alias"]
    search_fields = ["ip", "alias__description"]
    list_select_related = ["alias"]


@admin.register(AliasPriority)
class AliasPriorityAdmin(ReadOnlyAdmin):
    list_display = ["alias", "node", "priority", "advskew"]
    list_filter = ["priority", "node"]
    list_select_related = ["alias", "node"]


@admin.register(Transition)
class TransitionAdmin(ReadOnlyAdmin):
    list_display = ["at", "node", "vhid", "interface", "from_state", "to_state", "reason"]
    list_filter = ["node", "to_state", "reason"]
    search_fields = ["=vhid", "node__name"]
    date_hierarchy = "at"
    list_select_related = ["node"]


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["at", "actor_name", "action", "object_type", "object_repr"]
    list_filter = ["action", "object_type"]
    search_fields = ["actor_name", "object_repr"]
    date_hierarchy = "at"
