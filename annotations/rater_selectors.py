"""Reads for rater science: rating matrices and records out of the database.

Every selector reads live ratings only (``retracted_at`` is null).  First
ratings (``is_repeat`` false) feed agreement between physicians and the
visual Turing test; repeats are read only for test-retest.  An image counts
as a *real control* when its round item is a control or the image itself is
real (``Image.source == real``).

Filters: ``modality`` keeps one modality; ``model_version`` keeps the
generated images of one diffusion version *and the real controls*, which stay
as the reference for the visual Turing test.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet

from models_ml.models import ImageScore, ModelKind, ModelVersion

from .models import ImageSource, Rating, Round, RoundImage

Matrix = dict[str, dict[int, int]]  # {username: {image_id: score}}


@dataclass(frozen=True)
class RatingRecord:
    """One live rating with what the statistics need to know about its image."""

    rater: str
    image_id: int
    score: int
    is_repeat: bool
    created_at: datetime
    time_taken_ms: int | None
    modality: str
    model_version_id: int | None
    is_control: bool
    in_agreement_set: bool

    @property
    def is_synthetic(self) -> bool:
        return not self.is_control


def _filtered(
    qs: QuerySet[Rating], *, modality: str | None, model_version: ModelVersion | None
) -> QuerySet[Rating]:
    if modality:
        qs = qs.filter(image__modality=modality)
    if model_version is not None:
        qs = qs.filter(
            Q(image__model_version=model_version) | Q(image__source=ImageSource.REAL)
        )
    return qs


def rating_records(
    *,
    round: Round,
    modality: str | None = None,
    model_version: ModelVersion | None = None,
) -> list[RatingRecord]:
    """Live ratings of ``round`` (first and repeat), oldest first."""
    items = {
        image_id: (is_control, in_set)
        for image_id, is_control, in_set in RoundImage.objects.filter(
            round=round
        ).values_list("image_id", "is_control", "in_agreement_set")
    }
    rows = (
        _filtered(
            Rating.objects.filter(round=round, retracted_at=None),
            modality=modality,
            model_version=model_version,
        )
        .order_by("created_at", "id")
        .values_list(
            "rater__username",
            "image_id",
            "score",
            "is_repeat",
            "created_at",
            "time_taken_ms",
            "image__modality",
            "image__source",
            "image__model_version_id",
        )
    )
    out = []
    for rater, image_id, score, repeat, at, ms, modality_, source, version in rows:
        is_control, in_set = items.get(image_id, (False, False))
        out.append(
            RatingRecord(
                rater=rater,
                image_id=image_id,
                score=score,
                is_repeat=repeat,
                created_at=at,
                time_taken_ms=ms,
                modality=modality_,
                model_version_id=version,
                is_control=is_control or source == ImageSource.REAL,
                in_agreement_set=in_set,
            )
        )
    return out


def first_rating_matrix(
    records: list[RatingRecord], *, agreement_set_only: bool = False
) -> Matrix:
    """``{rater: {image_id: score}}`` of first ratings, raters in name order."""
    matrix: Matrix = defaultdict(dict)
    for r in records:
        if r.is_repeat or (agreement_set_only and not r.in_agreement_set):
            continue
        matrix[r.rater].setdefault(r.image_id, r.score)
    return {rater: matrix[rater] for rater in sorted(matrix)}


def repeat_matrices(records: list[RatingRecord]) -> tuple[Matrix, Matrix]:
    """(first ratings, repeats) of the images each rater saw twice."""
    repeats: Matrix = defaultdict(dict)
    for r in records:
        if r.is_repeat:
            repeats[r.rater].setdefault(r.image_id, r.score)
    firsts: Matrix = defaultdict(dict)
    for r in records:
        if not r.is_repeat and r.image_id in repeats.get(r.rater, {}):
            firsts[r.rater].setdefault(r.image_id, r.score)
    names = sorted(repeats)
    return (
        {n: firsts.get(n, {}) for n in names},
        {n: repeats[n] for n in names},
    )


def round_modalities(*, round: Round) -> list[str]:
    return sorted(
        set(
            RoundImage.objects.filter(round=round).values_list(
                "image__modality", flat=True
            )
        )
    )


def round_model_versions(*, round: Round) -> list[ModelVersion]:
    """Diffusion versions whose images are in the round."""
    ids = (
        RoundImage.objects.filter(round=round, image__model_version__isnull=False)
        .values("image__model_version")
        .distinct()
    )
    return list(ModelVersion.objects.filter(pk__in=ids).order_by("created_at", "pk"))


def reward_models_for(*, round: Round) -> list[ModelVersion]:
    """Reward models that scored at least one image of the round, newest first;
    the round's own reward model is listed even before it scored anything."""
    scored = ImageScore.objects.filter(image__round_items__round=round).values(
        "model_version"
    )
    return list(
        ModelVersion.objects.filter(kind=ModelKind.REWARD)
        .filter(Q(pk__in=scored) | Q(scored_rounds=round))
        .distinct()
        .order_by("-created_at", "-pk")
    )


def image_scores(
    *, model_version: ModelVersion, image_ids: list[int]
) -> dict[int, tuple[float, float]]:
    """``{image_id: (expected_score, reward)}`` for the images it scored."""
    return {
        image_id: (expected, reward)
        for image_id, expected, reward in ImageScore.objects.filter(
            model_version=model_version, image_id__in=image_ids
        ).values_list("image_id", "expected_score", "reward")
    }
