"""Pieces every API module uses: pagination, error shape, file renderers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from medrlhf.pagination import LimitOffsetPagination


class OwnTransactionApiView(APIView):
    """A view whose service opens the one transaction it needs.

    Outside it the view only reads, so the request-wide transaction
    (``ATOMIC_REQUESTS``) would add a BEGIN/COMMIT around, and a SAVEPOINT
    and RELEASE inside, for nothing: two round trips on every image a
    physician rates.
    """

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        return transaction.non_atomic_requests(super().as_view(**initkwargs))

    def handle_exception(self, exc: Exception) -> Response:
        # DRF's handler marks the enclosing transaction for rollback.  The
        # service's own transaction has already ended by now, so an enclosing
        # one belongs to a caller (a test, a script), not to this request.
        enclosing = connection.in_atomic_block
        doomed = transaction.get_rollback() if enclosing else False
        response = super().handle_exception(exc)
        if enclosing:
            transaction.set_rollback(doomed)
        return response


@extend_schema_serializer(component_name="Error")
class ErrorOutputSerializer(serializers.Serializer):
    """What every refused request answers (see medrlhf.exceptions)."""

    detail = serializers.CharField()
    code = serializers.CharField(required=False)


def paginated_response(
    *,
    serializer_class: type[serializers.Serializer],
    queryset: QuerySet[Any],
    request: Request,
    view: APIView,
) -> Response:
    """One page of ``queryset`` with ``count``, ``next`` and ``previous``."""
    paginator = LimitOffsetPagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    data = serializer_class(page, many=True, context={"request": request}).data
    return paginator.get_paginated_response(data)


class _FileRenderer(BaseRenderer):
    """Lets clients ask for a file type; errors still come back as JSON text."""

    charset = None

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if isinstance(data, bytes):
            return data
        return json.dumps(data).encode()


class CSVRenderer(_FileRenderer):
    media_type = "text/csv"
    format = "csv"


class PNGRenderer(_FileRenderer):
    media_type = "image/png"
    format = "png"


class ZipRenderer(_FileRenderer):
    media_type = "application/zip"
    format = "zip"
