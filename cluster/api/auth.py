"""API tokens: how a client gets one, how a request proves it, how often it may try.

Tokens are django-rest-knox's: the database keeps a SHA-512 digest and the first
characters, so the key is shown once, when it is made (here, or by
``manage.py create_api_token``), and never again, not even to a superuser.
Clients still send ``Authorization: Token <key>``, checked by
``cluster.api.authentication.TokenAuthentication``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate, user_logged_in
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from cluster import services
from cluster.lockout import client_address


class TokenThrottle(SimpleRateThrottle):
    """``API_TOKEN_THROTTLE_PER_MINUTE`` token requests per client address.

    The lockout stops guessing one user's password; this stops one address from
    trying many user names. The rate is read per request, not once at import as
    DRF's ``DEFAULT_THROTTLE_RATES`` are, so a test or a reload can change it.
    """

    scope = "token"

    def get_rate(self) -> str:
        return f"{settings.API_TOKEN_THROTTLE_PER_MINUTE}/min"

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": client_address(request)}


class LoginSerializer(serializers.Serializer[Any]):
    username = serializers.CharField(write_only=True)
    password = serializers.CharField(write_only=True, trim_whitespace=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The plain Django request: axes marks a lockout on it, which its
        # middleware then answers (cluster.lockout.lockout_response).
        request = self.context["request"]
        user = authenticate(request, username=attrs["username"], password=attrs["password"])
        if user is None:
            raise serializers.ValidationError(
                _("Unable to log in with provided credentials."), code="authorization"
            )
        attrs["user"] = user
        return attrs


TOKEN_RESPONSE = inline_serializer("Token", fields={"token": serializers.CharField()})


class ObtainTokenView(APIView):
    """POST a user name and password, get a new API token for that user.

    Every call makes a new token (the stored digest cannot give an old one
    back). Failed logins count towards the lockout like the login pages'; too
    many calls from one address get 429 with Retry-After.
    """

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes = [TokenThrottle]
    serializer_class = LoginSerializer

    @extend_schema(
        request=LoginSerializer,
        # 400 (wrong user name or password) and 429 (too many attempts, or locked
        # out) are added with their bodies by cluster.api.schema, as everywhere.
        responses={200: TOKEN_RESPONSE},
    )
    def post(self, request: Request) -> Response:
        django_request = request._request
        serializer = LoginSerializer(data=request.data, context={"request": django_request})
        serializer.is_valid(raise_exception=True)
        user = serializer.validated_data["user"]
        key = services.grant_token(user, user)
        # As a login page does: last_login is updated and the failure count cleared.
        user_logged_in.send(sender=type(user), request=django_request, user=user)
        return Response({"token": key})
