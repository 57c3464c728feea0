"""Exchanging a username and password for an API token."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import authenticate, user_logged_in
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from medrlhf.throttling import ClientIpMixin

from ..models import ApiToken
from ..services.tokens import token_issue, token_revoke, token_rotate
from ..users import signed_in
from .common import ErrorOutputSerializer

DEFAULT_LOGIN_RATE = "10/minute"


class LoginRateThrottle(ClientIpMixin, AnonRateThrottle):
    """Per client address; ``DEFAULT_THROTTLE_RATES["login"]`` overrides the rate."""

    scope = "login"

    def get_rate(self) -> str:
        rates = settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {})
        assert isinstance(rates, dict)
        return rates.get(self.scope, DEFAULT_LOGIN_RATE)


@extend_schema_serializer(component_name="Token")
class TokenOutputSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Shown once; only its digest is stored.")
    expires_at = serializers.DateTimeField()


class TokenCreateApi(APIView):
    """Trade a username and password for the user's API token."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes = [LoginRateThrottle]

    @extend_schema_serializer(component_name="TokenCreateInput")
    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=256, trim_whitespace=False)

    OutputSerializer = TokenOutputSerializer

    @extend_schema(
        operation_id="auth_token_create",
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            400: ErrorOutputSerializer,
            401: ErrorOutputSerializer,
            429: ErrorOutputSerializer,
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        # authenticate() with the request lets django-axes count failures and
        # refuse locked-out clients.  Failures return a response instead of
        # raising, so that the request's transaction keeps axes' records.
        user = authenticate(request=request, **data.validated_data)
        if getattr(request, "axes_locked_out", False):
            return Response(
                {
                    "detail": "Too many failed logins; try again later.",
                    "code": "locked_out",
                },
                status=status.HTTP_429_TOO_MANY_REQUESTS,
            )
        if user is None:
            return Response(
                {"detail": "Wrong username or password.", "code": "login_failed"},
                status=status.HTTP_401_UNAUTHORIZED,
                headers={"WWW-Authenticate": "Token"},
            )
        # Same signal as a session login: axes resets the failure count,
        # last_login is updated and the audit log records "login".
        user_logged_in.send(sender=type(user), request=request, user=user)
        key, token = token_issue(user=user, request=request._request)
        return Response(
            TokenOutputSerializer({"token": key, "expires_at": token.expires_at}).data
        )


def _calling_token(request: Request) -> ApiToken:
    if not isinstance(request.auth, ApiToken):
        raise NotAuthenticated("Call this with the API token itself (Token auth).")
    return request.auth


class TokenRotateApi(APIView):
    """Trade the calling token for a new one; the old stops working at once."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="auth_token_rotate",
        request=None,
        responses={200: TokenOutputSerializer, 401: ErrorOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        key, token = token_rotate(
            token=_calling_token(request), request=request._request
        )
        return Response(
            TokenOutputSerializer({"token": key, "expires_at": token.expires_at}).data
        )


class TokenRevokeApi(APIView):
    """Revoke the calling token (log the client out)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="auth_token_revoke",
        request=None,
        responses={204: None, 401: ErrorOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        token_revoke(
            token=_calling_token(request),
            actor=signed_in(request),
            request=request._request,
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
