"""Who may use the API: administrators change, support reads, others nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from cluster.models import AuditEntry, IPAlias, Node
from tests.api.conftest import token_client
from tests.factories import alias_data, make_alias


@pytest.fixture
def alias(nodes: list[Node]) -> IPAlias:
    return make_alias(42)


def writes(alias: IPAlias, node: Node) -> list[tuple[str, str, dict[str, Any] | None]]:
    new_node = {"name": "node9", "address": "198.51.100.99", "interface": "eth0", "ordinal": 9}
    return [
        ("post", "/api/v1/aliases/", alias_data(43)),
        ("put", f"/api/v1/aliases/{alias.pk}/", alias_data(42, description="x")),
        ("patch", f"/api/v1/aliases/{alias.pk}/", {"enabled": False}),
        ("delete", f"/api/v1/aliases/{alias.pk}/", None),
        ("post", "/api/v1/nodes/", new_node),
        ("put", f"/api/v1/nodes/{node.pk}/", {**new_node, "ordinal": node.ordinal}),
        ("patch", f"/api/v1/nodes/{node.pk}/", {"maintenance": True}),
        ("delete", f"/api/v1/nodes/{node.pk}/?force=true", None),
    ]


READS = ["/api/v1/", "/api/v1/aliases/", "/api/v1/nodes/", "/api/schema/"]


def test_support_is_refused_every_write(
    support_api: APIClient, alias: IPAlias, nodes: list[Node]
) -> None:
    for method, url, body in writes(alias, nodes[2]):
        response = getattr(support_api, method)(url, body, format="json")
        assert response.status_code == 403, (method, url)
        assert response.json() == {"detail": "Your role may not change the cluster."}
    assert AuditEntry.objects.filter(actor__username="sam").count() == 0
    assert IPAlias.objects.get().version == 1


def test_support_reads_everything(support_api: APIClient, alias: IPAlias) -> None:
    for url in [*READS, f"/api/v1/aliases/{alias.pk}/"]:
        assert support_api.get(url).status_code == 200, url


def test_a_user_without_a_role_gets_nothing(charlie: User, alias: IPAlias) -> None:
    api = token_client(charlie)
    for url in READS:
        assert api.get(url).status_code == 403, url
    assert api.post("/api/v1/aliases/", alias_data(43), format="json").status_code == 403


def test_an_anonymous_call_is_asked_for_a_token(alias: IPAlias) -> None:
    response = APIClient().get("/api/v1/aliases/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_a_wrong_token_is_refused(alias: IPAlias) -> None:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert api.get("/api/v1/aliases/").status_code == 401


def test_the_administrator_writes_with_a_token(admin_api: APIClient, alias: IPAlias) -> None:
    response = admin_api.patch(f"/api/v1/aliases/{alias.pk}/", {"preempt": False}, format="json")
    assert response.status_code == 200
    entry = AuditEntry.objects.latest("id")
    assert (entry.actor_name, entry.action) == ("alice", "update")


def test_a_superuser_is_an_administrator(alias: IPAlias) -> None:
    root = User.objects.create_superuser("root", "root@example.org", None)
    response = token_client(root).delete(f"/api/v1/aliases/{alias.pk}/")
    assert response.status_code == 204


def test_session_authentication_works_and_checks_csrf(alice: User, alias: IPAlias) -> None:
    api = APIClient(enforce_csrf_checks=True)
    api.force_login(alice)
    assert api.get("/api/v1/aliases/").status_code == 200
    response = api.patch(f"/api/v1/aliases/{alias.pk}/", {"enabled": False}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


def test_role_names_for_the_pages(alice: User, sam: User, charlie: User) -> None:
    from django.contrib.auth.models import AnonymousUser

    from cluster import access

    assert [access.role_name(u) for u in (alice, sam, charlie, AnonymousUser())] == [
        "Administrator",
        "Support",
        "",
        "",
    ]
    assert [access.can_change(u) for u in (alice, sam, charlie)] == [True, False, False]
    assert [access.can_view(u) for u in (alice, sam, charlie)] == [True, True, False]
    User.objects.filter(pk=alice.pk).update(is_active=False)
    assert not access.can_view(User.objects.get(pk=alice.pk))


def test_a_token_is_obtained_with_username_and_password_and_then_works(alice: User) -> None:
    alice.set_password("correct horse")
    alice.save()
    anonymous = APIClient()
    response = anonymous.post(
        "/api/v1/auth/token/", {"username": alice.username, "password": "correct horse"}
    )
    assert response.status_code == 200
    token = response.json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/aliases/").status_code == 200


def test_a_wrong_password_gets_no_token(alice: User) -> None:
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": alice.username, "password": "wrong"}
    )
    assert response.status_code == 400
    assert "token" not in response.json()
    assert "non_field_errors" in response.json()


def test_the_docs_send_a_browser_without_a_session_to_the_login_page(
    sam: User, charlie: User
) -> None:
    from django.test import Client

    browser = Client()
    response = browser.get("/api/docs/")
    assert response.status_code == 302  # not DRF's bare "401 Unauthorized" page
    assert response["Location"] == "/login/?next=/api/docs/"
    browser.force_login(charlie)
    refused = browser.get("/api/docs/")
    assert refused.status_code == 403
    assert "Your account has no role in this cluster." in refused.content.decode()
    browser.force_login(sam)
    assert browser.get("/api/docs/").status_code == 200
    # Automation with a token is left to the API's own authentication.
    assert token_client(sam).get("/api/docs/").status_code == 200
    assert APIClient().get("/api/docs/", HTTP_AUTHORIZATION="Token nope").status_code == 401


def test_an_administrator_who_is_not_a_superuser_reaches_no_other_users_token(
    admin_api: APIClient, alice: User
) -> None:
    from django.test import Client

    from cluster import services

    root = User.objects.create_superuser("root", "root@example.org", None)
    roots_key = services.grant_token(None, root)
    # No endpoint lists tokens or users; the token endpoint only makes one, from
    # the user's own password.
    paths = admin_api.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    assert [p for p in paths if "token" in p or "user" in p] == ["/api/v1/auth/token/"]
    assert admin_api.get("/api/v1/auth/token/").status_code == 405
    # Nor does the admin show root's key (DRF's token pages once did, to alice too).
    browser = Client()
    browser.force_login(alice)
    for url in ["/admin/", "/admin/authtoken/tokenproxy/", "/admin/knox/authtoken/"]:
        assert roots_key not in browser.get(url).content.decode(), url
    own_only = browser.get("/admin/knox/authtoken/").content.decode()
    assert "1 auth token" in own_only  # alice's, which admin_api made
    assert f"{roots_key[:8]}…" not in own_only
    # Root's token works for root.
    root_api = APIClient()
    root_api.credentials(HTTP_AUTHORIZATION=f"Token {roots_key}")
    assert root_api.get("/api/v1/nodes/").status_code == 200
