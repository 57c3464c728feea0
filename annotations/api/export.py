"""Ratings as a streamed CSV for researchers and admins."""

from __future__ import annotations

from django.db import transaction
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.decorators import method_decorator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from ..exports import ratings_export_start
from ..models import Round
from ..permissions import IsResearcherOrAdmin
from .common import CSVRenderer, ErrorOutputSerializer


# Outside the request transaction: a long export must not hold one open.
@method_decorator(transaction.non_atomic_requests, name="dispatch")
class RatingExportApi(APIView):
    """Live ratings (undone ones left out), one round or all, as CSV.

    Cells that a spreadsheet would run as a formula are prefixed with ``'``.
    """

    permission_classes = [IsAuthenticated, IsResearcherOrAdmin]
    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema_serializer(component_name="ExportFilter")
    class FilterSerializer(serializers.Serializer):
        round = serializers.IntegerField(
            required=False, min_value=1, help_text="Only this round's ratings."
        )

    @extend_schema(
        operation_id="export_ratings_csv",
        parameters=[FilterSerializer],
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (404, "application/json"): ErrorOutputSerializer,
        },
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        query = self.FilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        round_id = query.validated_data.get("round")
        if round_id is not None:
            round_id = get_object_or_404(Round, pk=round_id).pk
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        name = (
            f"ratings-round{round_id}-{stamp}.csv"
            if round_id
            else f"ratings-{stamp}.csv"
        )
        response = StreamingHttpResponse(
            ratings_export_start(
                actor=request.user, round_id=round_id, via="api", request=request
            ),
            content_type="text/csv; charset=utf-8",
        )
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        response["Cache-Control"] = "no-store"
        return response
