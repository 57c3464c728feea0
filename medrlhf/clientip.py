"""The client's address, the same for the login lockout, the API's
throttles and the audit log.

Behind ``TRUSTED_PROXY_HOPS`` reverse proxies (the TLS proxy the README
recommends is one), each appends the address it received the request from
to ``X-Forwarded-For``, so the client is the entry that many places from the
right. Entries further left were written by the client and are never
trusted. With no trusted proxy (the default) the header is ignored and the
client is ``REMOTE_ADDR``.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest
from rest_framework.request import Request


def _address(text: str) -> str | None:
    text = text.strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def client_ip(request: HttpRequest | Request | None) -> str | None:
    """The client's address for ``request`` (None without one)."""
    if request is None:
        return None
    meta = getattr(request, "META", {})
    remote = meta.get("REMOTE_ADDR") or None
    hops = settings.TRUSTED_PROXY_HOPS
    forwarded = meta.get("HTTP_X_FORWARDED_FOR", "")
    if hops <= 0 or not forwarded:
        return remote
    entries = [entry for entry in forwarded.split(",") if entry.strip()]
    if not entries:
        return remote
    # The header had fewer entries than proxies: the leftmost is as far as
    # the chain of trusted proxies reached.
    chosen = entries[-hops] if len(entries) >= hops else entries[0]
    return _address(chosen) or remote
