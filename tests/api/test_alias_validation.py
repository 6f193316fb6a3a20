"""Every alias rule, through the API: the field that is wrong and the message.

The messages come from cluster.validators and cluster.services, so the pages
and the admin show the same words (their own tests check that side).
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from cluster.models import AliasAddress, AliasPriority, AuditEntry, IPAlias, Node
from tests.factories import alias_data, make_alias

URL = "/api/v1/aliases/"


def post(api: APIClient, **overrides: Any) -> Any:
    data = alias_data(42)
    data.update(overrides)
    return api.post(URL, data, format="json")


def assert_refused(response: Any, field: str, message: str) -> None:
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    assert message in response.json()[field], response.json()


def test_a_valid_alias_is_created(admin_api: APIClient, nodes: list[Node]) -> None:
    response = post(admin_api)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["vhid"] == 42
    assert body["addresses"] == ["192.0.2.42/24"]
    assert body["priorities"] == [
        {
            "node": "node1",
            "priority": "primary",
            "advskew": 0,
            "advert_interval_ms": 1000.0,
            "master_down_ms": 3000.0,
        },
        {
            "node": "node2",
            "priority": "secondary",
            "advskew": 26,
            "advert_interval_ms": 1101.5625,
            "master_down_ms": 3101.5625,
        },
    ]


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"vhid": 0}, "vhid", "VHID must be between 1 and 255."),
        ({"vhid": 256}, "vhid", "VHID must be between 1 and 255."),
        ({"advbase": -1}, "advbase", "Advbase must be between 0 and 255."),
        ({"advbase": 256}, "advbase", "Advbase must be between 0 and 255."),
        ({"interface": "eth 0"}, "interface", "Interface must be a Linux interface name: "
         "1 to 15 letters, digits, '.', '-' or '_'."),
        ({"password": ""}, "password", "Password is required."),
        ({"password": "x" * 20}, "password", "Password must be at most 19 bytes (got 20)."),
        # Seven two-byte letters plus ten ASCII: 17 characters, 24 bytes.
        ({"password": "ééééééé0123456789"}, "password",
         "Password must be at most 19 bytes (got 24)."),
        ({"addresses": []}, "addresses", "At least one address is required."),
        ({"addresses": ["192.0.2.100"]}, "addresses",
         "192.0.2.100 needs a prefix length, e.g. 192.0.2.100/24 or 2001:db8::100/64."),
        ({"addresses": ["192.0.2.300/24"]}, "addresses",
         "'192.0.2.300/24' is not a valid IPv4 or IPv6 address with prefix."),
        ({"addresses": ["192.0.2.0/24"]}, "addresses",
         "192.0.2.0/24 is the network address of its prefix."),
        ({"addresses": ["192.0.2.255/24"]}, "addresses",
         "192.0.2.255/24 is the broadcast address of its prefix."),
        ({"addresses": ["2001:db8::/64"]}, "addresses",
         "2001:db8::/64 is the subnet-router anycast address of its prefix."),
        ({"addresses": ["224.0.0.18/24"]}, "addresses",
         "224.0.0.18/24 is not a unicast host address."),
        ({"addresses": ["192.0.2.7/24", "192.0.2.7/25"]}, "addresses",
         "192.0.2.7 appears more than once."),
        ({"addresses": ["198.51.100.12/24"]}, "addresses",
         "198.51.100.12 is the own address of node node2."),
        ({"priorities": []}, "priorities", "Exactly one node must be Primary (found 0)."),
        ({"priorities": [{"node": "node1", "priority": "primary"},
                         {"node": "node2", "priority": "primary"}]},
         "priorities", "Exactly one node must be Primary (found 2)."),
        ({"priorities": [{"node": "node1", "priority": "primary"},
                         {"node": "node2", "priority": "backup"},
                         {"node": "node2", "priority": "secondary"}]},
         "priorities", "node2 appears more than once."),
        ({"priorities": [{"node": "node1", "priority": "primary"},
                         {"node": "node7", "priority": "backup"}]},
         "priorities", "There is no node named 'node7'."),
        ({"priorities": [{"node": "node1", "priority": "primary"},
                         {"node": "node2", "priority": "master"}]},
         "priorities", "'master' is not a priority; choose one of primary, secondary, backup."),
        ({"description": "d" * 201}, "description",
         "Description must be at most 200 characters (got 201)."),
        ({"addresses": ["192.0.2.82/0"]}, "addresses", "192.0.2.82/0 has prefix length 0, "
         "which covers every address; write the prefix of the VIP's subnet, e.g. /24 or /64."),
        ({"addresses": ["2001:db8::82/0"]}, "addresses", "2001:db8::82/0 has prefix length 0, "
         "which covers every address; write the prefix of the VIP's subnet, e.g. /24 or /64."),
        # node2's own address, and an IPv4 one, written as IPv4-mapped IPv6.
        ({"addresses": ["::ffff:198.51.100.12/120"]}, "addresses",
         "::ffff:198.51.100.12/120 is an IPv4-mapped IPv6 address; write the IPv4 address "
         "198.51.100.12 instead."),
        # A zone would be dropped on the way into the database, silently.
        ({"addresses": ["fe80::1%eth0/64"]}, "addresses",
         "fe80::1%eth0/64: an address with a zone (%eth0) cannot be a virtual address."),
    ],
)  # fmt: skip
def test_it_rejects_an_invalid_alias(
    admin_api: APIClient, nodes: list[Node], overrides: dict[str, Any], field: str, message: str
) -> None:
    assert_refused(post(admin_api, **overrides), field, message)
    assert IPAlias.objects.count() == 0


@pytest.mark.parametrize(
    "address", ["192.0.2.1/31", "192.0.2.0/31", "192.0.2.9/32", "2001:db8::/127", "2001:db8::1/64"]
)
def test_it_accepts_the_edge_prefixes(
    admin_api: APIClient, nodes: list[Node], address: str
) -> None:
    assert post(admin_api, addresses=[address]).status_code == 201


def test_it_rejects_a_vhid_already_used_on_the_interface(
    admin_api: APIClient, nodes: list[Node]
) -> None:
    make_alias(42, description="mail", addresses=["192.0.2.50/24"])
    response = post(admin_api)
    assert_refused(response, "vhid", "VHID 42 is already used on interface eth0 by alias 'mail'.")


def test_the_same_vhid_is_fine_on_another_interface(
    admin_api: APIClient, nodes: list[Node]
) -> None:
    make_alias(42, addresses=["192.0.2.50/24"])
    assert post(admin_api, interface="eth1").status_code == 201


def test_it_rejects_an_address_of_another_alias(admin_api: APIClient, nodes: list[Node]) -> None:
    make_alias(7, description="web", addresses=["192.0.2.42/25"])
    assert_refused(
        post(admin_api), "addresses", "192.0.2.42 is already used by alias VHID 7 on eth0 (web)."
    )


def test_it_reports_every_problem_at_once(admin_api: APIClient, nodes: list[Node]) -> None:
    response = post(admin_api, vhid=0, password="", addresses=[])
    assert response.status_code == 400
    assert set(response.json()) == {"vhid", "password", "addresses"}


def test_a_failed_request_changes_nothing(admin_api: APIClient, nodes: list[Node]) -> None:
    alias = make_alias(42)
    audit_before = AuditEntry.objects.count()
    response = admin_api.put(
        f"{URL}{alias.pk}/",
        {**alias_data(42), "addresses": ["192.0.2.99/24"], "vhid": 300},
        format="json",
    )
    assert response.status_code == 400
    alias.refresh_from_db()
    assert (alias.vhid, alias.version) == (42, 1)
    assert list(AliasAddress.objects.values_list("ip", flat=True)) == ["192.0.2.42"]
    assert AliasPriority.objects.filter(alias=alias).count() == 2
    assert AuditEntry.objects.count() == audit_before


def test_an_update_keeps_the_password_when_none_is_given(
    admin_api: APIClient, nodes: list[Node]
) -> None:
    alias = make_alias(42)
    data = alias_data(42, description="renamed")
    del data["password"]
    response = admin_api.put(f"{URL}{alias.pk}/", data, format="json")
    assert response.status_code == 200, response.content
    alias.refresh_from_db()
    assert alias.get_password() == "vh-s3cret!"
    assert (alias.description, alias.version) == ("renamed", 2)


def test_a_partial_update_changes_only_what_is_given(
    admin_api: APIClient, nodes: list[Node]
) -> None:
    alias = make_alias(42)
    response = admin_api.patch(f"{URL}{alias.pk}/", {"enabled": False}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["enabled"], body["addresses"], body["version"]) == (False, ["192.0.2.42/24"], 2)


def test_an_alias_may_keep_its_own_addresses_on_update(
    admin_api: APIClient, nodes: list[Node]
) -> None:
    alias = make_alias(42)
    response = admin_api.patch(
        f"{URL}{alias.pk}/", {"addresses": ["192.0.2.42/24", "192.0.2.43/24"]}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["addresses"] == ["192.0.2.42/24", "192.0.2.43/24"]


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        # The service's words, as the page shows them, not DRF's own.
        ({"vhid": "abc"}, "vhid", "VHID must be a whole number."),
        ({"vhid": 4.5}, "vhid", "VHID must be a whole number."),
        ({"vhid": True}, "vhid", "VHID must be a whole number."),
        ({"vhid": None}, "vhid", "VHID is required."),
        ({"advbase": "fast"}, "advbase", "Advbase must be a whole number."),
        ({"interface": ["eth0"]}, "interface", "Interface must be text."),
        ({"password": 12345}, "password", "Password must be text."),
        ({"addresses": "192.0.2.42/24"}, "addresses",
         "Addresses must be a list of addresses with prefix."),
        ({"addresses": [42]}, "addresses", "Each address must be text, e.g. 192.0.2.100/24."),
        ({"priorities": {"node": "node1", "priority": "primary"}}, "priorities",
         'Priorities must be a list of {"node", "priority"} items.'),
        ({"priorities": ["node1"]}, "priorities",
         'Each priority must name a "node" and a "priority".'),
        ({"enabled": "maybe"}, "enabled", "Enabled must be true or false."),
        ({"preempt": 2}, "preempt", "Preempt must be true or false."),
        ({"description": {"text": "x"}}, "description", "Description must be text."),
    ],
)  # fmt: skip
def test_a_wrong_type_is_reported_on_its_field_with_the_service_message(
    admin_api: APIClient, nodes: list[Node], overrides: dict[str, Any], field: str, message: str
) -> None:
    response = post(admin_api, **overrides)
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    assert set(response.json()) == {field}
    assert response.json()[field][0] == message
    assert IPAlias.objects.count() == 0


def test_the_api_and_the_page_word_a_wrong_number_alike(
    admin_api: APIClient, nodes: list[Node], alice: Any
) -> None:
    from django.test import Client

    page = Client()
    page.force_login(alice)
    html = page.post("/system/advanced/ip-alias/add/", {"vhid": "abc"}).content.decode()
    api = post(admin_api, vhid="abc").json()["vhid"]
    assert api == ["VHID must be a whole number."]
    assert api[0] in html


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"vhid": None}, "vhid", "VHID is required."),
        ({"addresses": None}, "addresses", "At least one address is required."),
        ({"vhid": "x"}, "vhid", "VHID must be a whole number."),
        ({"enabled": "maybe"}, "enabled", "Enabled must be true or false."),
    ],
)
def test_a_bad_partial_update_is_refused_and_changes_nothing(
    admin_api: APIClient, nodes: list[Node], body: dict[str, Any], field: str, message: str
) -> None:
    alias = make_alias(42)
    audit_before = AuditEntry.objects.count()
    response = admin_api.patch(f"{URL}{alias.pk}/", body, format="json")
    assert response.status_code == 400, response.content
    assert response.json() == {field: [message]}
    alias.refresh_from_db()
    assert (alias.vhid, alias.enabled, alias.version) == (42, True, 1)
    assert AuditEntry.objects.count() == audit_before


@pytest.mark.parametrize("body", ["[]", '"x"', "42"])
def test_a_body_that_is_not_an_object_is_a_400(
    admin_api: APIClient, nodes: list[Node], body: str
) -> None:
    response = admin_api.post(URL, body, content_type="application/json")
    assert response.status_code == 400
    assert "Expected a dictionary" in response.json()["non_field_errors"][0]


def test_malformed_json_is_a_400(admin_api: APIClient, nodes: list[Node]) -> None:
    response = admin_api.post(URL, "{bad", content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]
    assert IPAlias.objects.count() == 0


def test_a_put_that_leaves_out_the_optional_fields_keeps_them(
    admin_api: APIClient, nodes: list[Node]
) -> None:
    # A PUT without "enabled" switched a disabled alias back on (and reset
    # advbase, preempt and the description to their defaults).
    alias = make_alias(42, enabled=False, preempt=False, advbase=3, description="parked")
    data = alias_data(42, addresses=["192.0.2.43/24"])
    for key in ("password", "enabled", "preempt", "advbase", "description"):
        data.pop(key, None)
    response = admin_api.put(f"{URL}{alias.pk}/", data, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["enabled"], body["preempt"], body["advbase"]) == (False, False, 3)
    assert (body["description"], body["addresses"]) == ("parked", ["192.0.2.43/24"])
    alias.refresh_from_db()
    assert alias.get_password() == "vh-s3cret!"
    # The required ones are still required on a PUT.
    del data["vhid"]
    refused = admin_api.put(f"{URL}{alias.pk}/", data, format="json")
    assert refused.json() == {"vhid": ["VHID is required."]}


def test_the_schema_says_what_an_update_without_a_field_does(admin_api: APIClient) -> None:
    schemas = admin_api.get("/api/schema/?format=json").json()["components"]["schemas"]
    request = schemas["AliasRequest"]["properties"]
    assert "absent on update keeps it" in request["password"]["description"]
    assert "absent on update (PUT too) keeps it" in request["enabled"]["description"]
    assert (
        "absent on update (PUT too) keeps it"
        in schemas["NodeRequest"]["properties"]["maintenance"]["description"]
    )
