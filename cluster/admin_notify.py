"""The admin's view of events, channels and deliveries (imported by cluster/admin.py).

Channels are written through ``cluster.notify`` like everywhere else (its rules and
messages, the audit entry, the secret encrypted and never shown); events,
deliveries and their attempts are the notifier's records: read-only.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from cluster import notify
from cluster.admin import ReadOnlyAdmin, RoleAwareAdmin, ServiceField, ServiceForm
from cluster.choices import EventKind
from cluster.models import ClusterEvent, Delivery, DeliveryAttempt, NotificationChannel


class ChannelAdminForm(ServiceForm):
    name = ServiceField()
    url = ServiceField(label="URL", required=False, help_text="Webhook: the http(s) URL.")
    recipients = ServiceField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="E-mail: one address per line.",
    )
    secret = ServiceField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Webhook: the HMAC-SHA256 key. Blank keeps the current one.",
    )
    events = forms.MultipleChoiceField(
        required=False,
        choices=[(k, label) for k, label in EventKind.choices if k in notify.EVENT_KINDS],
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every kind.",
    )

    class Meta:
        model = NotificationChannel
        fields = ["name", "kind", "url", "enabled"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.initial["recipients"] = "\n".join(self.instance.recipients)
            self.initial["events"] = list(self.instance.events)

    def service_data(self) -> dict[str, Any]:
        data = {key: self.cleaned_data.get(key) for key in ("name", "kind", "url", "enabled")}
        data["url"] = data["url"] or ""
        lines = (self.cleaned_data.get("recipients") or "").splitlines()
        data["recipients"] = [line.strip() for line in lines if line.strip()]
        data["events"] = list(self.cleaned_data.get("events") or [])
        if self.cleaned_data.get("secret"):
            data["secret"] = self.cleaned_data["secret"]
        return data

    def validate_with_service(self) -> None:
        channel = self.instance if self.instance.pk is not None else None
        notify.validate_channel(self.service_data(), channel)


class AttemptInline(admin.TabularInline):  # type: ignore[type-arg]
    model = DeliveryAttempt
    fields = ["at", "number", "notifier", "ok", "result", "duration_ms"]
    readonly_fields = ["at", "number", "notifier", "ok", "result", "duration_ms"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(NotificationChannel)
class NotificationChannelAdmin(RoleAwareAdmin):
    form = ChannelAdminForm
    list_display = ["name", "kind", "url", "enabled", "updated_at"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "url"]

    def save_form(self, request: HttpRequest, form: Any, change: bool) -> NotificationChannel:
        if change:
            return notify.update_channel(request.user, form.instance, form.service_data())
        return notify.create_channel(request.user, form.service_data())

    def delete_model(self, request: HttpRequest, obj: NotificationChannel) -> None:
        notify.delete_channel(request.user, obj)

    def delete_queryset(
        self, request: HttpRequest, queryset: QuerySet[NotificationChannel]
    ) -> None:
        for channel in queryset:
            notify.delete_channel(request.user, channel)


@admin.register(ClusterEvent)
class ClusterEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "kind", "message", "dedup_key"]
    list_filter = ["kind"]
    search_fields = ["message", "node", "subject"]
    date_hierarchy = "at"


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "event", "channel", "status", "attempts", "next_at", "last_error"]
    list_filter = ["status", "channel"]
    list_select_related = ["event", "channel"]
    inlines = [AttemptInline]


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(ReadOnlyAdmin):
    list_display = ["at", "delivery", "number", "notifier", "ok", "result", "duration_ms"]
    list_filter = ["ok"]
    list_select_related = ["delivery"]
