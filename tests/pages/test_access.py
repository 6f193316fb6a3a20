"""Who may see and do what on the console's pages."""

from __future__ import annotations

import pytest
from django.test import Client

from cluster.models import AuditEntry, IPAlias, Node
from tests.pages.helpers import ALIAS_URL, NODES_URL, alias_post, client_for, node_post

READ_PAGES = [ALIAS_URL, "/system/cluster/", NODES_URL, "/system/audit/"]


def write_pages(alias: IPAlias, node: Node) -> list[str]:
    return [
        f"{ALIAS_URL}add/",
        f"{ALIAS_URL}{alias.pk}/edit/",
        f"{ALIAS_URL}{alias.pk}/delete/",
        f"{NODES_URL}add/",
        f"{NODES_URL}{node.pk}/edit/",
        f"{NODES_URL}{node.pk}/delete/",
    ]


def test_every_page_requires_login(alias, nodes):
    client = Client()
    for url in ["/", *READ_PAGES, *write_pages(alias, nodes[0])]:
        for method in (client.get, client.post):
            response = method(url)
            assert response.status_code == 302, url
            assert response["Location"].startswith("/login/?next="), url
    assert IPAlias.objects.count() == 1
    assert Node.objects.count() == 3


def test_the_login_page_logs_in_and_lands_on_the_ip_alias_page(alice):
    alice.set_password("alice-password")
    alice.save()
    client = Client()
    page = client.get("/login/")
    assert page.status_code == 200
    assert b'name="password"' in page.content
    response = client.post("/login/", {"username": "alice", "password": "alice-password"})
    assert response.status_code == 302
    assert response["Location"] == ALIAS_URL


def test_a_wrong_password_is_refused_on_the_login_page(alice):
    alice.set_password("alice-password")
    alice.save()
    response = Client().post("/login/", {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_logout_is_a_post_and_ends_the_session(alice_client):
    assert alice_client.get("/logout/").status_code == 405
    response = alice_client.post("/logout/")
    assert response.status_code == 302
    assert alice_client.get(ALIAS_URL).status_code == 302


def test_every_page_shows_who_is_logged_in_and_the_role(alice_client, sam_client, alias):
    for url in READ_PAGES:
        page = alice_client.get(url).content.decode()
        assert "<strong>alice</strong>" in page
        assert ">Administrator</span>" in page
        page = sam_client.get(url).content.decode()
        assert "<strong>sam</strong>" in page
        assert ">Support</span>" in page


def test_support_sees_every_page_without_any_control(sam_client, alias, nodes):
    for url in READ_PAGES:
        response = sam_client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        for url_that_changes in write_pages(alias, nodes[0]):
            assert f'href="{url_that_changes}"' not in html, (url, url_that_changes)
        assert "Add IP alias" not in html
        assert "Add node" not in html
    assert "VHID" in sam_client.get(ALIAS_URL).content.decode()


def test_the_administrator_sees_the_controls(alice_client, alias, nodes):
    html = alice_client.get(ALIAS_URL).content.decode()
    assert f'href="{ALIAS_URL}add/"' in html
    assert f'href="{ALIAS_URL}{alias.pk}/edit/"' in html
    assert f'href="{ALIAS_URL}{alias.pk}/delete/"' in html
    html = alice_client.get(NODES_URL).content.decode()
    assert f'href="{NODES_URL}{nodes[0].pk}/edit/"' in html


def test_support_is_refused_every_write(sam_client, alias, nodes):
    posts = {
        f"{ALIAS_URL}add/": alias_post(nodes),
        f"{ALIAS_URL}{alias.pk}/edit/": alias_post(nodes, vhid="9"),
        f"{ALIAS_URL}{alias.pk}/delete/": {},
        f"{NODES_URL}add/": node_post(),
        f"{NODES_URL}{nodes[2].pk}/edit/": node_post(name="renamed"),
        f"{NODES_URL}{nodes[2].pk}/delete/": {"force": "1"},
    }
    audit_before = AuditEntry.objects.count()
    for url, data in posts.items():
        assert sam_client.get(url).status_code == 403, url
        assert sam_client.post(url, data).status_code == 403, url
    assert AuditEntry.objects.count() == audit_before
    assert IPAlias.objects.get().vhid == 1
    assert sorted(Node.objects.values_list("name", flat=True)) == ["node1", "node2", "node3"]


def test_the_403_page_explains_the_refusal(sam_client, alias):
    response = sam_client.get(f"{ALIAS_URL}add/")
    assert b"Your role cannot change the configuration." in response.content


@pytest.mark.parametrize("url", READ_PAGES)
def test_a_user_without_a_role_is_refused(charlie, url):
    assert client_for(charlie).get(url).status_code == 403


def test_the_menu_links_api_and_admin(alice_client, sam_client):
    for client in (alice_client, sam_client):
        html = client.get(ALIAS_URL).content.decode()
        assert 'href="/api/docs/"' in html
        assert 'href="/admin/"' in html
        assert 'href="/system/advanced/ip-alias/"' in html
        assert 'href="/system/cluster/"' in html
        assert 'href="/system/cluster/nodes/"' in html
        assert 'href="/system/audit/"' in html


def test_a_missing_page_is_a_console_page_not_the_bare_server_one(alice_client, alias):
    for client in (alice_client, Client()):
        response = client.get("/system/nothing-here/")
        assert response.status_code == 404
        html = response.content.decode()
        assert "<title>Not found · Appliance console</title>" in html
        assert "/static/console/console.css" in html
        assert 'href="/">Back to the console</a>' in html
    gone = alice_client.get(f"{ALIAS_URL}{alias.pk + 100}/edit/")
    assert gone.status_code == 404
    assert "may have been deleted" in gone.content.decode()


def test_the_server_error_page_renders_without_a_request():
    from django.template import loader

    html = loader.get_template("500.html").render()
    assert "Server error" in html
    assert "/static/console/console.css" in html


def test_the_console_has_an_icon(alice_client):
    html = alice_client.get(ALIAS_URL).content.decode()
    assert '<link rel="icon" href="/static/console/favicon.svg"' in html
    response = Client().get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"] == "/static/console/favicon.svg"


def test_account_changes_by_an_administrator_are_on_the_audit_log_page(alice_client, alice):
    from cluster import services

    services.create_account(
        alice, {"username": "sue", "role": "support", "password": "plum-orbit-lantern-41"}
    )
    html = alice_client.get("/system/audit/").content.decode()
    assert "<td>alice</td>" in html
    assert "sue" in html
    assert "plum-orbit-lantern-41" not in html
    assert "(changed)" in html


def test_a_locked_out_browser_gets_a_console_page_with_retry_after(alice, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.AXES_FAILURE_LIMIT = 2
    client = Client()
    for _ in range(2):
        response = client.post("/login/", {"username": "alice", "password": "wrong"})
    assert response.status_code == 429
    assert response["Retry-After"] == "900"
    html = response.content.decode()
    assert "<title>Locked out · Appliance console</title>" in html
    assert "/static/console/console.css" in html
    assert "Try again in 15 minutes." in html
