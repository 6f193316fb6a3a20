"""Settings from the environment: a malformed value stops start-up and names the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from appliance.env import envbool, envheader, envint, envlist, envsecret, envstr, envurl

ROOT = Path(__file__).resolve().parent.parent


def test_envbool_reads_the_usual_spellings() -> None:
    assert envbool("X", False, env={"X": "yes"}) is True
    assert envbool("X", True, env={"X": "0"}) is False
    assert envbool("X", True, env={}) is True
    assert envbool("X", False, env={"X": "  "}) is False


def test_envbool_names_the_variable_when_malformed() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"^DEBUG must be one of .*got 'maybe'"):
        envbool("DEBUG", False, env={"DEBUG": "maybe"})


def test_envint_names_the_variable_when_malformed_or_out_of_range() -> None:
    assert envint("N", 5, env={"N": "7"}) == 7
    with pytest.raises(ImproperlyConfigured, match=r"^API_PAGE_SIZE must be a whole number"):
        envint("API_PAGE_SIZE", 50, env={"API_PAGE_SIZE": "fifty"})
    with pytest.raises(ImproperlyConfigured, match=r"^N must be between 1 and 9; got 10"):
        envint("N", 5, env={"N": "10"}, minimum=1, maximum=9)


def test_envlist_splits_on_commas_and_refuses_empty_items() -> None:
    assert envlist("H", [], env={"H": "a.example, b.example"}) == ["a.example", "b.example"]
    assert envlist("H", ["x"], env={}) == ["x"]
    with pytest.raises(ImproperlyConfigured, match=r"^ALLOWED_HOSTS has an empty item"):
        envlist("ALLOWED_HOSTS", [], env={"ALLOWED_HOSTS": "a,,b"})


def test_envsecret_reads_the_file_variant(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("from-a-file\n")
    assert envsecret("SECRET_KEY", env={"SECRET_KEY_FILE": str(secret)}) == "from-a-file"
    assert envsecret("SECRET_KEY", env={"SECRET_KEY": "direct"}) == "direct"
    assert envsecret("SECRET_KEY", env={}) is None
    with pytest.raises(ImproperlyConfigured, match=r"^SECRET_KEY_FILE: cannot read"):
        envsecret("SECRET_KEY", env={"SECRET_KEY_FILE": str(tmp_path / "missing")})


def test_envurl_and_envstr() -> None:
    assert envstr("T", "UTC", env={}) == "UTC"
    assert envurl("REDIS_URL", "d", {"redis"}, env={"REDIS_URL": "redis://h:6379/1"}).endswith("1")
    with pytest.raises(ImproperlyConfigured, match=r"^REDIS_URL must be a URL with scheme"):
        envurl("REDIS_URL", "d", {"redis"}, env={"REDIS_URL": "localhost:6379"})


def test_envheader_reads_a_header_line_into_djangos_form() -> None:
    assert envheader("H", env={}) is None
    assert envheader("H", env={"H": "X-Forwarded-Proto: https"}) == (
        "HTTP_X_FORWARDED_PROTO",
        "https",
    )
    for bad in ("https", "X-Forwarded-Proto:", "X_Forwarded_Proto: https", ": https"):
        with pytest.raises(
            ImproperlyConfigured, match=r"^SECURE_PROXY_SSL_HEADER must be a header"
        ):
            envheader("SECURE_PROXY_SSL_HEADER", env={"SECURE_PROXY_SSL_HEADER": bad})


# What the outer environment may hold that would change what these tests see.
OUTER = ("DEBUG", "DATABASE_URL", "SECRET_KEY", "CLUSTER_SECRET_KEY", "ALLOWED_HOSTS", "REDIS_URL")

# A production start: DEBUG off, real secrets, a database, a host name.
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "k7Qm2xLw9pVz4rTb8nYc3hJd6fGs1aEu5iOo0kMpXqWlRtZyBvNe",
    "CLUSTER_SECRET_KEY": "c" * 40,
    "ALLOWED_HOSTS": "gw.example",
    "DATABASE_URL": "postgres://u:p@db:5432/appliance",
}


def run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """``argv`` in a fresh interpreter, with ``env`` on top of a clean environment."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(OUTER) and not k.startswith("SECURE_")
    }
    return subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "appliance.settings", **env},
        capture_output=True,
        text=True,
        check=False,
    )


def start(**env: str) -> subprocess.CompletedProcess[str]:
    """Import the settings in a fresh interpreter with ``env`` on top of a clean one."""
    return run(["-c", "import appliance.settings"], **env)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "maybe"}, "DEBUG must be one of"),
        ({"DEBUG": "0"}, "SECRET_KEY (or SECRET_KEY_FILE) must be set when DEBUG is off"),
        ({}, "SECRET_KEY (or SECRET_KEY_FILE) must be set when DEBUG is off"),
        ({"DEBUG": "0", "SECRET_KEY": "k" * 50}, "CLUSTER_SECRET_KEY (or CLUSTER_SECRET_KEY_FILE)"),
        ({"DEBUG": "1", "CLUSTER_SECRET_KEY": "short"}, "CLUSTER_SECRET_KEY must be at least 32"),
        ({"DEBUG": "1", "DATABASE_URL": "nosuchdb://x/y"}, "DATABASE_URL"),
        ({"DEBUG": "1", "API_PAGE_SIZE": "0"}, "API_PAGE_SIZE must be between 1 and 1000; got 0."),
        ({"DEBUG": "1", "LOG_LEVEL": "loud"}, "LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR"),
        ({"DEBUG": "1", "SECURE_HSTS_SECONDS": "a year"}, "SECURE_HSTS_SECONDS must be a whole"),
        ({"DEBUG": "1", "SECURE_HSTS_SECONDS": "-1"}, "SECURE_HSTS_SECONDS must be between 0"),
        ({"DEBUG": "1", "SECURE_SSL_REDIRECT": "sure"}, "SECURE_SSL_REDIRECT must be one of"),
        ({"DEBUG": "1", "SECURE_HSTS_PRELOAD": "2"}, "SECURE_HSTS_PRELOAD must be one of"),
        (
            {"DEBUG": "1", "SECURE_HSTS_INCLUDE_SUBDOMAINS": "all"},
            "SECURE_HSTS_INCLUDE_SUBDOMAINS must be one of",
        ),
        ({"DEBUG": "1", "SECURE_PROXY_SSL_HEADER": "https"}, "SECURE_PROXY_SSL_HEADER must be"),
    ],
)
def test_a_malformed_environment_stops_start_up_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    result = start(**env)
    assert result.returncode != 0
    assert message in result.stderr


def test_production_settings_start_with_the_secrets_set() -> None:
    result = start(**PRODUCTION)
    assert result.returncode == 0, result.stderr


def test_debug_is_off_unless_the_environment_turns_it_on() -> None:
    show = "from django.conf import settings; print(settings.DEBUG)"
    production = {k: v for k, v in PRODUCTION.items() if k != "DEBUG"}
    result = run(["-c", f"import django; django.setup(); {show}"], **production)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
    result = run(["-c", f"import django; django.setup(); {show}"], DEBUG="1")
    assert result.stdout.strip() == "True", result.stderr


def example_value(name: str) -> str:
    """The value ``.env.example`` gives ``name``."""
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1]
    raise AssertionError(f"{name} is not in .env.example")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("SECRET_KEY", "SECRET_KEY is still the placeholder of .env.example"),
        ("CLUSTER_SECRET_KEY", "CLUSTER_SECRET_KEY is still the placeholder of .env.example"),
        ("REDIS_URL", "REDIS_URL still has the placeholder password of .env.example"),
    ],
)
def test_it_refuses_the_placeholders_of_env_example_when_debug_is_off(
    name: str, message: str
) -> None:
    placeholder = example_value(name)
    result = start(**{**PRODUCTION, name: placeholder})
    assert result.returncode != 0
    assert message in result.stderr
    # A copied .env.example with DEBUG=1 is a development set-up, and starts.
    assert start(**{**PRODUCTION, "DEBUG": "1", name: placeholder}).returncode == 0


HTTPS = {
    "SESSION_COOKIE_SECURE": "1",
    "CSRF_COOKIE_SECURE": "1",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto: https",
}


def test_check_deploy_finds_nothing_to_warn_about_in_a_production_environment_over_https() -> None:
    # SQLite: the check needs no database server.
    production = {k: v for k, v in PRODUCTION.items() if k != "DATABASE_URL"}
    result = run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **production, **HTTPS
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_the_https_settings_come_from_the_environment() -> None:
    names = ["SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS"]
    names += ["SECURE_HSTS_PRELOAD", "SECURE_PROXY_SSL_HEADER"]
    show = f"import appliance.settings as s; print([getattr(s, n) for n in {names!r}])"
    result = run(["-c", show], **PRODUCTION, **HTTPS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "[True, 31536000, True, True, ('HTTP_X_FORWARDED_PROTO', 'https')]"
    )
    result = run(["-c", show], **PRODUCTION)
    assert result.stdout.strip() == "[False, 0, False, False, None]", result.stderr
