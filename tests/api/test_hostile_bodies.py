"""A JSON body nested too deeply for the decoder is a 400 naming the body, on
every endpoint that reads one (the token view included), and changes nothing."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from cluster.models import AuditEntry, IPAlias, Node

DEEP = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a":' * 100_000 + "1" + "}" * 100_000
MESSAGE = "JSON parse error - the request body nests arrays or objects too deeply."


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT])
def test_the_token_endpoint_rejects_a_deeply_nested_body(db: None, body: str) -> None:
    response = APIClient().generic(
        "POST", "/api/v1/auth/token/", body, content_type="application/json"
    )
    assert response.status_code == 400, response.content[:200]
    assert response.json() == {"detail": MESSAGE}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/aliases/"),
        ("PUT", "/api/v1/aliases/{alias}/"),
        ("PATCH", "/api/v1/aliases/{alias}/"),
        ("POST", "/api/v1/nodes/"),
        ("PUT", "/api/v1/nodes/{node}/"),
        ("PATCH", "/api/v1/nodes/{node}/"),
    ],
)
def test_alias_and_node_writes_reject_a_deeply_nested_body(
    admin_api: APIClient, nodes: list[Node], method: str, path: str
) -> None:
    from tests.factories import make_alias

    alias = make_alias(42)
    entries = AuditEntry.objects.count()
    url = path.format(alias=alias.pk, node=nodes[0].pk)
    response = admin_api.generic(method, url, DEEP, content_type="application/json")
    assert response.status_code == 400, response.content[:200]
    assert response.json() == {"detail": MESSAGE}
    assert AuditEntry.objects.count() == entries
    assert IPAlias.objects.get().version == 1


def test_an_ordinary_malformed_body_keeps_drfs_message(admin_api: APIClient, db: None) -> None:
    response = admin_api.generic("POST", "/api/v1/nodes/", "{", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON parse error - ")
