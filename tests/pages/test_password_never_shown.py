"""An alias's password is write-only: no page ever contains it."""

from __future__ import annotations

from tests.factories import ALIAS_SECRET
from tests.pages.helpers import ALIAS_URL, alias_post

NEW_PASSWORD = "Brand-New-77"
TYPED_PASSWORD = "Typed-Not-Saved"


def test_no_page_contains_the_password(alice_client, sam_client, alias, nodes):
    edit = f"{ALIAS_URL}{alias.pk}/edit/"
    # Change it once, so the audit log has an entry about a password change.
    assert (
        alice_client.post(edit, alias_post(nodes, vhid="1", password=NEW_PASSWORD)).status_code
        == 302
    )
    failed = alice_client.post(edit, alias_post(nodes, vhid="0", password=TYPED_PASSWORD))
    assert failed.status_code == 200
    assert failed.context["form"].errors
    failed_add = alice_client.post(
        f"{ALIAS_URL}add/", alias_post(nodes, vhid="0", password=TYPED_PASSWORD)
    )
    pages = [
        failed,
        failed_add,
        alice_client.get(ALIAS_URL),
        alice_client.get(edit),
        alice_client.get(f"{ALIAS_URL}{alias.pk}/delete/"),
        alice_client.get("/system/cluster/"),
        alice_client.get("/system/cluster/nodes/"),
        alice_client.get("/system/audit/"),
        sam_client.get(ALIAS_URL),
        sam_client.get("/system/audit/"),
    ]
    for page in pages:
        html = page.content.decode()
        for secret in (ALIAS_SECRET, NEW_PASSWORD, TYPED_PASSWORD):
            assert secret not in html, (page.request["PATH_INFO"], secret)
    # The audit log says that it changed, and nothing more.
    assert "(changed)" in alice_client.get("/system/audit/").content.decode()


def test_the_password_input_is_empty_on_the_edit_form(alice_client, alias):
    html = alice_client.get(f"{ALIAS_URL}{alias.pk}/edit/").content.decode()
    field = html[html.index('name="password"') - 80 : html.index('name="password"') + 120]
    assert 'type="password"' in field
    assert "value=" not in field
