"""A refused request is logged as one line on django.request (who, what, why),
never with a traceback: the support role's every refused click used to write
some 50 lines into the web log."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from cluster.models import IPAlias, Node
from tests.api.conftest import token_client
from tests.pages.helpers import client_for


@pytest.fixture
def request_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="django.request")
    return caplog


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "django.request"]


def assert_one_line(caplog: pytest.LogCaptureFixture, line: str) -> None:
    records = refusals(caplog)
    assert [r.getMessage() for r in records] == [line]
    assert records[0].levelno == logging.WARNING
    assert records[0].exc_info is None
    assert records[0].status_code == 403  # type: ignore[attr-defined]
    assert "Traceback" not in caplog.text


def test_a_refused_page_is_one_line(
    sam: User, nodes: list[Node], request_log: pytest.LogCaptureFixture
) -> None:
    response = client_for(sam).get("/system/advanced/ip-alias/add/")
    assert response.status_code == 403
    # Still the console's 403 page, with the reason.
    assert "Your role cannot change the configuration." in response.content.decode()
    assert_one_line(
        request_log,
        "Forbidden: GET /system/advanced/ip-alias/add/ by sam "
        "(Your role cannot change the configuration.)",
    )


def test_a_refused_admin_change_is_one_line(
    sam: User, nodes: list[Node], request_log: pytest.LogCaptureFixture
) -> None:
    response = client_for(sam).post("/admin/cluster/node/add/", {"name": "node4"})
    assert response.status_code == 403
    assert_one_line(
        request_log, "Forbidden: POST /admin/cluster/node/add/ by sam (no reason given)"
    )
    assert Node.objects.count() == 3


def test_a_refused_api_write_is_one_line(
    sam: User, nodes: list[Node], request_log: pytest.LogCaptureFixture
) -> None:
    response = token_client(sam).post("/api/v1/aliases/", {}, format="json")
    assert response.status_code == 403
    assert_one_line(
        request_log,
        "Forbidden: POST /api/v1/aliases/ by sam (Your role may not change the cluster.)",
    )
    assert not IPAlias.objects.exists()


def test_the_api_docs_refusal_is_one_line(
    charlie: User, request_log: pytest.LogCaptureFixture
) -> None:
    response = client_for(charlie).get("/api/docs/")
    assert response.status_code == 403
    assert_one_line(
        request_log,
        "Forbidden: GET /api/docs/ by charlie (Your account has no role in this cluster.)",
    )


def test_an_unauthenticated_api_call_is_one_line(
    db: None, request_log: pytest.LogCaptureFixture
) -> None:
    response = APIClient().get("/api/v1/nodes/")
    assert response.status_code == 401
    records = refusals(request_log)
    assert [r.getMessage() for r in records] == [
        "Unauthorized: GET /api/v1/nodes/ by anonymous "
        "(Authentication credentials were not provided.)"
    ]
    assert records[0].exc_info is None
