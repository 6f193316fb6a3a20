"""What the schema promises beyond success: the error answers, the ranges, and
the query parameters that are refused rather than quietly ignored."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from cluster.models import Node


@pytest.fixture
def schema(admin_api: APIClient) -> dict[str, Any]:
    response = admin_api.get("/api/schema/?format=json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def parameter(operation: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in operation["parameters"] if p["name"] == name)
    return found


@pytest.mark.parametrize(
    ("path", "method", "codes"),
    [
        ("/api/v1/aliases/", "get", {"200", "400", "401", "403", "404"}),
        ("/api/v1/aliases/", "post", {"201", "400", "401", "403"}),
        ("/api/v1/aliases/{id}/", "get", {"200", "401", "403", "404"}),
        ("/api/v1/aliases/{id}/", "patch", {"200", "400", "401", "403", "404"}),
        ("/api/v1/aliases/{id}/", "delete", {"204", "401", "403", "404"}),
        ("/api/v1/nodes/{id}/", "delete", {"204", "400", "401", "403", "404"}),
        ("/api/v1/status/", "get", {"200", "401", "403"}),
        ("/api/v1/transitions/", "get", {"200", "400", "401", "403", "404"}),
        # Open to all and reads no credentials: no 401, no 403; throttled: 429.
        ("/api/v1/auth/token/", "post", {"200", "400", "429"}),
    ],
)
def test_the_schema_lists_the_error_answers(
    schema: dict[str, Any], path: str, method: str, codes: set[str]
) -> None:
    responses = schema["paths"][path][method]["responses"]
    assert set(responses) == codes
    for code in codes - {"200", "201", "204"}:
        name = "ValidationError" if code == "400" else "ErrorDetail"
        body = responses[code]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{name}"}


def test_the_error_bodies_are_described(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    assert components["ErrorDetail"]["required"] == ["detail"]
    field_errors = components["ValidationError"]
    assert field_errors["additionalProperties"] == {"type": "array", "items": {"type": "string"}}
    assert set(field_errors["properties"]) == {"detail", "non_field_errors"}


def test_the_token_endpoint_needs_no_credentials(schema: dict[str, Any]) -> None:
    assert {} in schema["paths"]["/api/v1/auth/token/"]["post"]["security"]
    assert {} not in schema["paths"]["/api/v1/aliases/"]["get"]["security"]


def test_the_schema_carries_the_ranges(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    alias = components["AliasRequest"]["properties"]
    assert (alias["vhid"]["minimum"], alias["vhid"]["maximum"]) == (1, 255)
    assert (alias["advbase"]["minimum"], alias["advbase"]["maximum"]) == (0, 255)
    assert alias["password"]["maxLength"] == 19
    assert alias["interface"]["maxLength"] == 15
    assert alias["description"]["maxLength"] == 200
    assert (alias["addresses"]["minItems"], alias["addresses"]["maxItems"]) == (1, 16)
    node = components["NodeRequest"]["properties"]
    assert (node["ordinal"]["minimum"], node["ordinal"]["maximum"]) == (1, 9)
    assert node["name"]["maxLength"] == 32
    for path in ("/api/v1/aliases/", "/api/v1/nodes/", "/api/v1/transitions/"):
        listing = schema["paths"][path]["get"]
        assert parameter(listing, "page")["schema"]["minimum"] == 1
        size = parameter(listing, "page_size")["schema"]
        assert (size["minimum"], size["maximum"], size["default"]) == (1, 1000, 50)
    for path, name, high in [
        ("/api/v1/aliases/", "vhid", 255),
        ("/api/v1/transitions/", "vhid", 255),
        ("/api/v1/nodes/", "ordinal", 9),
    ]:
        bounds = parameter(schema["paths"][path]["get"], name)["schema"]
        assert (bounds["type"], bounds["minimum"], bounds["maximum"]) == ("integer", 1, high)


@pytest.mark.parametrize("size", ["-2.00001", "0", "-1", "1001", "abc", "1.5", ""])
@pytest.mark.parametrize("path", ["/api/v1/aliases/", "/api/v1/nodes/", "/api/v1/transitions/"])
def test_a_page_size_out_of_range_is_a_400_naming_it(
    admin_api: APIClient, nodes: list[Node], path: str, size: str
) -> None:
    response = admin_api.get(path, {"page_size": size})
    assert response.status_code == 400, response.content
    assert response.json() == {
        "page_size": ["Page size must be a whole number between 1 and 1000."]
    }


@pytest.mark.parametrize("size", ["1", "1000", " 3 "])
def test_a_page_size_in_range_is_used(admin_api: APIClient, nodes: list[Node], size: str) -> None:
    response = admin_api.get("/api/v1/nodes/", {"page_size": size})
    assert response.status_code == 200
    assert len(response.json()["results"]) == min(int(size), 3)


@pytest.mark.parametrize(
    ("path", "query", "message"),
    [
        ("/api/v1/transitions/", "since=", "Enter a valid date/time."),
        ("/api/v1/transitions/", "until=", "Enter a valid date/time."),
        ("/api/v1/transitions/", "since=%20", "Enter a valid date/time."),
        ("/api/v1/transitions/", "vhid=", "Enter a whole number."),
        ("/api/v1/aliases/", "vhid=", "Enter a whole number."),
        ("/api/v1/aliases/", "enabled=", "Enabled must be true or false."),
        ("/api/v1/aliases/", "preempt=", "Preempt must be true or false."),
        ("/api/v1/nodes/", "maintenance=", "Maintenance must be true or false."),
        ("/api/v1/nodes/", "ordinal=", "Enter a whole number."),
    ],
)
def test_a_blank_filter_is_a_400_naming_it(
    admin_api: APIClient, path: str, query: str, message: str
) -> None:
    """Not read as absent: django-filter dropped a blank filter, so the client
    got every row as if it had not asked."""
    response = admin_api.get(f"{path}?{query}")
    assert response.status_code == 400
    assert response.json() == {query.split("=")[0]: [message]}


@pytest.mark.parametrize(
    ("query", "field"), [("vhid=0", "vhid"), ("vhid=1.5", "vhid"), ("ordinal=10", "ordinal")]
)
def test_a_number_filter_out_of_range_is_a_400_naming_it(
    admin_api: APIClient, query: str, field: str
) -> None:
    path = "/api/v1/nodes/" if field == "ordinal" else "/api/v1/aliases/"
    response = admin_api.get(f"{path}?{query}")
    assert response.status_code == 400
    assert list(response.json()) == [field]


@pytest.mark.parametrize("path", ["/api/v1/aliases/-2.5e-10/", "/api/v1/no-such-endpoint/"])
def test_an_api_url_that_matches_no_route_answers_in_json(admin_api: APIClient, path: str) -> None:
    response = admin_api.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


def test_a_console_url_that_matches_no_route_keeps_its_page(admin_api: APIClient) -> None:
    response = admin_api.get("/system/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_a_throttled_view_documents_429(monkeypatch: pytest.MonkeyPatch) -> None:
    from drf_spectacular.generators import SchemaGenerator
    from rest_framework.authtoken.views import ObtainAuthToken
    from rest_framework.throttling import AnonRateThrottle

    monkeypatch.setattr(ObtainAuthToken, "throttle_classes", (AnonRateThrottle,))
    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    assert "429" in paths["/api/v1/auth/token/"]["post"]["responses"]
    assert "429" not in paths["/api/v1/aliases/"]["get"]["responses"]
