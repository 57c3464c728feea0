"""API error responses: domain errors become JSON with their own status code."""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

from annotations.errors import DomainError, ImportFailed


def _code(exc: DomainError) -> str:
    name = type(exc).__name__
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus ``DomainError`` -> ``{"detail", "code"}`` at its status.

    The request's transaction is rolled back, as DRF does for its own errors.
    """
    if isinstance(exc, DomainError):
        set_rollback()
        data: dict[str, Any] = {"detail": str(exc), "code": _code(exc)}
        if isinstance(exc, ImportFailed):
            data["report"] = exc.report
        return Response(data, status=exc.status_code)
    return exception_handler(exc, context)
