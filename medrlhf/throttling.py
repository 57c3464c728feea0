"""API throttles that identify the client as the lockout and the audit log
do (``medrlhf.clientip``), never from a header the client wrote."""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.throttling import AnonRateThrottle

from .clientip import client_ip


class ClientIpMixin:
    def get_ident(self, request: Request) -> str:
        return client_ip(request) or ""


class AnonThrottle(ClientIpMixin, AnonRateThrottle):
    """Anonymous requests, per client address."""
