"""Brute force: the token endpoint is throttled, and repeated failed logins lock
a user name out from an address on every login (console page, admin, API).

Lockouts are rows (django-axes's database handler): they roll back with each
test. The throttle counts in the cache, which each test here empties first.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

from cluster.models import AuditEntry
from tests.factories import make_user

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-and-good-passphrase"
TOKEN_URL = "/api/v1/auth/token/"
# (URL, form fields besides the credentials, what a successful login answers)
LOGINS = {
    "console": ("/login/", {}, 302),
    "admin": ("/admin/login/", {"next": "/admin/"}, 302),
    "token": (TOKEN_URL, {}, 200),
}


@pytest.fixture(autouse=True)
def _fast_and_fresh(settings: Any) -> None:
    # A deliberately slow hash would make each of these many logins take ~0.5 s.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()


@pytest.fixture
def alice() -> User:
    user = make_user("alice", "administrator")
    user.set_password(PASSWORD)
    user.save()
    return user


def attempt(where: str, password: str, username: str = "alice", **extra: Any) -> Any:
    url, fields, _ok = LOGINS[where]
    return Client().post(url, {"username": username, "password": password, **fields}, **extra)


@pytest.mark.parametrize("where", LOGINS)
def test_repeated_failures_lock_the_user_out_even_with_the_right_password(
    alice: User, where: str, settings: Any
) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    ok = LOGINS[where][2]
    answers = [attempt(where, "wrong").status_code for _ in range(3)]
    assert answers[:2] == [400 if where == "token" else 200] * 2  # refused, not yet locked
    assert answers[2] == 429  # the failure that reaches the limit
    locked = attempt(where, PASSWORD)
    assert locked.status_code == 429
    assert locked["Retry-After"] == str(15 * 60)
    assert "Too many failed logins for this user from your address" in locked.content.decode()
    # Another address, or another user from this address, is not locked out.
    assert attempt(where, PASSWORD, REMOTE_ADDR="198.51.100.7").status_code == ok
    bob = make_user("bob", "support")
    bob.set_password(PASSWORD)
    bob.save()
    assert attempt(where, PASSWORD, username="bob").status_code == ok


def test_the_token_endpoint_answers_a_lockout_in_json(alice: User) -> None:
    for _ in range(5):
        APIClient().post(TOKEN_URL, {"username": "alice", "password": "wrong"})
    response = APIClient().post(TOKEN_URL, {"username": "alice", "password": PASSWORD})
    assert response.status_code == 429
    assert response.json() == {
        "detail": "Too many failed logins for this user from your address. Try again in 15 minutes."
    }
    assert "token" not in response.json()


def test_a_success_before_the_limit_clears_the_count(alice: User) -> None:
    for _ in range(4):
        assert attempt("console", "wrong").status_code == 200
    assert attempt("console", PASSWORD).status_code == 302
    for _ in range(4):
        assert attempt("console", "wrong").status_code == 200
    assert attempt("console", PASSWORD).status_code == 302


def test_each_lockout_is_audited_once_with_the_address(alice: User) -> None:
    for _ in range(8):
        attempt("admin", "wrong", REMOTE_ADDR="192.0.2.66")
    entries = AuditEntry.objects.filter(action="lockout")
    assert entries.count() == 1
    entry = entries.get()
    assert (entry.actor_name, entry.object_type, entry.object_repr, entry.object_id) == (
        "192.0.2.66",
        "user",
        "alice",
        str(alice.pk),
    )
    assert entry.after is not None
    assert (entry.after["address"], entry.after["failures"], entry.after["via"]) == (
        "192.0.2.66",
        5,
        "/admin/login/",
    )
    assert "wrong" not in str(entry.after)
    # The audit log page shows it.
    client = Client()
    client.force_login(alice)
    assert "Locked out" in client.get("/system/audit/").content.decode()


def test_a_forged_forwarded_for_does_not_escape_the_lockout(alice: User) -> None:
    for n in range(5):
        attempt("token", "wrong", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")
    assert attempt("token", PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.99").status_code == 429


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_client(
    alice: User, settings: Any
) -> None:
    settings.TRUSTED_PROXY_COUNT = 1
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    for _ in range(5):
        attempt("token", "wrong", HTTP_X_FORWARDED_FOR="forged, 198.51.100.20")
    assert attempt("token", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.20").status_code == 429
    assert attempt("token", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.21").status_code == 200


def test_the_token_endpoint_is_throttled_with_retry_after(alice: User, settings: Any) -> None:
    settings.API_TOKEN_THROTTLE_PER_MINUTE = 3
    # Different user names: the lockout (per user) never triggers, the throttle does.
    answers = [attempt("token", "wrong", username=f"guess{n}").status_code for n in range(3)]
    assert answers == [400, 400, 400]
    throttled = attempt("token", PASSWORD)
    assert throttled.status_code == 429
    assert 0 < int(throttled["Retry-After"]) <= 60
    assert "throttled" in throttled.json()["detail"]
    # Per address: another client is still answered.
    assert attempt("token", PASSWORD, REMOTE_ADDR="198.51.100.8").status_code == 200


def test_a_hundred_wrong_passwords_never_lead_to_a_token(alice: User) -> None:
    answers = [attempt("token", f"guess-{n}").status_code for n in range(100)]
    assert answers.count(400) == 4
    assert set(answers[4:]) == {429}
    assert attempt("token", PASSWORD).status_code == 429


def test_lockout_can_be_turned_off(alice: User, settings: Any) -> None:
    settings.AXES_ENABLED = False
    for _ in range(6):
        assert attempt("console", "wrong").status_code == 200
    assert attempt("console", PASSWORD).status_code == 302


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LOGIN_FAILURE_LIMIT": "0"}, "LOGIN_FAILURE_LIMIT must be between 1 and None; got 0."),
        ({"LOGIN_LOCKOUT_MINUTES": "soon"}, "LOGIN_LOCKOUT_MINUTES must be a whole number"),
        ({"LOGIN_LOCKOUT_ENABLED": "maybe"}, "LOGIN_LOCKOUT_ENABLED must be one of"),
        ({"API_TOKEN_THROTTLE_PER_MINUTE": "0"}, "API_TOKEN_THROTTLE_PER_MINUTE must be between"),
        ({"TRUSTED_PROXY_COUNT": "-1"}, "TRUSTED_PROXY_COUNT must be between"),
        ({"API_TOKEN_TTL_HOURS": "x"}, "API_TOKEN_TTL_HOURS must be a whole number"),
    ],
)
def test_the_lockout_settings_come_from_the_environment(env: dict[str, str], message: str) -> None:
    from tests.test_settings import start

    result = start(DEBUG="1", **env)
    assert result.returncode != 0
    assert message in result.stderr


def test_the_environment_sets_the_limit_and_the_wait() -> None:
    from tests.test_settings import ROOT

    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'appliance.settings'; "
        "from django.conf import settings; "
        "print(settings.AXES_FAILURE_LIMIT, settings.AXES_COOLOFF_TIME.total_seconds(), "
        "settings.API_TOKEN_THROTTLE_PER_MINUTE, settings.REST_KNOX['TOKEN_TTL'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DEBUG": "1",
            "LOGIN_FAILURE_LIMIT": "7",
            "LOGIN_LOCKOUT_MINUTES": "2",
            "API_TOKEN_THROTTLE_PER_MINUTE": "30",
            "API_TOKEN_TTL_HOURS": "24",
        },
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.split() == ["7", "120.0", "30", "1", "day,", "0:00:00"]
