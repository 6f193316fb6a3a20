"""System → Cluster → Notifications: the channels, their delivery log, "Send test".

Thin like ``cluster.views``: reads with the ORM, writes through ``cluster.notify``
(validation, audit), the support role sees everything and changes nothing.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from cluster import access, choices, notify
from cluster.forms import add_service_errors, error_items
from cluster.models import DeliveryAttempt, NotificationChannel
from cluster.views import change_required, render_confirm_delete, view_required

LOG_ROWS = 50


class ChannelForm(forms.Form):
    """A channel as the page edits it; every rule is the service's."""

    name = forms.CharField(required=False, help_text="How the channel is named in the log.")
    kind = forms.ChoiceField(choices=choices.ChannelKind.choices, initial="webhook")
    url = forms.CharField(
        label="URL",
        required=False,
        help_text="Webhook: the http(s) URL events are POSTed to (JSON, signed).",
    )
    recipients = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="E-mail: one address per line.",
    )
    secret = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=f"Webhook: the HMAC-SHA256 key, {notify.SECRET_MIN_LENGTH} characters or more."
        " Blank keeps the current one. Never shown back.",
    )
    events = forms.MultipleChoiceField(
        required=False,
        choices=[(k, label) for k, label in choices.EventKind.choices if k in notify.EVENT_KINDS],
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every kind.",
    )
    enabled = forms.BooleanField(required=False, initial=True, help_text="Send to this channel.")

    REQUIRED = ("name", "kind")

    def service_data(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        data["recipients"] = [
            line.strip() for line in data["recipients"].splitlines() if line.strip()
        ]
        if data["kind"] == choices.ChannelKind.EMAIL:
            data["url"] = ""
        else:
            data["recipients"] = []
        return data


def _initial(channel: NotificationChannel) -> dict[str, Any]:
    return {
        "name": channel.name,
        "kind": channel.kind,
        "url": channel.url,
        "recipients": "\n".join(channel.recipients),
        "events": list(channel.events),
        "enabled": channel.enabled,
    }


@view_required
def channel_list(request: HttpRequest) -> HttpResponse:
    channels = list(NotificationChannel.objects.order_by("name"))
    log = DeliveryAttempt.objects.select_related("delivery__event", "delivery__channel").order_by(
        "-at", "-id"
    )[:LOG_ROWS]
    context = {
        "page_title": "Notifications",
        "nav": "notifications",
        "channels": channels,
        "log": log,
        "can_change": access.can_change(request.user),
        "kind_labels": dict(choices.EventKind.choices),
    }
    return render(request, "console/notification_list.html", context)


def _form_page(
    request: HttpRequest, form: ChannelForm, channel: NotificationChannel | None
) -> HttpResponse:
    title = f"Edit channel {channel.name}" if channel else "Add notification channel"
    context = {"page_title": title, "nav": "notifications", "form": form, "channel": channel}
    return render(request, "console/notification_form.html", context)


def _save(
    request: HttpRequest, form: ChannelForm, channel: NotificationChannel | None
) -> NotificationChannel | None:
    if request.method != "POST" or not form.is_valid():
        return None
    try:
        if channel is None:
            return notify.create_channel(request.user, form.service_data())
        return notify.update_channel(request.user, channel, form.service_data())
    except ValidationError as error:
        add_service_errors(form, error)
        return None


@change_required
def channel_add(request: HttpRequest) -> HttpResponse:
    form = ChannelForm(request.POST or None)
    saved = _save(request, form, None)
    if saved is not None:
        messages.success(request, f"Added channel {saved.name}.")
        return redirect("console:notification-list")
    return _form_page(request, form, None)


@change_required
def channel_edit(request: HttpRequest, pk: int) -> HttpResponse:
    channel = get_object_or_404(NotificationChannel, pk=pk)
    form = ChannelForm(request.POST or None, initial=_initial(channel))
    saved = _save(request, form, channel)
    if saved is not None:
        messages.success(request, f"Saved channel {saved.name}.")
        return redirect("console:notification-list")
    return _form_page(request, form, channel)


@change_required
@require_http_methods(["GET", "POST"])
def channel_delete(request: HttpRequest, pk: int) -> HttpResponse:
    channel = get_object_or_404(NotificationChannel, pk=pk)
    errors: list[str] = []
    if request.method == "POST":
        try:
            notify.delete_channel(request.user, channel)
        except ValidationError as error:
            errors = [m for _key, found in error_items(error) for m in found]
        else:
            messages.success(request, f"Deleted channel {channel.name}.")
            return redirect("console:notification-list")
    return render_confirm_delete(
        request,
        nav="notifications",
        page_title="Delete notification channel",
        crumbs=["Cluster", "Notifications"],
        question=f"Delete the channel {channel.name}?",
        consequence="Events are no longer sent to it; its delivery log goes with it.",
        used_by=[],
        errors=errors,
        cancel_url=reverse("console:notification-list"),
    )


@change_required
@require_POST
def channel_test(request: HttpRequest, pk: int) -> HttpResponse:
    channel = get_object_or_404(NotificationChannel, pk=pk)
    notify.send_test(request.user, channel)
    messages.success(
        request,
        f"Test notification queued for {channel.name}: the notifier sends it within a"
        " second; its result appears in the delivery log below.",
    )
    return redirect("console:notification-list")
