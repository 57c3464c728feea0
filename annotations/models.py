"""Records of the rating platform: datasets, images, rounds, ratings, audit."""

from __future__ import annotations

import uuid

from django.conf import settings as django_settings
from django.db import models
from django.db.models import Case, F, FloatField, Q, Value, When
from django.db.models.functions import Cast, Coalesce

from .models_base import TimeStampedModel

# Re-exported: callers and Django find every model of the app here.
from .models_raters import ExpertLevel, RaterProfile  # noqa: F401


class Role(models.TextChoices):
    PHYSICIAN = "physician", "Physician"
    ADMIN = "admin", "Admin"
    RESEARCHER = "researcher", "Researcher"


class Dataset(TimeStampedModel):
    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    root = models.CharField(max_length=1000, help_text="Folder the import read from.")
    modalities = models.JSONField(default=list, blank=True)
    import_report = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class ImageSource(models.TextChoices):
    REAL = "real", "Real"
    GENERATED = "generated", "Generated"


def image_upload_to(instance: Image, filename: str) -> str:
    return f"images/{instance.uid.hex[:2]}/{instance.uid.hex}/{filename}"


class Image(TimeStampedModel):
    """One picture, stored as a normalised PNG plus an 8-bit preview for display.

    ``uid`` is what URLs show, so nothing in a URL hints at source or order.
    """

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    dataset = models.ForeignKey(
        Dataset, null=True, blank=True, on_delete=models.CASCADE, related_name="images"
    )
    file = models.FileField(upload_to=image_upload_to, max_length=300)
    preview = models.FileField(upload_to=image_upload_to, max_length=300)
    sha256 = models.CharField(max_length=64, db_index=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    bit_depth = models.PositiveSmallIntegerField(default=8)
    channels = models.PositiveSmallIntegerField(default=1)
    window_center = models.FloatField(null=True, blank=True)
    window_width = models.FloatField(null=True, blank=True)
    modality = models.CharField(max_length=64, db_index=True)
    prompt = models.TextField()
    source = models.CharField(
        max_length=16,
        choices=ImageSource.choices,
        default=ImageSource.REAL,
        db_index=True,
    )
    source_path = models.CharField(max_length=1000, blank=True)
    source_format = models.CharField(max_length=16, blank=True)
    frame_index = models.IntegerField(null=True, blank=True)
    header = models.JSONField(default=dict, blank=True)
    quarantined = models.BooleanField(default=False, db_index=True)
    quarantine_reason = models.CharField(max_length=200, blank=True)
    # Provenance of generated images.
    model_version = models.ForeignKey(
        "models_ml.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="images",
    )
    generation = models.JSONField(default=dict, blank=True)
    generated_for_round = models.ForeignKey(
        "Round", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reward_score = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(source="real") | Q(model_version__isnull=False),
                name="generated_image_has_model_version",
            ),
            models.CheckConstraint(
                condition=Q(reward_score__isnull=True)
                | (Q(reward_score__gte=0) & Q(reward_score__lte=1)),
                name="reward_score_in_unit_interval",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.modality} image {self.uid.hex[:8]}"


class RoundStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    GENERATING = "generating", "Generating"
    RATING = "rating", "Open for rating"
    CLOSED = "closed", "Closed"


class ServingPolicy(models.TextChoices):
    RANDOM = "random", "Random order"
    UNCERTAINTY = "uncertainty", "Most informative first"


class AssignmentPolicy(models.TextChoices):
    """Why an image was served: recorded on every assignment."""

    RANDOM = "random", "Random order"
    AGREEMENT = "agreement", "Agreement set"
    UNCERTAINTY = "uncertainty", "Most informative first"
    REPEAT = "repeat", "Self-consistency repeat"


class Round(TimeStampedModel):
    # Not fields: set on a round read by ``rating.queries.round_for_rating``,
    # whether that rater's name is on its list (``rating.access``).
    rater_check_for: int | None
    rater_check: bool

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    status = models.CharField(
        max_length=16,
        choices=RoundStatus.choices,
        default=RoundStatus.DRAFT,
        db_index=True,
    )
    raters_per_image = models.PositiveSmallIntegerField(default=1)
    control_share = models.FloatField(
        default=0.0, help_text="Share of the round's images that are real controls."
    )
    agreement_share = models.FloatField(
        default=0.0,
        db_default=0.0,
        help_text="Share of the round's images that every physician rates.",
    )
    repeat_share = models.FloatField(
        default=0.0,
        db_default=0.0,
        help_text="Share of a physician's images that come back to them later, "
        "unannounced, for test-retest agreement.",
    )
    serving_policy = models.CharField(
        max_length=16,
        choices=ServingPolicy.choices,
        default=ServingPolicy.RANDOM,
        db_default=ServingPolicy.RANDOM,
    )
    rescore_every = models.PositiveIntegerField(
        default=0,
        db_default=0,
        help_text="Most informative first: after this many new ratings, train "
        "the reward model on every rating so far and score the round again "
        "(0: the spread stays as first scored).",
    )
    reward_model_version = models.ForeignKey(
        "models_ml.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="scored_rounds",
        help_text="Reward model whose ensemble spread drives uncertainty serving.",
    )
    raters = models.ManyToManyField(
        django_settings.AUTH_USER_MODEL,
        blank=True,
        related_name="assigned_rounds",
        help_text="Physicians who may rate this round; empty means every physician.",
    )
    model_version = models.ForeignKey(
        "models_ml.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="rounds",
    )
    compare_model_version = models.ForeignKey(
        "models_ml.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="comparison_rounds",
    )
    settings = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="created_rounds",
    )
    display_size = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Side in pixels every image of the round is shown at; empty: "
        "the smallest generator resolution in the round (256 without one).",
    )
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(raters_per_image__gte=1),
                name="round_raters_per_image_positive",
            ),
            models.CheckConstraint(
                condition=Q(control_share__gte=0) & Q(control_share__lte=1),
                name="round_control_share_in_unit_interval",
            ),
            models.CheckConstraint(
                condition=Q(agreement_share__gte=0) & Q(agreement_share__lte=1),
                name="round_agreement_share_in_unit_interval",
            ),
            models.CheckConstraint(
                condition=Q(repeat_share__gte=0) & Q(repeat_share__lte=0.5),
                name="round_repeat_share_at_most_half",
            ),
            models.CheckConstraint(
                condition=Q(rescore_every=0)
                | Q(serving_policy=ServingPolicy.UNCERTAINTY),
                name="round_rescore_only_with_uncertainty",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_open(self) -> bool:
        return self.status == RoundStatus.RATING


def informativeness() -> models.Expression:
    """How much one more rating of a round item is expected to tell.

    ``uncertainty² + s² / 4``: the reward ensemble's variance (the model does
    not know) plus the variance of the physicians' live first ratings mapped to
    the reward's 0–1 scale (``reward = (score - 1) / 2``, so a score variance
    ``s²`` is ``s² / 4`` there; physicians disagree).  ``s²`` comes from the
    running sums, ``(n·Σx² - (Σx)²) / n²``, and is 0 below two ratings; an item
    never scored counts as certain.  One expression serves the ordering and
    the index that makes it fast.
    """
    n = F("rating_count")
    spread = Coalesce(
        F("uncertainty") * F("uncertainty"), Value(0.0), output_field=FloatField()
    )
    disagreement = Case(
        When(
            rating_count__gt=1,
            then=Cast(
                n * F("score_sq_sum") - F("score_sum") * F("score_sum"), FloatField()
            )
            / Cast(n * n * Value(4), FloatField()),
        ),
        default=Value(0.0),
        output_field=FloatField(),
    )
    return spread + disagreement


class RoundImage(models.Model):
    """An image in a round. ``shuffle_key`` is a random key that orders serving."""

    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="items")
    image = models.ForeignKey(
        Image, on_delete=models.PROTECT, related_name="round_items"
    )
    is_control = models.BooleanField(default=False)
    in_agreement_set = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Rated by every physician of the round.",
    )
    shuffle_key = models.BigIntegerField()
    assigned_count = models.PositiveIntegerField(default=0)
    rating_count = models.PositiveIntegerField(default=0)
    # Running sums of live first ratings, so disagreement needs no scan.
    score_sum = models.PositiveIntegerField(default=0, db_default=0)
    score_sq_sum = models.PositiveIntegerField(default=0, db_default=0)
    uncertainty = models.FloatField(
        null=True,
        blank=True,
        help_text="Reward-ensemble spread from the round's reward model.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["round", "image"], name="round_image_unique"
            ),
        ]
        indexes = [
            models.Index(fields=["round", "shuffle_key"], name="round_shuffle_idx"),
            # The agreement set, walked from a random point per physician.
            models.Index(
                fields=["round", "shuffle_key"],
                name="round_agreement_idx",
                condition=Q(in_agreement_set=True),
            ),
            # Uncertainty serving: fewest raters first, then most informative.
            models.Index(
                F("round"),
                F("assigned_count"),
                informativeness().desc(),
                F("shuffle_key"),
                name="round_informative_idx",
                condition=Q(in_agreement_set=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.round_id}:{self.image_id}"


class Assignment(models.Model):
    """An image served to one physician: when, by which policy, and how it ended."""

    round_image = models.ForeignKey(
        RoundImage, on_delete=models.CASCADE, related_name="assignments"
    )
    round = models.ForeignKey(
        Round, on_delete=models.CASCADE, related_name="assignments"
    )
    rater = models.ForeignKey(
        django_settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="assignments",
    )
    served_at = models.DateTimeField(auto_now_add=True)
    policy = models.CharField(
        max_length=32,
        choices=AssignmentPolicy.choices,
        default=AssignmentPolicy.RANDOM,
    )
    is_repeat = models.BooleanField(
        default=False,
        db_default=False,
        help_text="A second, unannounced showing for test-retest.",
    )
    completed_at = models.DateTimeField(null=True, blank=True)
    skipped_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    # Held as the physician's next image (preloaded, timed once shown).
    upcoming = models.BooleanField(default=False, db_default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["round_image", "rater", "is_repeat"],
                name="assignment_once_per_rater",
            ),
        ]
        indexes = [
            models.Index(fields=["round", "rater"], name="assignment_round_rater_idx"),
            models.Index(
                fields=["round", "rater"],
                name="assignment_open_idx",
                condition=Q(completed_at__isnull=True)
                & Q(skipped_at__isnull=True)
                & Q(expired_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"assignment {self.pk}"

    @property
    def is_open(self) -> bool:
        return not (self.completed_at or self.skipped_at or self.expired_at)


class Flag(models.TextChoices):
    ARTIFACT = "artifact", "Artifact"
    IMPLAUSIBLE = "implausible", "Anatomically implausible"
    OTHER = "other", "Other"


class Rating(models.Model):
    """A physician's score. Rows are never deleted: an undo sets ``retracted_at``.

    One live rating per rater, image and round is enforced by the database.
    """

    rater = models.ForeignKey(
        django_settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="ratings",
    )
    image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="ratings")
    round = models.ForeignKey(Round, on_delete=models.PROTECT, related_name="ratings")
    assignment = models.ForeignKey(
        Assignment,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="ratings",
    )
    score = models.PositiveSmallIntegerField()
    flags = models.JSONField(default=list, blank=True)
    comment = models.TextField(blank=True, max_length=2000)
    time_taken_ms = models.PositiveIntegerField(null=True, blank=True)
    is_repeat = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Second rating of an image by the same physician (test-retest); "
        "kept out of training and the agreement between physicians.",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    retracted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rater", "image", "round", "is_repeat"],
                condition=Q(retracted_at__isnull=True),
                name="one_live_rating_per_rater_image_round",
            ),
            models.CheckConstraint(
                condition=Q(score__gte=1) & Q(score__lte=3), name="rating_score_1_to_3"
            ),
        ]
        indexes = [
            models.Index(fields=["round", "rater", "created_at"]),
            # Counting a physician's live ratings (progress on every page)
            # reads only this index.
            models.Index(
                fields=["round", "rater"],
                name="rating_live_round_rater_idx",
                condition=Q(retracted_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rater_id} rated {self.image_id}: {self.score}"


class AuditEvent(models.Model):
    """Append-only log of who did what and when."""

    actor = models.ForeignKey(
        django_settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
    )
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_name} {self.action}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            raise ValueError("audit events are append-only")
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise ValueError("audit events are append-only")


# Kept in their own module; imported here so Django finds them.
from .models_tokens import ApiToken  # noqa: E402, F401
