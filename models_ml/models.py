"""Records of the ML lifecycle: model versions and background jobs."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q


class ModelKind(models.TextChoices):
    DIFFUSION = "diffusion", "Diffusion model"
    REWARD = "reward", "Reward model"


class GateStatus(models.TextChoices):
    """Where a diffusion version stands with the promotion gate."""

    UNTESTED = "untested", "Not compared"
    PENDING = "pending", "Comparison round open"
    PROMOTED = "promoted", "Promoted"
    FAILED = "failed", "Not promoted"


class ModelVersion(models.Model):
    """A diffusion checkpoint or reward model, with what it was trained on."""

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=ModelKind.choices, db_index=True)
    backend = models.CharField(max_length=16, default="tiny")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    dataset = models.ForeignKey(
        "annotations.Dataset",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="model_versions",
    )
    trained_on_rounds = models.ManyToManyField(
        "annotations.Round", blank=True, related_name="trained_models"
    )
    rating_count = models.PositiveIntegerField(default=0)
    ratings_until = models.DateTimeField(
        null=True, blank=True, help_text="Ratings created up to this time were used."
    )
    path = models.CharField(max_length=1000, help_text="Folder holding the weights.")
    params = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    job = models.ForeignKey(
        "Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    is_control = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Fine-tuned without feedback, beside a new version, to "
        "measure what the ratings add; never promoted.",
    )
    gate = models.CharField(
        max_length=16,
        choices=GateStatus.choices,
        default=GateStatus.UNTESTED,
        db_default=GateStatus.UNTESTED,
        db_index=True,
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(is_control=False) | ~Q(gate="promoted"),
                name="model_version_control_never_promoted",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class Comparison(models.Model):
    """A round that rates a new version against its parent, blinded and on
    the same prompts and seeds, beside the compute-matched control and
    optionally the parent filtered best-of-N by a reward model.

    The verdict is recorded when the round closes; until then pages show
    it as provisional.
    """

    round = models.OneToOneField(
        "annotations.Round", on_delete=models.CASCADE, related_name="comparison"
    )
    candidate = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="comparisons"
    )
    parent = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    control = models.ForeignKey(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    best_of_n = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="N of the parent's best-of-N arm."
    )
    reward_version = models.ForeignKey(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The reward model that filters the best-of-N arm.",
    )
    alpha = models.FloatField(default=0.05)
    verdict = models.JSONField(default=dict, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(alpha__gt=0) & Q(alpha__lt=0.5),
                name="comparison_alpha_in_range",
            ),
            models.CheckConstraint(
                condition=Q(best_of_n__isnull=True) | Q(best_of_n__gte=2),
                name="comparison_best_of_n_at_least_two",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.candidate} vs {self.parent}"


class JobKind(models.TextChoices):
    IMPORT = "import", "Import dataset"
    TRAIN_BASE = "train_base", "Train base model"
    GENERATE_ROUND = "generate_round", "Generate round"
    TRAIN_REWARD = "train_reward", "Train reward model"
    FINETUNE = "finetune", "Fine-tune from feedback"
    GENERATE = "generate", "Generate images"
    SCORE = "score", "Score images with a reward model"
    EXPORT = "export", "Export"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Job(models.Model):
    """A long-running task. Pages poll this row, never Celery."""

    kind = models.CharField(max_length=32, choices=JobKind.choices, db_index=True)
    status = models.CharField(
        max_length=16,
        choices=JobStatus.choices,
        default=JobStatus.QUEUED,
        db_index=True,
    )
    progress = models.FloatField(default=0.0)
    message = models.CharField(max_length=300, blank=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    cancel_requested = models.BooleanField(default=False)
    celery_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(progress__gte=0) & Q(progress__lte=1),
                name="job_progress_in_unit_interval",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.title} #{self.pk} ({self.status})"

    @property
    def title(self) -> str:
        params = self.params or {}
        if self.kind == JobKind.GENERATE_ROUND and any(
            arm.get("arm") == "candidate" for arm in params.get("arms") or []
        ):
            return "Comparison round"
        # A fine-tune names its settings; a step of a retraining run that
        # does not (yet) falls back on the run's.
        finetune = params.get("finetune") or (params.get("chain") or {}).get("finetune")
        return job_title(self.kind, finetune, control=bool(params.get("control")))

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES


OBJECTIVE_TITLES = {
    "weighted": "Reward-weighted fine-tune",
    "kto": "KTO fine-tune (per-image judgements)",
    "dpo": "DPO fine-tune (preference pairs)",
    "none": "Fine-tune without feedback",
}


def job_title(
    kind: str, finetune: dict[str, Any] | None, *, control: bool = False
) -> str:
    """A job kind's name; for a fine-tune, what it does as its fine-tune
    mapping (a fine-tune job's ``params["finetune"]``, a chain's
    ``"finetune"``) says: its objective, and with ``filter_threshold`` that it
    trains on the kept images only. ``control``: the run's no-feedback
    control."""
    if kind != JobKind.FINETUNE:
        return JobKind(kind).label
    if control:
        return "Control fine-tune (same images, no feedback)"
    finetune = finetune or {}
    threshold = finetune.get("filter_threshold")
    objective = finetune.get("objective")
    if objective in (None, "filtered") and isinstance(threshold, (int, float)):
        return f"Filtered fine-tune (weight ≥ {threshold:g})"
    if objective == "filtered":
        return "Filtered fine-tune (rated 3)"
    # Fine-tunes started before objectives existed were reward-weighted;
    # every one started since names its objective.
    return OBJECTIVE_TITLES.get(objective or "weighted", JobKind(kind).label)


class ImageScore(models.Model):
    """What a reward model says of one image: reward, rating distribution, spread."""

    image = models.ForeignKey(
        "annotations.Image", on_delete=models.CASCADE, related_name="scores"
    )
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="image_scores"
    )
    reward = models.FloatField(help_text="Reward in [0, 1].")
    expected_score = models.FloatField(help_text="Expected rating, 1 to 3.")
    probs = models.JSONField(help_text="Predicted P(rating = 1, 2, 3).")
    spread = models.FloatField(help_text="Ensemble standard deviation of the reward.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["image", "model_version"], name="image_score_once_per_model"
            ),
            models.CheckConstraint(
                condition=Q(reward__gte=0) & Q(reward__lte=1),
                name="image_score_reward_in_unit_interval",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.image_id} by {self.model_version_id}: {self.reward:.3f}"


def _sample_upload_to(instance: VersionSample, filename: str) -> str:
    return f"samples/{instance.version_id}/{filename}"


class VersionSample(models.Model):
    """One row of a diffusion version's sample grid: a few images of one
    prompt on fixed seeds, made when the version is created, so versions can
    be compared by eye on the lineage and version pages."""

    version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="samples"
    )
    modality = models.CharField(max_length=64)
    prompt = models.TextField()
    seeds = models.JSONField(default=list)
    file = models.FileField(upload_to=_sample_upload_to, max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["modality", "prompt", "id"]

    def __str__(self) -> str:
        return f"{self.version_id}: {self.prompt[:40]}"
