"""The API's token check (DRF imports it from the settings, so it imports no views)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox.auth import TokenAuthentication as KnoxTokenAuthentication


class TokenAuthentication(KnoxTokenAuthentication):  # type: ignore[misc]
    """knox's token check without its sweep of the user's other tokens.

    knox deletes the user's expired tokens on every request, which costs one
    query per API call (the list endpoints' query budget); ``services.grant_token``
    purges them when a new one is made instead. An expired token presented here
    is still refused and deleted.
    """

    def _cleanup_token(self, auth_token: Any) -> bool:
        if auth_token.expiry is not None and auth_token.expiry < timezone.now():
            auth_token.delete()
            return True
        return False


class TokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """The schema's name for it: ``Authorization: Token <key>``, as before."""

    target_class = "cluster.api.authentication.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix="Token"
        )
