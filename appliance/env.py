"""Strict readers of environment variables for ``appliance.settings``.

A malformed value stops start-up with ``ImproperlyConfigured`` naming the
variable, instead of running with a surprise. Secrets may also come from a
file: ``SECRET_KEY_FILE=/run/secrets/key`` is read when ``SECRET_KEY`` is unset
(the Docker and systemd-credentials convention).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from django.core.exceptions import ImproperlyConfigured

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off"}


def _raw(name: str, env: Mapping[str, str] | None) -> str | None:
    value = (os.environ if env is None else env).get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def envstr(name: str, default: str = "", env: Mapping[str, str] | None = None) -> str:
    value = _raw(name, env)
    return default if value is None else value


def envbool(name: str, default: bool, env: Mapping[str, str] | None = None) -> bool:
    value = _raw(name, env)
    if value is None:
        return default
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name} must be one of 1/0, true/false, yes/no, on/off; got {value!r}."
    )


def envint(
    name: str,
    default: int,
    env: Mapping[str, str] | None = None,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    value = _raw(name, env)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number; got {value!r}.") from None
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ImproperlyConfigured(f"{name} must be between {minimum} and {maximum}; got {number}.")
    return number


def envlist(name: str, default: list[str], env: Mapping[str, str] | None = None) -> list[str]:
    """A comma-separated list; blank items are refused (a stray comma is a typo)."""
    value = _raw(name, env)
    if value is None:
        return list(default)
    items = [item.strip() for item in value.split(",")]
    if any(item == "" for item in items):
        raise ImproperlyConfigured(f"{name} has an empty item; got {value!r}.")
    return items


def envsecret(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """``NAME`` itself, else the contents of the file named by ``NAME_FILE``."""
    value = _raw(name, env)
    if value is not None:
        return value
    path = _raw(f"{name}_FILE", env)
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            content = fh.read().strip()
    except OSError as exc:
        raise ImproperlyConfigured(f"{name}_FILE: cannot read {path}: {exc.strerror}.") from None
    if not content:
        raise ImproperlyConfigured(f"{name}_FILE: {path} is empty.")
    return content


def envurl(name: str, default: str, schemes: set[str], env: Mapping[str, str] | None = None) -> str:
    value = _raw(name, env)
    if value is None:
        return default
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in schemes:
        allowed = ", ".join(sorted(schemes))
        raise ImproperlyConfigured(f"{name} must be a URL with scheme {allowed}; got {value!r}.")
    return value


def envheader(name: str, env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """A request header and the value that marks a secure request, written as
    the header line a proxy sends (``X-Forwarded-Proto: https``), returned as
    Django's ``SECURE_PROXY_SSL_HEADER`` wants it: ``("HTTP_X_FORWARDED_PROTO", "https")``.
    """
    value = _raw(name, env)
    if value is None:
        return None
    header, colon, expected = value.partition(":")
    header, expected = header.strip(), expected.strip()
    # Letters, digits and dashes only: a server drops headers with an underscore
    # (they would be indistinguishable from dashed ones in the WSGI environ).
    if not colon or not re.fullmatch(r"[A-Za-z0-9]+(-[A-Za-z0-9]+)*", header) or not expected:
        raise ImproperlyConfigured(
            f"{name} must be a header and its value, like 'X-Forwarded-Proto: https'; "
            f"got {value!r}."
        )
    return "HTTP_" + header.upper().replace("-", "_"), expected
