"""The Content-Security-Policy of every response (Django 5.2 has none built in).

The console's pages load their scripts and styles from its own static files
only, so the policy allows ``'self'`` and nothing inline: an injected
``<script>`` or ``onclick=`` does not run, and an injected ``style=`` is not
applied. A template that needs an inline block (the cluster page's timeline
bars, the Swagger UI's start-up script) marks it with ``nonce="{{ request.csp_nonce }}"``;
only a response that used its nonce names one in its policy.
"""

from __future__ import annotations

import secrets

from django.http import HttpRequest, HttpResponseBase
from django.utils.deprecation import MiddlewareMixin

HEADER = "Content-Security-Policy"


class Nonce:
    """A request's nonce, made the first time a template renders it."""

    def __init__(self) -> None:
        self._value: str | None = None

    def __str__(self) -> str:
        if self._value is None:
            self._value = secrets.token_urlsafe(18)
        return self._value

    @property
    def used(self) -> bool:
        return self._value is not None


# What a page the console does not write needs beyond the policy, by URL name:
# the Swagger UI draws its icons from data: URLs.
EXTRA_IMAGES = {"api-docs": " data:"}


def policy(nonce: Nonce | None = None, view_name: str | None = None) -> str:
    """The header's value; ``nonce``, if it was used, is allowed for scripts and styles."""
    inline = f" 'nonce-{nonce}'" if nonce is not None and nonce.used else ""
    images = EXTRA_IMAGES.get(view_name or "", "")
    directives = [
        "default-src 'self'",
        f"script-src 'self'{inline}",
        f"style-src 'self'{inline}",
        f"img-src 'self'{images}",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
    return "; ".join(directives)


class ContentSecurityPolicyMiddleware(MiddlewareMixin):
    """Gives each request a :class:`Nonce` and each response the policy."""

    def process_request(self, request: HttpRequest) -> None:
        request.csp_nonce = Nonce()  # type: ignore[attr-defined]

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        if HEADER not in response:
            match = request.resolver_match
            response[HEADER] = policy(
                getattr(request, "csp_nonce", None), match.view_name if match else None
            )
        return response
