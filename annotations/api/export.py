"""Exports for researchers and admins: ratings CSV, preference pairs CSV and
the dataset zip, each streamed, audited, one round or all."""

from __future__ import annotations

from django.db import transaction
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.utils.decorators import method_decorator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from medrlhf.fields import IdField

from ..export_kinds import DATASET, PAIRS, RATINGS, ExportKind, export_response
from ..models import Round
from ..permissions import IsResearcherOrAdmin
from ..users import signed_in
from .common import CSVRenderer, ErrorOutputSerializer, ZipRenderer


@extend_schema_serializer(component_name="ExportFilter")
class ExportFilterSerializer(serializers.Serializer):
    round = IdField(required=False, help_text="Only this round's ratings.")


def _export(request: Request, kind: ExportKind) -> StreamingHttpResponse:
    """Validate ``?round=``, then stream ``kind`` as a download."""
    query = ExportFilterSerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    round_id = query.validated_data.get("round")
    if round_id is not None:
        get_object_or_404(Round, pk=round_id)
    return export_response(
        kind, actor=signed_in(request), round_id=round_id, via="api", request=request
    )


_CSV_RESPONSES = {
    (200, "text/csv"): OpenApiTypes.STR,
    (404, "application/json"): ErrorOutputSerializer,
}


# Outside the request transaction: a long export must not hold one open.
@method_decorator(transaction.non_atomic_requests, name="dispatch")
class RatingExportApi(APIView):
    """Live ratings (undone ones left out), one round or all, as CSV.

    Test-retest repeats are included and marked in the last column,
    ``is_repeat``.  Cells that a spreadsheet would run as a formula are
    prefixed with ``'``.
    """

    permission_classes = [IsAuthenticated, IsResearcherOrAdmin]
    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(
        operation_id="export_ratings_csv",
        parameters=[ExportFilterSerializer],
        responses=_CSV_RESPONSES,
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        return _export(request, RATINGS)


@method_decorator(transaction.non_atomic_requests, name="dispatch")
class PairExportApi(APIView):
    """Preference pairs as CSV: one physician's two images of one prompt and
    round with different scores, the higher chosen.

    Ties give no pair; undone ratings and test-retest repeats are left out.
    Cells that a spreadsheet would run as a formula are prefixed with ``'``.
    """

    permission_classes = [IsAuthenticated, IsResearcherOrAdmin]
    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(
        operation_id="export_pairs_csv",
        parameters=[ExportFilterSerializer],
        responses=_CSV_RESPONSES,
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        return _export(request, PAIRS)


@method_decorator(transaction.non_atomic_requests, name="dispatch")
class DatasetExportApi(APIView):
    """Rated images as a zip for ``datasets.load_dataset("imagefolder")``:
    ``images/<uid>.png``, ``metadata.jsonl`` (every physician's score per
    image), ``ratings.csv`` for the engine and ``README.txt``.
    """

    permission_classes = [IsAuthenticated, IsResearcherOrAdmin]
    renderer_classes = [JSONRenderer, ZipRenderer]

    @extend_schema(
        operation_id="export_dataset_zip",
        parameters=[ExportFilterSerializer],
        responses={
            (200, "application/zip"): OpenApiTypes.BINARY,
            (404, "application/json"): ErrorOutputSerializer,
        },
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        return _export(request, DATASET)
