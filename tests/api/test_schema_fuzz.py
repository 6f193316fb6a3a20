"""Schemathesis against the API's own schema: no server error, no answer the
schema does not describe (status code, content type, body, headers), and no
request that breaks the schema accepted.

It runs in-process against the WSGI application, with alice's token, inside
the test's database transaction: nothing reaches Redis (``_no_redis``), no
apply task leaves (on-commit callbacks never run in a rolled-back test), and
Hypothesis keeps no example database on disk. A fixed seed and a bounded number
of examples per operation keep it to about a minute on two cores, the same
cases on every run.

One check is left out: ``positive_data_acceptance`` expects any request that
fits the schema to succeed, but many rules are not the schema's to say (a VHID
already used on the interface, a node that does not exist, exactly one
Primary): those are 400s naming the field, by design.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import positive_data_acceptance

from appliance.wsgi import application
from cluster import services
from cluster.models import Node
from tests.factories import make_alias

EXAMPLES_PER_OPERATION = 40

schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
schema.app = application


@pytest.fixture
def keep_the_test_connection() -> Iterator[None]:
    """The WSGI handler closes the database connection after each request, as
    it should in production; here that connection holds the test's transaction
    (PostgreSQL then fails every later query). Django's test client keeps it
    open the same way."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def token_header(
    alice: User, nodes: list[Node], settings: Any, keep_the_test_connection: None
) -> dict[str, str]:
    # Schemathesis's WSGI client names the host "localhost".
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "localhost"]
    # Every token request hashes its password (unknown users too, against timing
    # attacks): the production hasher's 0.3 s each would be most of the run.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Objects for the detail routes to find now and then (ids start at 1).
    make_alias(1)
    services.create_check(None, {"name": "smtp-25", "kind": "smtp"})
    # Wrong passwords from the fuzzer must not lock alice out mid-run (429s of the
    # throttle are documented answers, checked like any other).
    settings.AXES_ENABLED = False
    return {"Authorization": f"Token {services.grant_token(None, alice)}"}


@schema.parametrize()
@hypothesis_settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    database=None,
    # Fixtures are per operation, not per example: every example of an
    # operation shares its database transaction, as requests in a row do.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_api_answers_as_its_schema_says(case: Any, token_header: dict[str, str]) -> None:
    case.call_and_validate(headers=token_header, excluded_checks=[positive_data_acceptance])
