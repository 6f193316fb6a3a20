"""Accounts in the admin: administrators create, disable, delete users and set
their role; never a superuser; every change audited; Django's password rules."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from cluster import access
from cluster.choices import Role
from cluster.models import AuditEntry
from tests.factories import make_user

pytestmark = pytest.mark.django_db

USERS = "/admin/auth/user/"
GOOD_PASSWORD = "plum-orbit-lantern-41"


@pytest.fixture(autouse=True)
def _fast_hasher(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice() -> User:
    return make_user("alice", "administrator")


@pytest.fixture
def root() -> User:
    return User.objects.create_superuser("root", "root@example.org", None)


def new_user(**overrides: Any) -> dict[str, Any]:
    data = {
        "username": "sue",
        "email": "sue@example.org",
        "first_name": "Sue",
        "last_name": "Port",
        "role": "support",
        "is_active": "on",
        "password": GOOD_PASSWORD,
        "password_again": GOOD_PASSWORD,
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def change_data(user: User, **overrides: Any) -> dict[str, Any]:
    role = access.role(user)
    data = {
        "username": user.username,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "role": role.value if role is not None else "",
        "is_active": "on" if user.is_active else None,
        "password": "",
        "password_again": "",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def test_an_administrator_sees_users_and_their_last_login(alice: User) -> None:
    sam = make_user("sam", "support")
    User.objects.filter(pk=sam.pk).update(last_login="2026-03-04T05:06:07Z")
    client = client_for(alice)
    assert 'href="/admin/auth/user/"' in client.get("/admin/").content.decode()
    html = client.get(USERS).content.decode()
    assert "sam" in html
    assert "Support" in html
    assert "Administrator" in html
    assert "column-last_login" in html
    assert "March 4, 2026" in html


def test_an_administrator_creates_a_support_user_who_can_log_in(alice: User) -> None:
    response = client_for(alice).post(f"{USERS}add/", new_user())
    assert response.status_code == 302, response.content.decode()
    sue = User.objects.get(username="sue")
    assert access.role(sue) == Role.SUPPORT
    assert (sue.is_staff, sue.is_superuser, sue.is_active) == (True, False, True)
    assert sue.check_password(GOOD_PASSWORD)
    entry = AuditEntry.objects.get(object_type="user")
    assert (entry.actor_name, entry.action, entry.object_repr) == ("alice", "create", "sue")
    assert entry.after is not None
    assert entry.after["role"] == "support"
    assert entry.after["password"] == "(changed)"
    assert GOOD_PASSWORD not in str(entry.after)
    # Support can now log in to the admin and read, not write.
    browser = Client()
    assert browser.login(username="sue", password=GOOD_PASSWORD)
    assert browser.get("/admin/cluster/node/").status_code == 200
    assert browser.get("/admin/cluster/node/add/").status_code == 403


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short1", "This password is too short. It must contain at least 8 characters."),
        ("password123", "This password is too common."),
        ("8302947561", "This password is entirely numeric."),
        ("sue@example.org", "The password is too similar to the"),
        ("", "Password is required."),
    ],
)
def test_passwords_follow_djangos_validators(alice: User, password: str, message: str) -> None:
    data = new_user(password=password, password_again=password)
    response = client_for(alice).post(f"{USERS}add/", data)
    assert response.status_code == 200
    assert message in response.content.decode().replace("&#x27;", "'")
    assert not User.objects.filter(username="sue").exists()
    assert not AuditEntry.objects.exists()


def test_the_two_passwords_must_match(alice: User) -> None:
    response = client_for(alice).post(f"{USERS}add/", new_user(password_again="something-else"))
    assert "The two passwords differ." in response.content.decode()
    assert not User.objects.filter(username="sue").exists()


def test_the_admin_refuses_a_taken_or_malformed_user_name(alice: User) -> None:
    html = client_for(alice).post(f"{USERS}add/", new_user(username="alice")).content.decode()
    assert "User name alice is already taken." in html
    html = client_for(alice).post(f"{USERS}add/", new_user(username="no spaces")).content.decode()
    assert "Enter a valid username." in html
    assert User.objects.count() == 1


def test_an_administrator_sets_the_role_disables_and_deletes(alice: User) -> None:
    sam = make_user("sam", "support")
    client = client_for(alice)
    url = f"{USERS}{sam.pk}/change/"
    assert client.post(url, change_data(sam, role="administrator")).status_code == 302
    sam = User.objects.get(pk=sam.pk)
    assert access.role(sam) == Role.ADMINISTRATOR
    promoted = AuditEntry.objects.latest("id")
    assert promoted.changes() == {"role": ("support", "administrator")}
    assert client.post(url, change_data(sam, is_active=None)).status_code == 302
    sam = User.objects.get(pk=sam.pk)
    assert not sam.is_active
    assert access.role(sam) is None  # a disabled user has no role
    disabled = AuditEntry.objects.latest("id")
    assert disabled.changes() == {"is_active": (True, False)}
    response = client.post(f"{USERS}{sam.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not User.objects.filter(username="sam").exists()
    deleted = AuditEntry.objects.latest("id")
    assert (deleted.action, deleted.object_repr, deleted.after) == ("delete", "sam", None)


def test_removing_the_role_removes_admin_access(alice: User) -> None:
    sam = make_user("sam", "support")
    response = client_for(alice).post(f"{USERS}{sam.pk}/change/", change_data(sam, role=""))
    assert response.status_code == 302
    sam = User.objects.get(pk=sam.pk)
    assert (access.role(sam), sam.is_staff) == (None, False)


def test_a_new_password_set_by_an_administrator_is_audited_as_changed(alice: User) -> None:
    sam = make_user("sam", "support")
    data = change_data(sam, password=GOOD_PASSWORD, password_again=GOOD_PASSWORD)
    assert client_for(alice).post(f"{USERS}{sam.pk}/change/", data).status_code == 302
    sam.refresh_from_db()
    assert sam.check_password(GOOD_PASSWORD)
    entry = AuditEntry.objects.latest("id")
    assert entry.changes() == {"password": (None, "(changed)")}


def test_an_administrator_never_makes_a_superuser(alice: User) -> None:
    client = client_for(alice)
    assert 'name="is_superuser"' not in client.get(f"{USERS}add/").content.decode()
    response = client.post(f"{USERS}add/", new_user(is_superuser="on", role="administrator"))
    assert response.status_code == 302
    assert not User.objects.get(username="sue").is_superuser
    sam = make_user("sam", "support")
    client.post(f"{USERS}{sam.pk}/change/", change_data(sam, is_superuser="on"))
    assert not User.objects.get(pk=sam.pk).is_superuser
    alice_change = change_data(alice, is_superuser="on")
    client.post(f"{USERS}{alice.pk}/change/", alice_change)
    assert not User.objects.filter(is_superuser=True).exists()


def test_an_administrator_cannot_touch_a_superuser(alice: User, root: User) -> None:
    client = client_for(alice)
    page = client.get(f"{USERS}{root.pk}/change/")
    assert page.status_code == 200  # visible, read-only
    assert 'name="_save"' not in page.content.decode()
    data = change_data(root, password=GOOD_PASSWORD, password_again=GOOD_PASSWORD, is_active=None)
    assert client.post(f"{USERS}{root.pk}/change/", data).status_code == 403
    assert client.post(f"{USERS}{root.pk}/delete/", {"post": "yes"}).status_code == 403
    bulk = {"action": "delete_selected", "_selected_action": [root.pk], "post": "yes"}
    assert client.post(USERS, bulk).status_code == 403
    root.refresh_from_db()
    assert root.is_active
    assert not root.check_password(GOOD_PASSWORD)
    assert not AuditEntry.objects.exists()


def test_the_service_refuses_a_superuser_change_whatever_the_caller(
    alice: User, root: User
) -> None:
    from django.core.exceptions import PermissionDenied

    from cluster import services

    with pytest.raises(PermissionDenied):
        services.update_account(alice, root, {"is_active": False})
    with pytest.raises(PermissionDenied):
        services.delete_account(alice, root)
    with pytest.raises(PermissionDenied):
        services.create_account(
            alice, {"username": "evil", "password": GOOD_PASSWORD, "is_superuser": True}
        )
    sam = make_user("sam", "support")
    with pytest.raises(PermissionDenied):
        services.create_account(sam, {"username": "x", "password": GOOD_PASSWORD})
    assert User.objects.filter(is_superuser=True).count() == 1


def test_a_superuser_may_make_a_superuser(root: User) -> None:
    client = client_for(root)
    assert 'name="is_superuser"' in client.get(f"{USERS}add/").content.decode()
    response = client.post(f"{USERS}add/", new_user(is_superuser="on", role=""))
    assert response.status_code == 302
    sue = User.objects.get(username="sue")
    assert sue.is_superuser
    assert sue.is_staff


def test_support_reads_users_and_changes_none(alice: User) -> None:
    sam = make_user("sam", "support")
    client = client_for(sam)
    assert client.get(USERS).status_code == 200
    assert client.get(f"{USERS}add/").status_code == 403
    assert client.post(f"{USERS}add/", new_user()).status_code == 403
    page = client.get(f"{USERS}{alice.pk}/change/")
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert client.post(f"{USERS}{alice.pk}/change/", change_data(alice)).status_code == 403
    assert client.post(f"{USERS}{alice.pk}/delete/", {"post": "yes"}).status_code == 403
    assert User.objects.count() == 2


def test_support_changes_its_own_password_and_it_is_audited() -> None:
    sam = make_user("sam", "support")
    sam.set_password("old-password-for-sam")
    sam.save()
    client = client_for(sam)
    data = {
        "old_password": "old-password-for-sam",
        "new_password1": GOOD_PASSWORD,
        "new_password2": GOOD_PASSWORD,
    }
    response = client.post("/admin/password_change/", data)
    assert response.status_code == 302
    assert response["Location"] == "/admin/password_change/done/"
    sam.refresh_from_db()
    assert sam.check_password(GOOD_PASSWORD)
    entry = AuditEntry.objects.get()
    assert (entry.actor_name, entry.action, entry.object_type, entry.object_repr) == (
        "sam",
        "update",
        "user",
        "sam",
    )
    assert entry.after == {"password": "(changed)"}
    # Still logged in (the session follows the new password), still read-only.
    assert client.get("/admin/cluster/node/").status_code == 200
    weak = {**data, "old_password": GOOD_PASSWORD, "new_password1": "123", "new_password2": "123"}
    assert (
        "This password is too short"
        in client.post("/admin/password_change/", weak).content.decode()
    )
