"""The ML lifecycle over the API: model versions and their lineage, base
training, rounds that generate, retraining runs, reward models, fine-tunes and
reward-filtered generation.

Every start answers 202 with the job to poll at ``/api/jobs/{id}/``.  Admins
start everything; researchers read versions and retraining runs; any logged-in
role may generate images and see the results of its own generate jobs.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import FileResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.api.common import ErrorOutputSerializer
from annotations.api.serving import ServingInputSerializer, serving_settings
from annotations.errors import DomainError
from annotations.models import Dataset, Role, Round
from annotations.permissions import IsAdmin, IsResearcherOrAdmin
from annotations.roles import has_role, is_admin
from medrlhf.serverpaths import ServerPathsHidden
from models_ml.engine.readers import InvalidModalityError, normalize_modality

from .api import JobOutputSerializer
from .api_gate import ComparisonSerializer
from .api_settings import (
    FinetuneSettingsSerializer,
    RewardSettingsSerializer,
    RoundSettingsSerializer,
    SamplingSettingsSerializer,
    TrainSettingsSerializer,
    settings_field,
)
from .chains import chain_steps, retraining_round_start
from .generate_files import (
    ZIP_INCLUDE,
    generate_zip_response,
    generated_images,
    provenance_row,
)
from .ml_services import (
    GENERATE_MODES,
    finetune_start,
    generate_start,
    model_version_register,
    model_version_train_base_start,
    reward_model_train_start,
    round_generate_start,
    round_score_start,
)
from .models import Comparison, Job, JobKind, ModelKind, ModelVersion
from .selectors import (
    control_pool,
    default_diffusion_version,
    latest_reward_version,
    model_version_tree,
    model_versions_list,
    real_images_for_training,
)

MAX_FILES_LISTED = 200


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


def _queued(job: Job, **extra: Any) -> Response:
    data = {
        "job": job.pk,
        "status": job.status,
        "url": reverse("api-job-detail", kwargs={"job_id": job.pk}),
        **extra,
    }
    return Response(data, status=status.HTTP_202_ACCEPTED)


def _diffusion_versions() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(kind=ModelKind.DIFFUSION)


def _reward_versions() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(kind=ModelKind.REWARD)


# --- model versions -------------------------------------------------------------


class _VersionRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


def _kind_field() -> serializers.CharField:
    # Plain text: the choice set stays in one component, so its enum name is stable.
    return serializers.CharField(read_only=True, help_text="diffusion or reward")


@extend_schema_serializer(component_name="ModelVersion")
class ModelVersionSerializer(serializers.ModelSerializer):
    kind = _kind_field()

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "name",
            "kind",
            "backend",
            "parent",
            "dataset",
            "rating_count",
            "ratings_until",
            "is_control",
            "gate",
            "job",
            "created_at",
        ]
        read_only_fields = fields


class _FileSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="Path relative to the version's folder.")
    size = serializers.IntegerField()


class _RoundRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.CharField()


@extend_schema_serializer(component_name="ModelVersionDetail")
class ModelVersionDetailSerializer(ServerPathsHidden, serializers.ModelSerializer):
    kind = _kind_field()
    parent = _VersionRefSerializer(allow_null=True)
    children = _VersionRefSerializer(many=True)
    dataset = _VersionRefSerializer(allow_null=True)
    rounds = _RoundRefSerializer(many=True, source="trained_on_rounds")
    files = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "name",
            "kind",
            "backend",
            "parent",
            "children",
            "dataset",
            "rounds",
            "rating_count",
            "ratings_until",
            "is_control",
            "gate",
            "params",
            "metrics",
            "path",
            "files",
            "job",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(_FileSerializer(many=True))
    def get_files(self, version: ModelVersion) -> list[dict[str, Any]]:
        return version_files(Path(version.path))


def version_files(folder: Path) -> list[dict[str, Any]]:
    """The first files of a version's folder, with sizes; none when it is gone."""
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        out.append({"name": str(path.relative_to(folder)), "size": path.stat().st_size})
        if len(out) >= MAX_FILES_LISTED:
            break
    return out


@extend_schema_serializer(component_name="LineageNode")
class LineageNodeSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="version.id")
    name = serializers.CharField(source="version.name")
    kind = serializers.CharField(source="version.kind")
    backend = serializers.CharField(source="version.backend")
    dataset = serializers.IntegerField(source="version.dataset_id", allow_null=True)
    rating_count = serializers.IntegerField(source="version.rating_count")
    is_control = serializers.BooleanField(source="version.is_control")
    gate = serializers.CharField(
        source="version.gate",
        help_text="untested, pending (comparison round open), promoted or failed",
    )
    created_at = serializers.DateTimeField(source="version.created_at")


# A node's children are nodes: declared after the class so it can name itself.
LineageNodeSerializer._declared_fields["children"] = LineageNodeSerializer(many=True)


class _KindFilterSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(ModelKind.choices, required=False)


class ModelVersionListApi(APIView):
    permission_classes = [IsAuthenticated, IsResearcherOrAdmin]

    @extend_schema(
        operation_id="model_versions_list",
        parameters=[_KindFilterSerializer],
        responses=ModelVersionSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        query = _KindFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        versions = model_versions_list(kind=query.validated_data.get("kind"))
        return Response(ModelVersionSerializer(versions, many=True).data)


class ModelVersionDetailApi(APIView):
    permission_classes = [IsAuthenticated, IsResearcherOrAdmin]

    @extend_schema(
        operation_id="model_versions_retrieve",
        responses={200: ModelVersionDetailSerializer, 404: ErrorOutputSerializer},
    )
    def get(self, request: Request, version_id: int) -> Response:
        version = get_object_or_404(
            model_versions_list().prefetch_related("children", "trained_on_rounds"),
            pk=version_id,
        )
        return Response(
            ModelVersionDetailSerializer(version, context={"request": request}).data
        )


class ModelVersionTreeApi(APIView):
    """Every version as a forest: roots, each with its children nested."""

    permission_classes = [IsAuthenticated, IsResearcherOrAdmin]

    @extend_schema(
        operation_id="model_versions_tree",
        parameters=[_KindFilterSerializer],
        responses=LineageNodeSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        query = _KindFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        roots = model_version_tree(kind=query.validated_data.get("kind"))
        return Response(LineageNodeSerializer(roots, many=True).data)


def register_roots() -> list[Path]:
    """Folders a version may be adopted from: MODELS_DIR and the import roots."""
    roots = [Path(settings.MODELS_DIR), *map(Path, settings.IMPORT_ROOTS)]
    return [r.resolve() for r in roots]


class ModelVersionRegisterApi(APIView):
    """Adopt a model folder already on the server (under MODELS_DIR or an
    import root) as a version, without training it."""

    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema_serializer(component_name="ModelVersionRegisterInput")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        kind = serializers.ChoiceField(ModelKind.choices)
        path = serializers.CharField(
            max_length=1000, help_text="A model folder under MODELS_DIR."
        )
        dataset = serializers.PrimaryKeyRelatedField(
            queryset=Dataset.objects.all(), required=False, allow_null=True
        )
        parent = serializers.PrimaryKeyRelatedField(
            queryset=ModelVersion.objects.all(), required=False, allow_null=True
        )

        def validate_path(self, value: str) -> str:
            folder = Path(value).resolve()
            if not any(folder.is_relative_to(root) for root in register_roots()):
                raise serializers.ValidationError(
                    f"{value} is not under MODELS_DIR or an import root"
                )
            if not folder.is_dir():
                raise serializers.ValidationError(f"{value} is not a folder")
            return str(folder)

    @extend_schema(
        operation_id="model_versions_register",
        request=InputSerializer,
        responses={201: ModelVersionDetailSerializer, 400: ErrorOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = model_version_register(created_by=request.user, **data.validated_data)
        return Response(
            ModelVersionDetailSerializer(version, context={"request": request}).data,
            status=status.HTTP_201_CREATED,
        )


# --- training ---------------------------------------------------------------------


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
            dataset=dataset, created_by=request.user, **data.validated_data
        )
        return _queued(job)


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
        job = reward_model_train_start(created_by=request.user, **data.validated_data)
        return _queued(job)


class ModelVersionFinetuneApi(APIView):
    """Reward-weighted fine-tune of a diffusion version with a reward model."""

    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema_serializer(component_name="FinetuneInput")
    class InputSerializer(serializers.Serializer):
        reward_version = serializers.PrimaryKeyRelatedField(queryset=_reward_versions())
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
        version = get_object_or_404(_diffusion_versions(), pk=version_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = finetune_start(
            diffusion_version=version, created_by=request.user, **data.validated_data
        )
        return _queued(job)


# --- rounds that generate -----------------------------------------------------------


def _normalized(raw: str) -> str:
    try:
        return normalize_modality(raw)
    except InvalidModalityError as exc:
        raise serializers.ValidationError(str(exc)) from exc


class _PromptSerializer(serializers.Serializer):
    prompt = serializers.CharField(max_length=2000)
    modality = serializers.CharField(max_length=64)

    def validate_modality(self, value: str) -> str:
        return _normalized(value)


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
        return [_normalized(m) for m in value]


def parse_pasted_prompts(text: str, *, modality: str = "") -> list[tuple[str, str]]:
    """One prompt a line; its modality is the text before ':' ('CT: axial
    slice') when that names one, else ``modality``."""
    default = _normalized(modality) if modality else ""
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        head, sep, _ = line.partition(":")
        try:
            found = normalize_modality(head.strip()) if sep else ""
        except InvalidModalityError:
            found = ""
        if not (found or default):
            raise serializers.ValidationError(
                f"line {number}: no modality; start it with one ('CT: ...') "
                "or give modality"
            )
        pairs.append((line, found or default))
    if not pairs:
        raise serializers.ValidationError("no prompt in the pasted text")
    return pairs


def prompts_sampled_from_dataset(
    *, dataset: Dataset, per_modality: int, modalities: list[str], seed: int | None
) -> list[tuple[str, str]]:
    """Up to ``per_modality`` distinct texts of the dataset's real images for
    each modality, drawn with ``seed``."""
    images = real_images_for_training(dataset_ids=[dataset.pk])
    wanted = modalities or sorted(set(images.values_list("modality", flat=True)))
    rng = random.Random(seed)  # noqa: S311 (a reproducible draw, not a secret)
    pairs = []
    for modality in wanted:
        texts = sorted(
            set(images.filter(modality=modality).values_list("prompt", flat=True))
        )
        if not texts:
            raise DomainError(
                f"dataset {dataset.name!r} has no usable {modality} images"
            )
        for text in rng.sample(texts, min(per_modality, len(texts))):
            pairs.append((text, modality))
    return pairs


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
            queryset=_diffusion_versions()
        )
        compare_model_version = serializers.PrimaryKeyRelatedField(
            queryset=_diffusion_versions(),
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
                    attrs["prompts"] = parse_pasted_prompts(
                        attrs["prompts_text"], modality=attrs["modality"]
                    )
                except serializers.ValidationError as exc:
                    raise serializers.ValidationError(
                        {"prompts_text": exc.detail}
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
        prompts = p.get("prompts") or prompts_sampled_from_dataset(
            seed=p["seed"], **sample
        )
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
            created_by=request.user,
            name=p["name"],
            raters_per_image=p["raters_per_image"],
            control_share=p["control_share"],
            control_pool=pool if p["control_share"] > 0 else (),
            seed=p["seed"],
            sampling=p["sampling"],
            **serving_settings(p),
        )
        return _queued(job, round=job.params["round_id"])


class RoundScoreApi(APIView):
    """Score a round's images with a reward model (the round's own by default).

    The job writes a score per image and each item's ensemble spread, which
    uncertainty serving orders by.
    """

    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema_serializer(component_name="RoundScoreInput")
    class InputSerializer(serializers.Serializer):
        reward_model_version = serializers.PrimaryKeyRelatedField(
            queryset=_reward_versions(),
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
            created_by=request.user,
            reward_model_version=data.validated_data["reward_model_version"],
        )
        return _queued(job, round=rnd.pk)


# --- retraining runs ----------------------------------------------------------------


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
            queryset=_diffusion_versions(),
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
            created_by=request.user,
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
        return _queued(
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


# --- filtered generation --------------------------------------------------------------


class GenerateApi(APIView):
    """Generate images and keep those the reward model scores best."""

    permission_classes = [IsAuthenticated, IsAnyRole]

    @extend_schema_serializer(component_name="GenerateInput")
    class InputSerializer(serializers.Serializer):
        model_version = serializers.PrimaryKeyRelatedField(
            queryset=_diffusion_versions(),
            required=False,
            help_text="Omit for the latest promoted version (before any is "
            "promoted: the newest base model).",
        )
        reward_version = serializers.PrimaryKeyRelatedField(
            queryset=_reward_versions(),
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
            return _normalized(value)

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
        job = generate_start(created_by=request.user, **p)
        return _queued(
            job, result_url=reverse("api-generate-detail", kwargs={"job_id": job.pk})
        )


def generate_job_for(*, user: Any, job_id: int) -> Job:
    """A generate job its creator or an admin may see; any other is a 404."""
    job = Job.objects.filter(pk=job_id, kind=JobKind.GENERATE).first()
    if job is None or not (is_admin(user) or job.created_by_id == user.pk):
        raise NotFound("No such generate job.")
    return job


@extend_schema_serializer(component_name="GeneratedImage")
class GeneratedImageSerializer(serializers.Serializer):
    uid = serializers.CharField()
    kept = serializers.BooleanField()
    reward_score = serializers.FloatField(allow_null=True)
    prompt = serializers.CharField()
    modality = serializers.CharField()
    seed = serializers.IntegerField(allow_null=True)
    steps = serializers.IntegerField(allow_null=True)
    guidance = serializers.FloatField(allow_null=True)
    scheduler = serializers.CharField(allow_null=True)
    model_version_id = serializers.IntegerField()
    model_version_name = serializers.CharField()
    engine_version = serializers.CharField(allow_null=True)
    reward_version_id = serializers.IntegerField(allow_null=True)
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
        job = generate_job_for(user=request.user, job_id=job_id)
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
        job = generate_job_for(user=request.user, job_id=job_id)
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
        job = generate_job_for(user=request.user, job_id=job_id)
        query = self.FilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return generate_zip_response(job, include=query.validated_data["include"])
