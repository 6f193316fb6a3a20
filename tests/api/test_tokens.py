"""API tokens: stored as digests, shown once, each user's own in the admin."""

from __future__ import annotations

import datetime
from io import StringIO
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from cluster import services
from cluster.models import AuditEntry

TOKENS_URL = "/admin/knox/authtoken/"


def with_token(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def admin_client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def root(db: None) -> User:
    return User.objects.create_superuser("root", "root@example.org", None)


def stored_values() -> str:
    return " ".join(str(v) for row in AuthToken.objects.values_list() for v in row)


def test_the_database_keeps_a_digest_never_the_key(alice: User, settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    alice.set_password("correct horse battery")
    alice.save()
    body = {"username": "alice", "password": "correct horse battery"}
    first = APIClient().post("/api/v1/auth/token/", body).json()["token"]
    second = APIClient().post("/api/v1/auth/token/", body).json()["token"]
    assert first != second  # a digest cannot give the old key back: each call makes one
    assert first not in stored_values()
    assert second not in stored_values()
    assert with_token(first).get("/api/v1/aliases/").status_code == 200
    assert with_token(second).get("/api/v1/aliases/").status_code == 200
    # Audited by its first characters only.
    entry = AuditEntry.objects.filter(object_type="token").latest("id")
    assert (entry.actor_name, entry.action) == ("alice", "create")
    assert entry.object_repr == f"{second[:8]}… of alice"
    assert second not in str(entry.after)


def test_getting_a_token_counts_as_a_login(alice: User, settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    alice.set_password("correct horse battery")
    alice.save()
    assert alice.last_login is None
    body = {"username": "alice", "password": "correct horse battery"}
    assert APIClient().post("/api/v1/auth/token/", body).status_code == 200
    alice.refresh_from_db()
    assert alice.last_login is not None


def test_the_command_prints_a_working_token_once(alice: User) -> None:
    out = StringIO()
    call_command("create_api_token", "alice", stdout=out)
    key = out.getvalue().strip()
    assert len(key) == 64
    assert with_token(key).get("/api/v1/nodes/").status_code == 200
    assert key not in stored_values()
    assert AuditEntry.objects.get(object_type="token").actor_name == "system"


def test_the_command_refuses_an_unknown_user(db: None) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="There is no user 'nobody'"):
        call_command("create_api_token", "nobody")


def test_a_disabled_users_token_stops_working(alice: User) -> None:
    key = services.grant_token(None, alice)
    User.objects.filter(pk=alice.pk).update(is_active=False)
    assert with_token(key).get("/api/v1/nodes/").status_code == 401


def test_an_expired_token_is_refused_and_removed(alice: User) -> None:
    key = services.grant_token(None, alice)
    AuthToken.objects.update(expiry=timezone.now() - datetime.timedelta(seconds=1))
    assert with_token(key).get("/api/v1/nodes/").status_code == 401
    assert not AuthToken.objects.exists()


def test_tokens_expire_after_the_configured_hours(alice: User, settings: Any) -> None:
    settings.REST_KNOX = {**settings.REST_KNOX, "TOKEN_TTL": datetime.timedelta(hours=2)}
    services.grant_token(None, alice)
    expiry = AuthToken.objects.get().expiry
    assert expiry is not None
    assert abs((expiry - timezone.now()) - datetime.timedelta(hours=2)) < datetime.timedelta(
        minutes=1
    )


def test_no_admin_page_shows_a_key_not_even_to_a_superuser(alice: User, root: User) -> None:
    keys = [services.grant_token(None, alice), services.grant_token(None, root)]
    html = admin_client(root).get(TOKENS_URL).content.decode()
    assert "2 auth tokens" in html
    for key in keys:
        assert key not in html
        assert key[:15] not in html  # not even knox's lookup prefix
        assert f"{key[:8]}…" in html


def test_an_administrator_sees_and_revokes_only_its_own_tokens(alice: User, root: User) -> None:
    own = services.grant_token(None, alice)
    others = services.grant_token(None, root)
    client = admin_client(alice)
    html = client.get(TOKENS_URL).content.decode()
    assert f"{own[:8]}…" in html
    assert f"{others[:8]}…" not in html
    assert "1 auth token" in html
    roots_token = AuthToken.objects.get(user=root)
    # Revoking the superuser's token by naming it: refused, and it still works.
    response = client.post(
        TOKENS_URL,
        {"action": "delete_selected", "_selected_action": [roots_token.pk], "post": "yes"},
    )
    assert response.status_code in (200, 302)
    assert AuthToken.objects.filter(user=root).exists()
    assert with_token(others).get("/api/v1/nodes/").status_code == 200
    assert client.post(f"{TOKENS_URL}{roots_token.pk}/delete/", {"post": "yes"}).status_code in (
        302,
        403,
    )
    assert AuthToken.objects.filter(user=root).exists()
    # Its own: revoked, audited, and no longer accepted.
    mine = AuthToken.objects.get(user=alice)
    response = client.post(
        TOKENS_URL, {"action": "delete_selected", "_selected_action": [mine.pk], "post": "yes"}
    )
    assert response.status_code == 302
    assert not AuthToken.objects.filter(user=alice).exists()
    assert with_token(own).get("/api/v1/nodes/").status_code == 401
    entry = AuditEntry.objects.filter(object_type="token", action="delete").get()
    assert (entry.actor_name, entry.object_repr) == ("alice", f"{own[:8]}… of alice")


def test_a_superuser_revokes_anyones_token(alice: User, root: User) -> None:
    key = services.grant_token(None, alice)
    token = AuthToken.objects.get()
    response = admin_client(root).post(
        TOKENS_URL, {"action": "delete_selected", "_selected_action": [token.pk], "post": "yes"}
    )
    assert response.status_code == 302
    assert with_token(key).get("/api/v1/nodes/").status_code == 401
    assert AuditEntry.objects.get(object_type="token", action="delete").actor_name == "root"


def test_support_sees_and_revokes_its_own_tokens_only(sam: User, alice: User) -> None:
    services.grant_token(None, alice)
    own = services.grant_token(None, sam)
    client = admin_client(sam)
    html = client.get(TOKENS_URL).content.decode()
    assert f"{own[:8]}…" in html
    assert "1 auth token" in html
    token = AuthToken.objects.get(user=sam)
    response = client.post(
        TOKENS_URL, {"action": "delete_selected", "_selected_action": [token.pk], "post": "yes"}
    )
    assert response.status_code == 302
    assert list(AuthToken.objects.values_list("user__username", flat=True)) == ["alice"]


def test_nobody_makes_or_edits_a_token_in_the_admin(root: User) -> None:
    services.grant_token(None, root)
    token = AuthToken.objects.get()
    client = admin_client(root)
    assert client.get(f"{TOKENS_URL}add/").status_code == 403
    page = client.get(f"{TOKENS_URL}{token.pk}/change/")
    assert 'name="_save"' not in page.content.decode()


def test_drf_tokens_are_carried_over_as_digests_and_keep_working(alice: User) -> None:
    """Migration 0004 on a database that still has DRF's plaintext table."""
    from importlib import import_module

    from django.apps import apps

    migration = import_module("cluster.migrations.0004_accounts_tokens_lockout")
    old_key = "0123456789abcdef0123456789abcdef01234567"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
            "user_id integer NOT NULL, created timestamp NOT NULL)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token VALUES (%s, %s, %s)",
            [old_key, alice.pk, datetime.datetime(2025, 1, 2, tzinfo=datetime.UTC)],
        )

    def execute(sql: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql)

    editor = SimpleNamespace(connection=connection, execute=execute)
    migration.carry_over_drf_tokens(apps, editor)
    assert "authtoken_token" not in connection.introspection.table_names()
    assert old_key not in stored_values()
    assert AuthToken.objects.get().created.year == 2025
    assert with_token(old_key).get("/api/v1/nodes/").status_code == 200
