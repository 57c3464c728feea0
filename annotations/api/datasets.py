"""Datasets: list and detail for admins and researchers; import for admins."""

from __future__ import annotations

from pathlib import Path

from django.db.models import Count, QuerySet
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from medrlhf.pagination import LimitOffsetPagination

from ..models import Dataset
from ..permissions import IsAdmin, IsResearcherOrAdmin
from ..selectors import datasets_visible_to
from ..services.imports import ON_ERROR_CHOICES, dataset_import_start
from ..users import signed_in
from .common import ErrorOutputSerializer, paginated_response


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


class DatasetImportApi(APIView):
    """Queue an import of an uploaded .zip, or of a CSV or folder on the server.

    Server paths must lie under ``IMPORT_ROOTS``.  Answers 202 with the job to
    poll at ``/api/jobs/{id}/``; the per-row report lands in the job's result.
    """

    permission_classes = [IsAuthenticated, IsAdmin]
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema_serializer(component_name="DatasetImportInput")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        description = serializers.CharField(
            required=False, default="", allow_blank=True
        )
        file = serializers.FileField(
            required=False,
            help_text="A .zip holding the CSV and its images, or label_xxx images.",
        )
        path = serializers.CharField(
            required=False,
            max_length=1000,
            help_text="A CSV file or folder on the server, under IMPORT_ROOTS.",
        )
        on_error = serializers.ChoiceField(ON_ERROR_CHOICES, default="reject")
        modality = serializers.CharField(
            required=False, default="", allow_blank=True, max_length=64
        )
        nifti_axis = serializers.ChoiceField([0, 1, 2], default=2)

        def validate(self, attrs: dict) -> dict:
            if ("file" in attrs) == bool(attrs.get("path")):
                raise serializers.ValidationError("give either a file or a path")
            return attrs

    @extend_schema_serializer(component_name="ImportQueued")
    class OutputSerializer(serializers.Serializer):
        job = serializers.IntegerField()
        status = serializers.CharField()
        url = serializers.CharField(help_text="Where to poll the job.")

    @extend_schema(
        operation_id="datasets_import",
        request={
            "multipart/form-data": InputSerializer,
            "application/json": InputSerializer,
        },
        responses={202: OutputSerializer, 400: ErrorOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        params = data.validated_data
        job = dataset_import_start(
            name=params["name"],
            source=None if "file" in params else Path(params["path"]),
            upload=params.get("file"),
            created_by=signed_in(request),
            on_error=params["on_error"],
            modality=params["modality"] or None,
            nifti_axis=params["nifti_axis"],
            description=params["description"],
        )
        out = self.OutputSerializer(
            {
                "job": job.pk,
                "status": job.status,
                "url": reverse("api-job-detail", kwargs={"job_id": job.pk}),
            }
        )
        return Response(out.data, status=status.HTTP_202_ACCEPTED)
