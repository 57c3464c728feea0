"""Rounds that generate over the API, and scoring a round's images."""

from __future__ import annotations

from typing import Any

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
from annotations.api.serving import ServingInputSerializer, serving_design
from annotations.errors import DomainError
from annotations.models import Dataset, Round
from annotations.permissions import (
    IsAdmin,
)
from annotations.users import signed_in

from ..selectors import (
    control_pool,
)
from ..services.prompts import prompts_parse, prompts_sample
from ..services.round_generation import round_generate_start
from ..services.round_scoring import round_score_start
from .common import (
    JobQueuedSerializer,
    diffusion_versions,
    modality_value,
    queued,
    reward_versions,
)
from .job_settings import SamplingSettingsSerializer, settings_field


class _PromptSerializer(serializers.Serializer):
    prompt = serializers.CharField(max_length=2000)
    modality = serializers.CharField(max_length=64)

    def validate_modality(self, value: str) -> str:
        return modality_value(value)


class _SampleFromDatasetSerializer(serializers.Serializer):
    dataset = serializers.PrimaryKeyRelatedField(queryset=Dataset.objects.all())
    per_modality = serializers.IntegerField(min_value=1, max_value=1000, default=4)
    modalities = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        default=list,
        help_text="Modalities to draw from; empty means every one in the dataset.",
    )

    def validate_modalities(self, value: list[str]) -> list[str]:
        return [modality_value(m) for m in value]


class RoundGenerateApi(APIView):
    """Open a round whose images a job generates; rating opens when it is done.

    Give prompts one way: ``prompts`` (a list), ``prompts_text`` (pasted, one a
    line) or ``sample_from_dataset``.  The serving design is an ordinary
    round's; a reward model scores the images once they are generated.
    """

    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema_serializer(component_name="RoundGenerateInput")
    class InputSerializer(ServingInputSerializer):
        name = serializers.CharField(max_length=200)
        model_version = serializers.PrimaryKeyRelatedField(
            queryset=diffusion_versions()
        )
        compare_model_version = serializers.PrimaryKeyRelatedField(
            queryset=diffusion_versions(),
            required=False,
            allow_null=True,
            default=None,
            help_text="Also generate with this version, blinded and interleaved.",
        )
        prompts = _PromptSerializer(many=True, required=False)
        prompts_text = serializers.CharField(required=False, max_length=200_000)
        modality = serializers.CharField(
            required=False,
            default="",
            allow_blank=True,
            max_length=64,
            help_text="Modality of pasted lines that do not start with one.",
        )
        sample_from_dataset = _SampleFromDatasetSerializer(required=False)
        images_per_prompt = serializers.IntegerField(min_value=1, max_value=1000)
        raters_per_image = serializers.IntegerField(
            min_value=1, max_value=50, default=1
        )
        control_share = serializers.FloatField(min_value=0, max_value=0.99, default=0)
        seed = serializers.IntegerField(
            min_value=0, required=False, allow_null=True, default=None
        )
        sampling = settings_field(SamplingSettingsSerializer)

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            attrs = super().validate(attrs)
            given = [
                k
                for k in ("prompts", "prompts_text", "sample_from_dataset")
                if attrs.get(k)
            ]
            if len(given) != 1:
                raise serializers.ValidationError(
                    {
                        "prompts": "give exactly one of prompts, prompts_text "
                        "or sample_from_dataset"
                    }
                )
            if "prompts_text" in given:
                try:
                    attrs["prompts"] = prompts_parse(
                        attrs["prompts_text"], modality=attrs["modality"]
                    )
                except DomainError as exc:
                    raise serializers.ValidationError(
                        {"prompts_text": str(exc)}
                    ) from exc
            elif "prompts" in given:
                attrs["prompts"] = [
                    (p["prompt"], p["modality"]) for p in attrs["prompts"]
                ]
            return attrs

    @extend_schema(
        operation_id="rounds_generate",
        request=InputSerializer,
        responses={202: JobQueuedSerializer, 400: ErrorOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        p = data.validated_data
        sample = p.get("sample_from_dataset")
        prompts = p.get("prompts") or prompts_sample(seed=p["seed"], **sample)
        pool = control_pool(
            model_version=p["model_version"],
            dataset=sample["dataset"] if sample else None,
            modalities=[m for _, m in prompts],
        )
        job = round_generate_start(
            model_version=p["model_version"],
            compare_model_version=p["compare_model_version"],
            prompts=prompts,
            images_per_prompt=p["images_per_prompt"],
            created_by=signed_in(request),
            name=p["name"],
            raters_per_image=p["raters_per_image"],
            control_share=p["control_share"],
            control_pool=pool if p["control_share"] > 0 else (),
            seed=p["seed"],
            sampling=p["sampling"],
            serving=serving_design(p),
        )
        return queued(job, round=job.params["round_id"])


class RoundScoreApi(APIView):
    """Score a round's images with a reward model (the round's own by default).

    The job writes a score per image and each item's ensemble spread, which
    uncertainty serving orders by.
    """

    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema_serializer(component_name="RoundScoreInput")
    class InputSerializer(serializers.Serializer):
        reward_model_version = serializers.PrimaryKeyRelatedField(
            queryset=reward_versions(),
            required=False,
            allow_null=True,
            default=None,
            help_text="Omit to use the round's reward model; given, it becomes "
            "the round's reward model.",
            error_messages={
                "does_not_exist": "no reward model version with id {pk_value}"
            },
        )

    @extend_schema(
        operation_id="rounds_score",
        request=InputSerializer,
        responses={
            202: JobQueuedSerializer,
            400: ErrorOutputSerializer,
            404: ErrorOutputSerializer,
        },
    )
    def post(self, request: Request, round_id: int) -> Response:
        rnd = get_object_or_404(Round, pk=round_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = round_score_start(
            round=rnd,
            created_by=signed_in(request),
            reward_model_version=data.validated_data["reward_model_version"],
        )
        return queued(job, round=rnd.pk)
