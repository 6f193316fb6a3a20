"""The Django admin for support staff and administrators.

Writes go through ``cluster.services`` exactly as the pages and the API do:
the forms validate by calling the service's validator (so the messages are
the same), ``save_form`` calls the service (which writes the audit entry and
sends the apply tasks), and deletes call the service too. Support users have
the view permissions only; ``cluster.access`` is asked as well, so a role
without the right to change never gets a change button.

Users (administrators manage them, never a superuser), API tokens (each user
its own, a superuser all) and one's own password go through the services too.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.forms import AdminPasswordChangeForm
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import password_validators_help_text_html
from django.contrib.auth.views import PasswordChangeView
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseBase
from django.urls import reverse
from knox.models import AuthToken

from cluster import access, choices, services
from cluster.choices import PASSWORD_MAX_BYTES, Role
from cluster.forms import ADVBASE_HELP, NOT_A_MEMBER, PRIORITY_CHOICES, without_nul_check
from cluster.models import (
    AliasAddress,
    AliasPriority,
    AuditEntry,
    HealthCheck,
    IPAlias,
    Node,
    Transition,
)

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
        # A NUL too is the service's to refuse, in the page's and the API's words.
        without_nul_check(self)

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
    advbase = ServiceField(number=True, help_text=ADVBASE_HELP)
    description = ServiceField(required=False)
    password = ServiceField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=f"At most {PASSWORD_MAX_BYTES} bytes. Leave blank to keep the current password.",
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
            password.help_text = f"At most {PASSWORD_MAX_BYTES} bytes. It is never shown again."
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
        if obj is not None:
            # The saved priorities with each node's advert interval and master-down time.
            nodes.append("priority_list")
        return [
            (None, {"fields": ["vhid", "interface", "advbase", "password", "description"]}),
            ("Addresses", {"fields": ["addresses"]}),
            (
                "Priorities",
                {
                    "fields": nodes,
                    "description": "Exactly one Primary. The advskew is derived from the tier, "
                    "the node's ordinal and the advbase (0 adds 4); the list of IP aliases "
                    "shows each node's advert interval and master-down time.",
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

    @admin.display(description="priorities (advskew: timing)")
    def priority_list(self, alias: IPAlias) -> str:
        return ", ".join(
            f"{p.node.name} {p.get_priority_display()} ({p.advskew}: {p.timing})"
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
    list_display = ["alias", "node", "priority", "advskew", "timing"]
    list_filter = ["priority", "node"]
    list_select_related = ["alias", "node"]

    @admin.display(description="advert interval and master-down time")
    def timing(self, priority: AliasPriority) -> str:
        return str(priority.timing)


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


# --------------------------------------------------------------------------
# Accounts: administrators manage users and their role, never a superuser.

ROLE_CHOICES = [("", "No role"), *Role.choices]


class AccountAdminForm(ServiceForm):
    """A user's names, e-mail, role, active flag and (new) password.

    ``services.validate_account`` judges everything, Django's password
    validators included; the superuser flag is a field only for a superuser.
    """

    actor: Any = None  # the user making the change, set per request by get_form

    username = ServiceField(
        label="User name", help_text="Letters, digits and @/./+/-/_ only; at most 150."
    )
    first_name = ServiceField(label="First name", required=False)
    last_name = ServiceField(label="Last name", required=False)
    email = ServiceField(label="E-mail address", required=False)
    role = forms.ChoiceField(
        choices=ROLE_CHOICES,
        required=False,
        help_text="Support reads everything and changes nothing; an administrator "
        "changes the cluster and manages accounts.",
    )
    password = ServiceField(
        label="New password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave blank to keep the current password.",
    )
    password_again = ServiceField(
        label="New password again",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
    )

    class Meta:
        model = User
        fields = ["username", "first_name", "last_name", "email", "is_active", "is_superuser"]
        help_texts = {
            "is_active": "Untick to disable the account: it can no longer log in, "
            "and its API tokens stop working.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not getattr(self.actor, "is_superuser", False):
            self.fields.pop("is_superuser", None)
        if self.instance.pk is None:
            self.fields["password"].required = True
            self.fields["password"].label = "Password"
            self.fields["password"].help_text = password_validators_help_text_html()
            self.fields["password_again"].label = "Password again"
        elif not self.is_bound:
            found = services.account_snapshot(self.instance)["role"]
            self.initial["role"] = found

    def service_data(self) -> services.AccountData:
        data = self.cleaned_data
        values: dict[str, Any] = {
            key: data.get(key) or ""
            for key in ("username", "first_name", "last_name", "email", "role", "password")
        }
        values["is_active"] = bool(data.get("is_active"))
        if "is_superuser" in self.fields:
            values["is_superuser"] = bool(data.get("is_superuser"))
        return values  # type: ignore[return-value]

    def validate_with_service(self) -> None:
        password = self.cleaned_data.get("password") or ""
        if password != (self.cleaned_data.get("password_again") or ""):
            self.add_error("password_again", "The two passwords differ.")
        user = self.instance if self.instance.pk is not None else None
        services.validate_account(self.actor, self.service_data(), user)


def _protects_superuser(request: HttpRequest, obj: Any) -> bool:
    """Only a superuser changes or deletes a superuser's account."""
    return (
        obj is not None
        and getattr(obj, "is_superuser", False)
        and not getattr(request.user, "is_superuser", False)
    )


admin.site.unregister(User)


@admin.register(User)
class AccountAdmin(RoleAwareAdmin):
    form = AccountAdminForm
    list_display = [
        "username",
        "role",
        "is_active",
        "is_superuser",
        "email",
        "last_login",
        "date_joined",
    ]
    list_filter = ["is_active", "is_superuser", "groups"]
    search_fields = ["username", "first_name", "last_name", "email"]
    ordering = ["username"]
    readonly_fields = ["role", "last_login", "date_joined"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return super().get_queryset(request).prefetch_related("groups")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not _protects_superuser(request, obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not _protects_superuser(request, obj) and super().has_delete_permission(request, obj)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        dates = ("Dates", {"fields": ["last_login", "date_joined"]})
        if obj is not None and not self.has_change_permission(request, obj):
            names = ["username", "first_name", "last_name", "email"]
            access_fields = ["role", "is_active", "is_superuser"]
            return [(None, {"fields": names}), ("Access", {"fields": access_fields}), dates]
        access_fields = ["role", "is_active"]
        if getattr(request.user, "is_superuser", False):
            access_fields.append("is_superuser")
        sets = [
            (None, {"fields": ["username", "password", "password_again"]}),
            ("Personal", {"fields": ["first_name", "last_name", "email"]}),
            ("Access", {"fields": access_fields}),
        ]
        return sets if obj is None else [*sets, dates]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # "role" is a form field where the user may be changed, a display otherwise.
        if obj is not None and not self.has_change_permission(request, obj):
            return ["role", "last_login", "date_joined"]
        return ["last_login", "date_joined"]

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        kwargs["form"] = type("AccountAdminForm", (AccountAdminForm,), {"actor": request.user})
        return super().get_form(request, obj, change, **kwargs)

    @admin.display(description="role")
    def role(self, user: User) -> str:
        found = {g.name for g in user.groups.all()}
        for choice in (Role.ADMINISTRATOR, Role.SUPPORT):
            if choice.value in found:
                return str(choice.label)
        return "Superuser" if user.is_superuser else "—"

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        deleted, counts, _perms, protected = super().get_deleted_objects(objs, request)
        # "Delete selected" asks for the permission without an object: refuse the
        # whole batch when it holds a superuser the actor may not delete.
        perms_needed = (
            {"superuser accounts"}
            if any(_protects_superuser(request, user) for user in objs)
            else set()
        )
        return deleted, counts, perms_needed, protected

    def save_form(self, request: HttpRequest, form: Any, change: bool) -> User:
        if change:
            user: User = services.update_account(request.user, form.instance, form.service_data())
        else:
            user = services.create_account(request.user, form.service_data())
        return user

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        services.delete_account(request.user, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            services.delete_account(request.user, user)


# --------------------------------------------------------------------------
# API tokens: stored as digests; each user sees and revokes its own, a superuser all.

admin.site.unregister(AuthToken)


@admin.register(AuthToken)
class TokenAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Tokens are made by ``POST /api/v1/auth/token/`` or ``manage.py
    create_api_token``, which show the key once; here they are listed (by their
    first characters) and revoked. Access follows the role and the token's owner
    rather than Django permissions, so support may revoke its own tokens too."""

    list_display = ["key_start", "user", "created", "expiry"]
    list_display_links = None
    list_filter = ["user"]
    ordering = ["-created"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuthToken]:
        tokens = super().get_queryset(request).select_related("user")
        if getattr(request.user, "is_superuser", False):
            return tokens
        return tokens.filter(user_id=request.user.pk)

    def get_list_filter(self, request: HttpRequest) -> Any:
        return self.list_filter if getattr(request.user, "is_superuser", False) else []

    def _own_or_superuser(self, request: HttpRequest, obj: Any) -> bool:
        return access.can_view(request.user) and (
            obj is None
            or obj.user_id == request.user.pk
            or getattr(request.user, "is_superuser", False)
        )

    def has_module_permission(self, request: HttpRequest) -> bool:
        return access.can_view(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._own_or_superuser(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._own_or_superuser(request, obj)

    @admin.display(description="key starts with")
    def key_start(self, token: AuthToken) -> str:
        return str(token.token_key)[: services.TOKEN_SHOWN_CHARS] + "…"

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        # Named as the list names them, not by knox's digest.
        tokens = list(objs)
        if any(not self._own_or_superuser(request, token) for token in tokens):
            return [], {}, {"other users' tokens"}, []
        labels = [f"Token {services.token_label(token)}" for token in tokens]
        return labels, {"tokens": len(labels)}, set(), []

    def delete_model(self, request: HttpRequest, obj: AuthToken) -> None:
        services.revoke_token(request.user, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AuthToken]) -> None:
        for token in queryset.select_related("user"):
            services.revoke_token(request.user, token)


# --------------------------------------------------------------------------
# One's own password: every role may change it (README, Roles), and it is audited.


class OwnPasswordChangeForm(AdminPasswordChangeForm):
    def save(self, commit: bool = True) -> Any:
        services.change_own_password(self.user, self.cleaned_data["new_password1"])
        return self.user


def own_password_change(request: HttpRequest) -> HttpResponseBase:
    """The admin's "Change password" page, saving through the service.

    Mounted at the admin's own URL, ahead of the admin (appliance/urls.py).
    """
    request.current_app = admin.site.name
    view = PasswordChangeView.as_view(
        form_class=OwnPasswordChangeForm,
        success_url=reverse("admin:password_change_done"),
        extra_context=admin.site.each_context(request),
    )
    return view(request)


# --------------------------------------------------------------------------
# Health checks (issue 10): written through services.create_check / update_check /
# delete_check like the aliases; support has the view permission only.


def argv_lines(text: str | None) -> list[str]:
    """A command written one item per line (the program first): no shell quoting
    to get wrong. Blank lines are dropped; the rest is kept as typed."""
    return [line for line in (text or "").splitlines() if line.strip()]


class HealthCheckAdminForm(ServiceForm):
    name = ServiceField(help_text="Lowercase letters, digits, '-' and '_'; at most 40.")
    host = ServiceField(
        required=False, help_text="smtp, tcp, http: IP address or host name; blank: the node."
    )
    port = ServiceField(
        required=False, number=True, help_text="smtp, tcp, http: blank or 0: smtp 25, http 80."
    )
    path = ServiceField(
        required=False, help_text="http: the URL path (default /); disk: an absolute path."
    )
    expect_status = ServiceField(
        label="Expected status", required=False, number=True, help_text="http: 100 to 599."
    )
    min_free_percent = ServiceField(
        label="Minimum free percent", required=False, number=True, help_text="disk: 1 to 99."
    )
    argv = ServiceField(
        label="Command",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="command: the program's absolute path on the first line, then one "
        "argument per line. No shell runs it.",
    )
    interval_ms = ServiceField(label="Interval (ms)", number=True, help_text="200 to 3600000.")
    timeout_ms = ServiceField(
        label="Timeout (ms)", number=True, help_text="At least 50, shorter than the interval."
    )
    rise = ServiceField(number=True, help_text="Passes in a row that clear it, 1 to 10.")
    fall = ServiceField(number=True, help_text="Failures in a row that demote, 1 to 10.")
    weight = ServiceField(number=True, help_text="The demotion while failing, 1 to 240.")
    nodes = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="With the scope “Chosen nodes”: the nodes that run the check.",
    )

    class Meta:
        model = HealthCheck
        fields = [
            "name", "kind", "host", "port", "path", "expect_status", "min_free_percent",
            "argv", "starttls", "interval_ms", "timeout_ms", "rise", "fall", "weight",
            "boot_needs_rise", "scope", "nodes", "enabled",
        ]  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = list(Node.objects.order_by("ordinal").values_list("name", flat=True))
        self.fields["nodes"].choices = [(name, name) for name in names]  # type: ignore[attr-defined]
        if self.instance.pk is not None and not self.is_bound:
            data = services.check_form_data(self.instance)
            self.initial["argv"] = "\n".join(data["argv"])
            self.initial["nodes"] = data["nodes"]

    def service_data(self) -> dict[str, Any]:
        data = self.cleaned_data
        values = {key: data.get(key) for key in self.Meta.fields}
        values["argv"] = argv_lines(data.get("argv"))
        values["nodes"] = list(data.get("nodes") or [])
        for key in ("host", "path"):
            values[key] = values[key] or ""
        return services.only_kind_fields(values)

    def validate_with_service(self) -> None:
        check = self.instance if self.instance.pk is not None else None
        services.validate_check(self.service_data(), check)


@admin.register(HealthCheck)
class HealthCheckAdmin(RoleAwareAdmin):
    form = HealthCheckAdminForm
    list_display = [
        "name",
        "kind",
        "target",
        "scope_list",
        "interval_ms",
        "timeout_ms",
        "rise",
        "fall",
        "weight",
        "enabled",
        "version",
        "updated_at",
    ]
    list_filter = ["kind", "enabled", "scope", "nodes"]
    search_fields = ["name", "host", "path"]
    readonly_fields = ["version"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "enabled"]}),
        (
            "Target",
            {
                "fields": [
                    "host",
                    "port",
                    "starttls",
                    "path",
                    "expect_status",
                    "min_free_percent",
                    "argv",
                ],
                "description": "Each kind uses some of these: smtp host, port, STARTTLS; "
                "tcp host, port; http host, port, path, expected status; disk path, minimum "
                "free percent; command the command. The others are not used, nor stored.",
            },
        ),
        (
            "Timing",
            {"fields": ["interval_ms", "timeout_ms", "rise", "fall", "weight", "boot_needs_rise"]},
        ),
        ("Scope", {"fields": ["scope", "nodes"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[HealthCheck]:
        return services.checks_with_nodes()

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None and not self.has_change_permission(request, obj):
            return [*self.fieldsets, ("Version", {"fields": ["version"]})]
        return self.fieldsets

    @admin.display(description="target")
    def target(self, check: HealthCheck) -> str:
        return check.target

    @admin.display(description="scope")
    def scope_list(self, check: HealthCheck) -> str:
        if check.scope == choices.CheckScope.ALL:
            return str(choices.CheckScope.ALL.label)
        return ", ".join(services.check_form_data(check)["nodes"]) or "(none)"

    def save_form(self, request: HttpRequest, form: Any, change: bool) -> HealthCheck:
        if change:
            return services.update_check(request.user, form.instance, form.service_data())
        return services.create_check(request.user, form.service_data())

    def delete_model(self, request: HttpRequest, obj: HealthCheck) -> None:
        services.delete_check(request.user, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[HealthCheck]) -> None:
        for check in queryset:
            services.delete_check(request.user, check)
