"""Settings from the environment: a malformed value stops start-up and names the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from appliance.env import envbool, envint, envlist, envsecret, envstr, envurl

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


def start(**env: str) -> subprocess.CompletedProcess[str]:
    """Import the settings in a fresh interpreter with ``env`` on top of a clean one."""
    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DEBUG"}}
    return subprocess.run(
        [sys.executable, "-c", "import appliance.settings"],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "maybe"}, "DEBUG must be one of"),
        ({"DEBUG": "0"}, "SECRET_KEY (or SECRET_KEY_FILE) must be set when DEBUG is off."),
        ({"DEBUG": "0", "SECRET_KEY": "k" * 50}, "CLUSTER_SECRET_KEY (or CLUSTER_SECRET_KEY_FILE)"),
        ({"CLUSTER_SECRET_KEY": "short"}, "CLUSTER_SECRET_KEY must be at least 32 characters"),
        ({"DATABASE_URL": "nosuchdb://x/y"}, "DATABASE_URL"),
        ({"API_PAGE_SIZE": "0"}, "API_PAGE_SIZE must be between 1 and 1000; got 0."),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL"),
    ],
)
def test_a_malformed_environment_stops_start_up_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    result = start(**env)
    assert result.returncode != 0
    assert message in result.stderr


def test_production_settings_start_with_the_secrets_set() -> None:
    result = start(
        DEBUG="0",
        SECRET_KEY="k" * 50,
        CLUSTER_SECRET_KEY="c" * 40,
        ALLOWED_HOSTS="gw.example",
        DATABASE_URL="postgres://u:p@db:5432/appliance",
    )
    assert result.returncode == 0, result.stderr
