"""Records of the ML lifecycle: model versions and background jobs."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q


class ModelKind(models.TextChoices):
    DIFFUSION = "diffusion", "Diffusion model"
    REWARD = "reward", "Reward model"


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
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class JobKind(models.TextChoices):
    IMPORT = "import", "Import dataset"
    TRAIN_BASE = "train_base", "Train base model"
    GENERATE_ROUND = "generate_round", "Generate round"
    TRAIN_REWARD = "train_reward", "Train reward model"
    FINETUNE = "finetune", "Reward-weighted fine-tune"
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
        return job_title(self.kind, (self.params or {}).get("finetune"))

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES


def job_title(kind: str, finetune: dict[str, Any] | None) -> str:
    """A job kind's name, or what the job does where its fine-tune mapping
    (a fine-tune job's ``params["finetune"]``, a chain's ``"finetune"``) says
    more: with ``filter_threshold`` it trains on the kept images only."""
    threshold = (finetune or {}).get("filter_threshold")
    if kind == JobKind.FINETUNE and isinstance(threshold, (int, float)):
        return f"Filtered fine-tune (weight ≥ {threshold:g})"
    return JobKind(kind).label


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
