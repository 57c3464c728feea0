"""Retraining runs over the API: start one (reward model, fine-tune and
control, comparison round) and follow its steps."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import (
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.api.common import ErrorOutputSerializer
from annotations.permissions import (
    IsAdmin,
    IsResearcherOrAdmin,
)
from annotations.users import signed_in

from ..models import Comparison, Job
from ..selectors import (
    default_diffusion_version,
)
from ..services.chains import chain_steps, retraining_round_start
from .common import JobQueuedSerializer, diffusion_versions, queued
from .gate import ComparisonSerializer
from .job_settings import (
    FinetuneSettingsSerializer,
    RewardSettingsSerializer,
    RoundSettingsSerializer,
    settings_field,
)
from .jobs import JobOutputSerializer


@extend_schema_serializer(component_name="RetrainingQueued")
class RetrainingQueuedSerializer(JobQueuedSerializer):
    chain = serializers.CharField(help_text="Id of the run; see /api/retraining/.")
    chain_url = serializers.CharField()


class RetrainingStartApi(APIView):
    """Train the reward model on all ratings, fine-tune with it, and optionally
    open a round comparing the new version with its parent."""

    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema_serializer(component_name="RetrainingInput")
    class InputSerializer(serializers.Serializer):
        diffusion_version = serializers.PrimaryKeyRelatedField(
            queryset=diffusion_versions(),
            required=False,
            help_text="Omit for the latest promoted version (before any is "
            "promoted: the newest base model).",
        )
        open_next_round = serializers.BooleanField(
            default=True,
            help_text="Open the comparison round that decides promotion.",
        )
        train_control = serializers.BooleanField(
            default=True,
            help_text="Train the compute-matched control (objective none: the "
            "same images, steps and schedule, no feedback) beside the new "
            "version, and rate it in the comparison round.",
        )
        reward = settings_field(RewardSettingsSerializer)
        finetune = settings_field(FinetuneSettingsSerializer)
        round = settings_field(RoundSettingsSerializer)

    @extend_schema(
        operation_id="retraining_start",
        request=InputSerializer,
        responses={202: RetrainingQueuedSerializer, 400: ErrorOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        p = data.validated_data
        version = p.get("diffusion_version") or default_diffusion_version()
        if version is None:
            raise serializers.ValidationError(
                {"diffusion_version": ["no diffusion model yet"]}
            )
        job = retraining_round_start(
            created_by=signed_in(request),
            diffusion_version=version,
            params={
                "reward": p["reward"],
                "finetune": p["finetune"],
                "round": p["round"],
            },
            open_next_round=p["open_next_round"],
            train_control=p["train_control"],
        )
        chain_id = job.params["chain"]["id"]
        return queued(
            job,
            chain=chain_id,
            chain_url=reverse("api-retraining-detail", kwargs={"chain_id": chain_id}),
        )


@extend_schema_serializer(component_name="RetrainingRun")
class RetrainingRunSerializer(serializers.Serializer):
    chain = serializers.CharField()
    steps = serializers.ListField(
        child=serializers.CharField(), help_text="The steps this run will take."
    )
    status = serializers.CharField(
        help_text="queued, running, succeeded, failed or cancelled, for the run."
    )
    jobs = JobOutputSerializer(many=True)
    comparison = ComparisonSerializer(
        allow_null=True, help_text="The comparison round and its verdict."
    )


def retraining_status(jobs: list[Job], steps: list[str]) -> str:
    """The run's state: the first unfinished or failed step decides it."""
    for job in jobs:
        if job.status != "succeeded":
            return job.status
    return "succeeded" if len(jobs) >= len(steps) else "running"


class RetrainingDetailApi(APIView):
    permission_classes = [IsAuthenticated, IsResearcherOrAdmin]

    @extend_schema(
        operation_id="retraining_retrieve",
        responses={200: RetrainingRunSerializer, 404: ErrorOutputSerializer},
    )
    def get(self, request: Request, chain_id: str) -> Response:
        jobs = list(
            Job.objects.select_related("created_by")
            .filter(params__chain__id=chain_id)
            .order_by("created_at", "id")
        )
        # A round's re-scoring shares the chain mechanism but is no retraining run.
        if not jobs or jobs[0].params["chain"].get("rescore_round_id"):
            raise NotFound("No such retraining run.")
        chain = jobs[0].params["chain"]
        steps = chain_steps(chain)
        comparison = Comparison.objects.filter(
            round__in=[
                j.params.get("round_id") for j in jobs if j.params.get("round_id")
            ]
        ).first()
        data = {
            "chain": chain_id,
            "steps": steps,
            "status": retraining_status(jobs, steps),
            "jobs": jobs,
            "comparison": comparison,
        }
        return Response(
            RetrainingRunSerializer(data, context={"request": request}).data
        )
