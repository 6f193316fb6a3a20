"""Lockout after repeated failed logins (django-axes), the same on every login.

The console's login page, the admin's and ``POST /api/v1/auth/token/`` all log in
through ``django.contrib.auth.authenticate`` with the request, so axes counts
their failures per user name and client address (``settings.AXES_*``, from the
``LOGIN_*`` variables). Here are the project's parts of it: which address a
request comes from, the answer a locked-out client gets, the backend that
refuses it, and the audit entry of each lockout.
"""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.signals import user_locked_out
from django.conf import settings
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone

from cluster import services


def client_address(request: Any) -> str | None:
    """The client's address, trusting X-Forwarded-For only as far as
    ``TRUSTED_PROXY_COUNT`` proxies wrote it; DRF's throttles read it the same
    way (its ``NUM_PROXIES`` is the same setting). Without proxies a client
    could otherwise pick a new address for every guess."""
    remote: str | None = request.META.get("REMOTE_ADDR")
    proxies: int = settings.TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if proxies == 0 or not forwarded:
        return remote
    addresses = [a.strip() for a in forwarded.split(",")]
    return addresses[-min(proxies, len(addresses))] or remote


def lockout_minutes() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)


def lockout_message() -> str:
    minutes = lockout_minutes()
    unit = "minute" if minutes == 1 else "minutes"
    return f"Too many failed logins for this user from your address. Try again in {minutes} {unit}."


def lockout_response(request: HttpRequest, *_args: Any) -> HttpResponse:
    """429 with Retry-After: JSON for the API, the console's page for a browser.

    The wait starts again with every failure, so it is the whole cool-off time.
    Extra arguments (axes passes the original response and the credentials, or
    only the credentials on its async path) are not needed.
    """
    retry_after = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": lockout_message()}, status=429)
    else:
        context = {"message": lockout_message(), "page_title": "Locked out"}
        response = render(request, "registration/locked_out.html", context, status=429)
    response["Retry-After"] = retry_after
    return response


class LockoutBackend(AxesStandaloneBackend):  # type: ignore[misc]
    """Refuses a locked-out user name and address before the password is checked.

    axes's own backend raises when ``authenticate`` is called without a request;
    only code on this machine does that (``manage.py`` commands, the test
    client's ``login``), never a login from the network, so it is let through.
    """

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        if request is None:
            return None
        super().authenticate(request, username=username, password=password, **kwargs)
        return None


@receiver(user_locked_out, dispatch_uid="cluster.lockout.audit_lockout")
def audit_lockout(
    sender: Any, request: Any, username: str | None, ip_address: str | None, **kwargs: Any
) -> None:
    """One audit entry per lockout. axes signals again on every failure during the
    lockout (each restarts the wait); only the failure that reached the limit is
    the lockout itself."""
    failures = getattr(request, "axes_failures_since_start", None)
    if failures != settings.AXES_FAILURE_LIMIT:
        return
    until = timezone.now() + settings.AXES_COOLOFF_TIME
    services.record_lockout(username, ip_address, failures, request.path, until)
