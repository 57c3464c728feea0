"""The promotion gate over the API: each comparison round's verdict.

``GET /api/comparisons/`` lists them, newest first; ``GET
/api/comparisons/{id}/`` gives one. While the round is open the verdict is
provisional (``decided`` false) and computed from the ratings so far; it is
recorded when the round closes. Researchers and admins read them.
"""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import (
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.api.common import ErrorOutputSerializer
from annotations.permissions import (
    IsResearcherOrAdmin,
)

from ..gate import Verdict, comparison_verdict
from ..models import Comparison


class _PairedTestSerializer(serializers.Serializer):
    pairs = serializers.IntegerField(help_text="Seeds rated in both arms.")
    better = serializers.IntegerField(help_text="Seeds where this arm did better.")
    worse = serializers.IntegerField(help_text="Seeds where it did worse.")
    difference = serializers.FloatField(
        help_text="Mean difference in the share rated 3 (0.1: ten points)."
    )
    points = serializers.FloatField(help_text="The difference in percentage points.")
    p_value = serializers.FloatField(help_text="Exact two-sided paired test.")
    significant = serializers.BooleanField(
        help_text="Better at the comparison's alpha."
    )


class _ArmSerializer(serializers.Serializer):
    arm = serializers.CharField(help_text="candidate, parent, control or best_of_n")
    # A declared field (DRF's metaclass moves it off the class); the stubs
    # see Field's own ``label`` attribute.
    label = serializers.CharField()  # type: ignore[assignment]
    model_version_id = serializers.IntegerField()
    model_version = serializers.CharField()
    images = serializers.IntegerField()
    rated_images = serializers.IntegerField()
    ratings = serializers.IntegerField()
    rated_3 = serializers.IntegerField()
    share_3 = serializers.FloatField(allow_null=True)
    wilson95 = serializers.ListField(child=serializers.FloatField())
    vs_parent = _PairedTestSerializer(allow_null=True)
    vs_control = _PairedTestSerializer(allow_null=True)


@extend_schema_serializer(component_name="ComparisonVerdict")
class VerdictSerializer(serializers.Serializer):
    comparison_id = serializers.IntegerField()
    round_id = serializers.IntegerField()
    alpha = serializers.FloatField()
    arms = _ArmSerializer(many=True)
    promoted = serializers.BooleanField(
        allow_null=True, help_text="null until a seed is rated in both arms."
    )
    reason = serializers.CharField()
    decided = serializers.BooleanField(
        help_text="Recorded when the round closed; else provisional."
    )
    decided_at = serializers.CharField(allow_null=True)


@extend_schema_serializer(component_name="Comparison")
class ComparisonSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    round = serializers.IntegerField(source="round_id")
    round_name = serializers.CharField(source="round.name")
    round_status = serializers.CharField(source="round.status")
    candidate = serializers.IntegerField(source="candidate_id")
    candidate_gate = serializers.CharField(source="candidate.gate")
    # A declared field, as ``label`` above: the stubs see Field's ``parent``.
    parent = serializers.IntegerField(source="parent_id")  # type: ignore[assignment]
    control = serializers.IntegerField(source="control_id", allow_null=True)
    best_of_n = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    verdict = serializers.SerializerMethodField()

    @extend_schema_field(VerdictSerializer)
    def get_verdict(self, comparison: Comparison) -> dict[str, Any]:
        verdict: Verdict = comparison_verdict(comparison)
        return dict(VerdictSerializer(verdict.as_dict()).data)


def comparisons_list() -> Any:
    return Comparison.objects.select_related("round", "candidate", "parent", "control")


class ComparisonListApi(APIView):
    permission_classes = [IsAuthenticated, IsResearcherOrAdmin]

    @extend_schema(
        operation_id="comparisons_list", responses=ComparisonSerializer(many=True)
    )
    def get(self, request: Request) -> Response:
        rows = comparisons_list()[:100]
        return Response(ComparisonSerializer(rows, many=True).data)


class ComparisonDetailApi(APIView):
    permission_classes = [IsAuthenticated, IsResearcherOrAdmin]

    @extend_schema(
        operation_id="comparisons_retrieve",
        responses={200: ComparisonSerializer, 404: ErrorOutputSerializer},
    )
    def get(self, request: Request, comparison_id: int) -> Response:
        comparison = get_object_or_404(comparisons_list(), pk=comparison_id)
        return Response(ComparisonSerializer(comparison).data)
