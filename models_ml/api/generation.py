"""Reward-filtered generation over the API: any role may start one and
fetch its own results, images and zip."""

from __future__ import annotations

import json
from typing import Any

from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.api.common import ErrorOutputSerializer
from annotations.roles import is_admin
from annotations.users import User, signed_in

from ..generate_files import (
    ZIP_INCLUDE,
    generate_zip_response,
    generated_images,
    provenance_row,
)
from ..models import Job, JobKind
from ..selectors import (
    default_diffusion_version,
    latest_reward_version,
)
from ..services.generation import generate_start
from ..services.params import (
    GENERATE_MODES,
)
from .common import (
    ImageProvenanceSerializer,
    IsAnyRole,
    JobQueuedSerializer,
    diffusion_versions,
    modality_value,
    queued,
    reward_versions,
)
from .job_settings import SamplingSettingsSerializer, settings_field
from .jobs import JobOutputSerializer


class GenerateApi(APIView):
    """Generate images and keep those the reward model scores best."""

    permission_classes = [IsAuthenticated, IsAnyRole]

    @extend_schema_serializer(component_name="GenerateInput")
    class InputSerializer(serializers.Serializer):
        model_version = serializers.PrimaryKeyRelatedField(
            queryset=diffusion_versions(),
            required=False,
            help_text="Omit for the latest promoted version (before any is "
            "promoted: the newest base model).",
        )
        reward_version = serializers.PrimaryKeyRelatedField(
            queryset=reward_versions(),
            required=False,
            help_text="Omit for the newest reward model; with none yet, or with "
            "mode 'none', the images come unfiltered.",
        )
        prompt = serializers.CharField(max_length=2000)
        modality = serializers.CharField(max_length=64)
        count = serializers.IntegerField(min_value=1, max_value=256, default=4)
        mode = serializers.ChoiceField(GENERATE_MODES, default="best_of_n")
        n = serializers.IntegerField(min_value=1, max_value=64, default=4)
        threshold = serializers.FloatField(
            min_value=0, max_value=1, required=False, allow_null=True, default=None
        )
        seed = serializers.IntegerField(
            min_value=0, required=False, allow_null=True, default=None
        )
        sampling = settings_field(SamplingSettingsSerializer)

        def validate_modality(self, value: str) -> str:
            return modality_value(value)

    @extend_schema(
        operation_id="generate_start",
        request=InputSerializer,
        responses={202: JobQueuedSerializer, 400: ErrorOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        p = dict(data.validated_data)
        p.setdefault("model_version", default_diffusion_version())
        p.setdefault("reward_version", latest_reward_version())
        if p["model_version"] is None:
            raise serializers.ValidationError(
                {"model_version": ["no diffusion model yet"]}
            )
        job = generate_start(created_by=signed_in(request), **p)
        return queued(
            job, result_url=reverse("api-generate-detail", kwargs={"job_id": job.pk})
        )


def generate_job_for(*, user: User, job_id: int) -> Job:
    """A generate job its creator or an admin may see; any other is a 404."""
    job = Job.objects.filter(pk=job_id, kind=JobKind.GENERATE).first()
    if job is None or not (is_admin(user) or job.created_by_id == user.pk):
        raise NotFound("No such generate job.")
    return job


@extend_schema_serializer(component_name="GeneratedImage")
class GeneratedImageSerializer(ImageProvenanceSerializer):
    uid = serializers.CharField()
    kept = serializers.BooleanField()
    reward_score = serializers.FloatField(allow_null=True)
    engine_version = serializers.CharField(allow_null=True)
    request_index = serializers.IntegerField(allow_null=True)
    attempt = serializers.IntegerField(allow_null=True)
    uncertainty = serializers.FloatField(allow_null=True)
    created_at = serializers.CharField()
    file_url = serializers.CharField()


@extend_schema_serializer(component_name="GenerateResult")
class GenerateResultSerializer(serializers.Serializer):
    job = JobOutputSerializer()
    kept = GeneratedImageSerializer(many=True)
    rejected = GeneratedImageSerializer(many=True)
    download_url = serializers.CharField()


class GenerateDetailApi(APIView):
    """A generate job's kept and rejected images, best score first."""

    permission_classes = [IsAuthenticated, IsAnyRole]

    @extend_schema(
        operation_id="generate_retrieve",
        responses={200: GenerateResultSerializer, 404: ErrorOutputSerializer},
    )
    def get(self, request: Request, job_id: int) -> Response:
        job = generate_job_for(user=signed_in(request), job_id=job_id)
        groups: dict[str, list[dict[str, Any]]] = {"kept": [], "rejected": []}
        for image in generated_images(job):
            row = provenance_row(image)
            row["file_url"] = reverse(
                "api-generate-image", kwargs={"job_id": job.pk, "uid": image.uid}
            )
            groups["kept" if row["kept"] else "rejected"].append(row)
        for rows in groups.values():
            rows.sort(key=lambda r: -(r["reward_score"] or 0))
        data = {
            "job": job,
            **groups,
            "download_url": reverse("api-generate-download", kwargs={"job_id": job.pk}),
        }
        return Response(
            GenerateResultSerializer(data, context={"request": request}).data
        )


class PNGRenderer(BaseRenderer):
    media_type = "image/png"
    format = "png"
    charset = None

    def render(self, data: Any, media_type: Any = None, context: Any = None) -> bytes:
        return data if isinstance(data, bytes) else json.dumps(data).encode()


class ZipRenderer(PNGRenderer):
    media_type = "application/zip"
    format = "zip"


class GenerateImageFileApi(APIView):
    """One image of a generate job, for whoever may see the job."""

    permission_classes = [IsAuthenticated, IsAnyRole]
    renderer_classes = [JSONRenderer, PNGRenderer]

    @extend_schema(
        operation_id="generate_image_file",
        responses={
            (200, "image/png"): OpenApiTypes.BINARY,
            (404, "application/json"): ErrorOutputSerializer,
        },
    )
    def get(self, request: Request, job_id: int, uid: Any) -> FileResponse:
        job = generate_job_for(user=signed_in(request), job_id=job_id)
        image = generated_images(job).filter(uid=uid).first()
        if image is None:
            raise NotFound("No such image in this job.")
        response = FileResponse(
            image.file.open("rb"), content_type="image/png", filename=f"{uid}.png"
        )
        response["Cache-Control"] = "private, no-store"
        return response


class GenerateDownloadApi(APIView):
    """A finished generate job's images as a zip: ``kept/`` and ``rejected/``
    folders with ``manifest.csv`` and ``manifest.json`` (scores and provenance
    per file); ``?include=kept`` leaves the rejected ones out."""

    permission_classes = [IsAuthenticated, IsAnyRole]
    renderer_classes = [JSONRenderer, ZipRenderer]

    class FilterSerializer(serializers.Serializer):
        include = serializers.ChoiceField(ZIP_INCLUDE, default="all")

    @extend_schema(
        operation_id="generate_download",
        parameters=[FilterSerializer],
        responses={
            (200, "application/zip"): OpenApiTypes.BINARY,
            (404, "application/json"): ErrorOutputSerializer,
            (409, "application/json"): ErrorOutputSerializer,
        },
    )
    def get(self, request: Request, job_id: int) -> FileResponse:
        job = generate_job_for(user=signed_in(request), job_id=job_id)
        query = self.FilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return generate_zip_response(job, include=query.validated_data["include"])
