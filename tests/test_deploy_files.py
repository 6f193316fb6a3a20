"""What ships for a deployment: docker-compose.yml and .env.example."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def example() -> dict[str, str]:
    """The variables .env.example sets, with their values."""
    found = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if re.match(r"^[A-Z_]+=", line):
            name, value = line.split("=", 1)
            found[name] = value
    return found


def test_the_compose_redis_requires_the_password_and_the_app_sends_it() -> None:
    services = compose()["services"]
    redis = services["redis"]
    assert redis["environment"]["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")
    assert '--requirepass "$$REDIS_PASSWORD"' in " ".join(redis["command"])
    # Without the password a PING answers NOAUTH with exit code 0: the check wants PONG.
    assert 'REDISCLI_AUTH="$$REDIS_PASSWORD"' in redis["healthcheck"]["test"][1]
    assert "PONG" in redis["healthcheck"]["test"][1]
    assert "ports" not in redis
    for name in ("web", "worker"):
        url = services[name]["environment"]["REDIS_URL"]
        assert re.fullmatch(r"redis://:\$\{REDIS_PASSWORD:\?[^}]+\}@redis:6379/0", url), url


def test_env_example_gives_redis_a_password() -> None:
    values = example()
    assert values["REDIS_PASSWORD"]
    assert re.fullmatch(r"redis://:[^@]+@redis:6379/0", values["REDIS_URL"])


def test_env_example_lists_every_variable_the_settings_read() -> None:
    source = (ROOT / "appliance" / "settings.py").read_text()
    read = set(re.findall(r'env(?:bool|int|list|secret|str|url|header)\(\s*"([A-Z_]+)"', source))
    read |= set(re.findall(r'_production_secret\(\s*"([A-Z_]+)"', source))
    assert {"SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_PROXY_SSL_HEADER"} <= read
    assert read - set(example()) == set()
