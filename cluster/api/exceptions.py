"""How the API answers an error, and how every refusal is logged.

- The services' ``ValidationError`` becomes DRF's 400, field by field.
- A body nested too deeply for ``json`` is a 400 (``cluster.api.parsers``),
  also on views whose library fixes their own parsers (DRF's token view).
- A refusal (401, 403) is logged as one line on ``django.request``: who, what
  and why. Django's own log of a ``PermissionDenied`` carries the whole
  traceback (some 50 lines per refused click of a support user), which tells
  nothing a line does not. ``permission_denied`` is the site's ``handler403``,
  so the console's pages and the admin log their refusals the same way.
"""

from __future__ import annotations

import traceback
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils.log import log_response
from django.views import defaults
from rest_framework import exceptions
from rest_framework.parsers import BaseParser
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from cluster.api import parsers

REFUSALS = (
    exceptions.NotAuthenticated,
    exceptions.AuthenticationFailed,
    exceptions.PermissionDenied,
    DjangoPermissionDenied,
)


def as_drf_error(exc: DjangoValidationError) -> exceptions.ValidationError:
    if hasattr(exc, "error_dict"):
        detail = {
            (api_settings.NON_FIELD_ERRORS_KEY if key == NON_FIELD_ERRORS else key): messages
            for key, messages in exc.message_dict.items()
        }
        return exceptions.ValidationError(detail)
    return exceptions.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: exc.messages})


def raised_while_parsing(exc: BaseException) -> bool:
    """Was ``exc`` raised inside a DRF parser, i.e. while reading the body?"""
    return any(
        isinstance(frame.f_locals.get("self"), BaseParser)
        for frame, _ in traceback.walk_tb(exc.__traceback__)
    )


def log_refusal(request: HttpRequest, response: HttpResponse, reason: object) -> None:
    """One warning line on ``django.request`` for a 401 or 403, and none from Django."""
    user = getattr(request, "user", None)
    who = user.get_username() if user is not None and user.is_authenticated else "anonymous"
    log_response(
        "%s: %s %s by %s (%s)",
        response.reason_phrase,
        request.method,
        request.path,
        who,
        str(reason) or "no reason given",
        response=response,
        request=request,
    )


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        exc = as_drf_error(exc)
    elif isinstance(exc, RecursionError) and raised_while_parsing(exc):
        exc = parsers.body_too_deep()
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, REFUSALS):
        # DRF's Request wraps Django's, which carries the authenticated user too.
        log_refusal(context["request"]._request, response, getattr(exc, "detail", exc))
    return response


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """The site's ``handler404``: under the API's root a URL that matches no
    route (``/api/v1/aliases/-2.5e-10/``) gets the API's JSON answer, as one that
    names no object does; elsewhere, the console's 404 page."""
    if request.path.startswith(reverse("api:api-root")):
        return JsonResponse({"detail": str(exceptions.NotFound.default_detail)}, status=404)
    return defaults.page_not_found(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    """The site's ``handler403``: Django's 403 page (``templates/403.html``),
    logged in one line."""
    response = defaults.permission_denied(request, exception)
    log_refusal(request, response, exception)
    return response
