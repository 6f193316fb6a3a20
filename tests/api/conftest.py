"""Fixtures of the API tests: the named actors with token-authenticated clients.

alice is an administrator, sam is support, charlie has no role. ``nodes``
makes node1..node3 (ordinals 1..3, addresses 198.51.100.11..13).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from rest_framework.test import APIClient

from cluster import services


@pytest.fixture(autouse=True)
def _no_redis(settings: Any, tmp_path: Path) -> None:
    """No Redis unless a test asks for ``redis_url``: never the host's (live
    state then reads as unavailable, quickly: the socket does not exist)."""
    settings.REDIS_URL = f"redis+socket://{tmp_path}/no-redis.sock"


@pytest.fixture(autouse=True)
def _fresh_throttle() -> None:
    """The token endpoint's throttle counts in the cache, which outlives a test's
    transaction: start each test with no request counted (lockouts are rows, and
    roll back with the test)."""
    cache.clear()


def token_client(user: User) -> APIClient:
    """A client sending a new token of ``user``, made as `manage.py create_api_token` makes it."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {services.grant_token(None, user)}")
    return client


@pytest.fixture
def admin_api(alice: User) -> APIClient:
    return token_client(alice)


@pytest.fixture
def support_api(sam: User) -> APIClient:
    return token_client(sam)
