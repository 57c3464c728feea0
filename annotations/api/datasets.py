"""Datasets: list and detail, for admins and researchers."""

from __future__ import annotations

from django.db.models import Count, QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ..models import Dataset
from ..permissions import IsResearcherOrAdmin
from ..selectors import datasets_visible_to
from .common import paginated_response


def _with_counts(qs: QuerySet[Dataset]) -> QuerySet[Dataset]:
    return qs.select_related("created_by").annotate(image_count=Count("images"))


class DatasetListApi(APIView):
    permission_classes = [IsAuthenticated, IsResearcherOrAdmin]
    pagination_class = LimitOffsetPagination

    @extend_schema_serializer(component_name="Dataset")
    class OutputSerializer(serializers.ModelSerializer):
        image_count = serializers.IntegerField(read_only=True)
        created_by = serializers.CharField(
            source="created_by.username", default=None, read_only=True
        )

        class Meta:
            model = Dataset
            fields = [
                "id",
                "name",
                "description",
                "modalities",
                "image_count",
                "created_by",
                "created_at",
            ]

    @extend_schema(operation_id="datasets_list", responses=OutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return paginated_response(
            serializer_class=self.OutputSerializer,
            queryset=_with_counts(datasets_visible_to(request.user)),
            request=request,
            view=self,
        )


class DatasetDetailApi(APIView):
    permission_classes = [IsAuthenticated, IsResearcherOrAdmin]

    @extend_schema_serializer(component_name="DatasetDetail")
    class OutputSerializer(DatasetListApi.OutputSerializer):
        class Meta(DatasetListApi.OutputSerializer.Meta):
            fields = [
                *DatasetListApi.OutputSerializer.Meta.fields,
                "root",
                "import_report",
                "updated_at",
            ]

    @extend_schema(operation_id="datasets_retrieve", responses=OutputSerializer)
    def get(self, request: Request, dataset_id: int) -> Response:
        dataset = get_object_or_404(
            _with_counts(datasets_visible_to(request.user)), pk=dataset_id
        )
        self.check_object_permissions(request, dataset)
        return Response(self.OutputSerializer(dataset).data)
