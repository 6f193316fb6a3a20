"""Fixtures of the API tests: the named actors with token-authenticated clients.

alice is an administrator, sam is support, charlie has no role. ``nodes``
makes node1..node3 (ordinals 1..3, addresses 198.51.100.11..13).
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


def token_client(user: User) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def admin_api(alice: User) -> APIClient:
    return token_client(alice)


@pytest.fixture
def support_api(sam: User) -> APIClient:
    return token_client(sam)
