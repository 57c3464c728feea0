"""Training over the API: a base model from a dataset, the reward model from
the ratings, and a fine-tune of a version. Admins only; each answers 202."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import (
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.api.common import ErrorOutputSerializer
from annotations.models import Dataset, Round
from annotations.permissions import (
    IsAdmin,
)
from annotations.users import signed_in

from ..services.base_training import (
    model_version_train_base_start,
)
from ..services.finetune import finetune_start
from ..services.reward import reward_model_train_start
from .common import JobQueuedSerializer, diffusion_versions, queued, reward_versions
from .job_settings import (
    FinetuneSettingsSerializer,
    RewardSettingsSerializer,
    TrainSettingsSerializer,
    settings_field,
)


class DatasetTrainBaseApi(APIView):
    """Train a base diffusion model on a dataset's real images."""

    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema_serializer(component_name="TrainBaseInput")
    class InputSerializer(serializers.Serializer):
        params = settings_field(TrainSettingsSerializer)

    @extend_schema(
        operation_id="datasets_train_base",
        request=InputSerializer,
        responses={
            202: JobQueuedSerializer,
            400: ErrorOutputSerializer,
            404: ErrorOutputSerializer,
        },
    )
    def post(self, request: Request, dataset_id: int) -> Response:
        dataset = get_object_or_404(Dataset, pk=dataset_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = model_version_train_base_start(
            dataset=dataset, created_by=signed_in(request), **data.validated_data
        )
        return queued(job)


class RewardModelTrainApi(APIView):
    """Train the reward model on every live rating, or on those of some rounds."""

    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema_serializer(component_name="RewardTrainInput")
    class InputSerializer(serializers.Serializer):
        rounds = serializers.PrimaryKeyRelatedField(
            queryset=Round.objects.all(),
            many=True,
            required=False,
            allow_null=True,
            default=None,
            help_text="Rounds whose ratings to use; omit for all ratings so far.",
        )
        params = settings_field(RewardSettingsSerializer)

    @extend_schema(
        operation_id="reward_models_train",
        request=InputSerializer,
        responses={202: JobQueuedSerializer, 400: ErrorOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = reward_model_train_start(
            created_by=signed_in(request), **data.validated_data
        )
        return queued(job)


class ModelVersionFinetuneApi(APIView):
    """Reward-weighted fine-tune of a diffusion version with a reward model."""

    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema_serializer(component_name="FinetuneInput")
    class InputSerializer(serializers.Serializer):
        reward_version = serializers.PrimaryKeyRelatedField(queryset=reward_versions())
        params = settings_field(FinetuneSettingsSerializer)

    @extend_schema(
        operation_id="model_versions_finetune",
        request=InputSerializer,
        responses={
            202: JobQueuedSerializer,
            400: ErrorOutputSerializer,
            404: ErrorOutputSerializer,
        },
    )
    def post(self, request: Request, version_id: int) -> Response:
        version = get_object_or_404(diffusion_versions(), pk=version_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = finetune_start(
            diffusion_version=version,
            created_by=signed_in(request),
            **data.validated_data,
        )
        return queued(job)
