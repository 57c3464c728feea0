"""What the loop's API views share: who may generate, and the answer to a
queued job (202, with where to poll it), a modality as a field's value."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.utils import (
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from annotations.models import Role
from annotations.roles import has_role
from models_ml.engine.readers import InvalidModalityError, normalize_modality

from ..models import Job, ModelKind, ModelVersion


class IsAnyRole(BasePermission):
    """Physicians, researchers and admins: anyone the product lets generate."""

    message = "Only physicians, researchers and admins may do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        return has_role(request.user, Role.PHYSICIAN, Role.RESEARCHER, Role.ADMIN)


@extend_schema_serializer(component_name="JobQueued")
class JobQueuedSerializer(serializers.Serializer):
    job = serializers.IntegerField()
    status = serializers.CharField()
    url = serializers.CharField(help_text="Where to poll the job.")


def queued(job: Job, **extra: Any) -> Response:
    data = {
        "job": job.pk,
        "status": job.status,
        "url": reverse("api-job-detail", kwargs={"job_id": job.pk}),
        **extra,
    }
    return Response(data, status=status.HTTP_202_ACCEPTED)


def diffusion_versions() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(kind=ModelKind.DIFFUSION)


def reward_versions() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(kind=ModelKind.REWARD)


def modality_value(raw: str) -> str:
    """A modality as sent, normalised; an unknown one is the field's error."""
    try:
        return normalize_modality(raw)
    except InvalidModalityError as exc:
        raise serializers.ValidationError(str(exc)) from exc


class ImageProvenanceSerializer(serializers.Serializer):
    """Where a generated image came from: its prompt, sampler settings and
    versions (the fields the Generate and Review answers share)."""

    prompt = serializers.CharField()
    modality = serializers.CharField()
    seed = serializers.IntegerField(allow_null=True)
    steps = serializers.IntegerField(allow_null=True)
    guidance = serializers.FloatField(allow_null=True)
    scheduler = serializers.CharField(allow_null=True)
    model_version_id = serializers.IntegerField()
    model_version_name = serializers.CharField()
    reward_version_id = serializers.IntegerField(allow_null=True)
