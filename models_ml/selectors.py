"""Reads for the ML lifecycle: lineage, job chains, and what a job trains on."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Avg, Count, Exists, Max, OuterRef, Q, QuerySet

from annotations.models import Image, ImageSource, Rating, RoundImage
from annotations.selectors import control_pool as rounds_control_pool

from .models import GateStatus, Job, JobKind, ModelKind, ModelVersion


def model_versions_list(*, kind: str | None = None) -> QuerySet[ModelVersion]:
    qs = ModelVersion.objects.select_related("parent", "dataset", "job")
    return qs.filter(kind=kind) if kind else qs


def model_version_ancestors(*, model_version: ModelVersion) -> list[ModelVersion]:
    """The version itself, its parent, and so on up to the root."""
    chain = [model_version]
    seen = {model_version.pk}
    while chain[-1].parent_id is not None and chain[-1].parent_id not in seen:
        parent = ModelVersion.objects.get(pk=chain[-1].parent_id)
        seen.add(parent.pk)
        chain.append(parent)
    return chain


def model_version_dataset(*, model_version: ModelVersion) -> Any:
    """The dataset of the nearest version in the lineage that names one."""
    for version in model_version_ancestors(model_version=model_version):
        if version.dataset_id is not None:
            return version.dataset
    return None


@dataclass
class LineageNode:
    version: ModelVersion
    children: list[LineageNode] = field(default_factory=list)


def model_version_tree(*, kind: str | None = None) -> list[LineageNode]:
    """Every version as a forest: roots first, children under their parent."""
    versions = list(model_versions_list(kind=kind).order_by("created_at", "id"))
    nodes = {v.pk: LineageNode(v) for v in versions}
    roots: list[LineageNode] = []
    for version in versions:
        parent = nodes.get(version.parent_id) if version.parent_id else None
        (parent.children if parent else roots).append(nodes[version.pk])
    return roots


def job_chain(*, job: Job) -> list[Job]:
    """The jobs of one retraining run, in the order they were created."""
    chain_id = (job.params or {}).get("chain", {}).get("id")
    if not chain_id:
        return [job]
    return list(
        Job.objects.filter(params__chain__id=chain_id).order_by("created_at", "id")
    )


def real_images_for_training(*, dataset_ids: list[int]) -> QuerySet[Image]:
    return Image.objects.filter(
        dataset_id__in=dataset_ids, source=ImageSource.REAL, quarantined=False
    ).order_by("id")


def control_pool(
    *, model_version: ModelVersion, dataset: Any = None, modalities: Iterable[str]
) -> QuerySet[Image]:
    """The real controls beside a version's images (``annotations.selectors.
    control_pool``): from ``dataset``, else the version's own (nearest in its
    lineage); from any dataset when neither names one."""
    return rounds_control_pool(
        modalities=modalities,
        dataset=dataset or model_version_dataset(model_version=model_version),
    )


def ratings_for_reward(*, round_ids: list[int] | None, until: Any) -> QuerySet[Rating]:
    """Live first ratings made up to ``until``, of the given rounds or of all.

    Test-retest repeats are left out: a second showing measures the
    physician, and counting it would give that image two votes.
    """
    qs = Rating.objects.filter(
        retracted_at=None, is_repeat=False, created_at__lte=until
    )
    if round_ids is not None:
        qs = qs.filter(round_id__in=round_ids)
    return qs.order_by("id")


def rating_summary(*, ratings: QuerySet[Rating]) -> dict[str, Any]:
    """Count, last time, rounds and datasets behind a set of ratings."""
    agg = ratings.aggregate(n=Count("id"), until=Max("created_at"))
    round_ids = sorted(set(ratings.values_list("round_id", flat=True)))
    image_ids = ratings.values("image_id")
    real_datasets = set(
        Image.objects.filter(pk__in=image_ids, source=ImageSource.REAL)
        .exclude(dataset_id__isnull=True)
        .values_list("dataset_id", flat=True)
    )
    version_ids = set(
        Image.objects.filter(
            pk__in=image_ids, source=ImageSource.GENERATED
        ).values_list("model_version_id", flat=True)
    )
    for version in ModelVersion.objects.filter(pk__in=version_ids):
        dataset = model_version_dataset(model_version=version)
        if dataset is not None:
            real_datasets.add(dataset.pk)
    return {
        "count": agg["n"],
        "until": agg["until"],
        "round_ids": round_ids,
        "dataset_ids": sorted(real_datasets),
    }


def generated_images_for_finetune(
    *, diffusion_version: ModelVersion, limit: int
) -> list[Image]:
    """Generated images of this version and its ancestors, newest first."""
    lineage = [v.pk for v in model_version_ancestors(model_version=diffusion_version)]
    return list(
        Image.objects.filter(
            source=ImageSource.GENERATED,
            model_version_id__in=lineage,
            quarantined=False,
        ).order_by("-id")[:limit]
    )


def mean_ratings(*, image_ids: list[int]) -> dict[int, tuple[float, int]]:
    """Mean live first score and rating count per image, for images that have any."""
    rows = (
        Rating.objects.filter(
            image_id__in=image_ids, retracted_at=None, is_repeat=False
        )
        .values("image_id")
        .annotate(mean=Avg("score"), n=Count("id"))
    )
    return {r["image_id"]: (float(r["mean"]), int(r["n"])) for r in rows}


def latest_reward_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(kind=ModelKind.REWARD).first()


def default_diffusion_version() -> ModelVersion | None:
    """The version generation and the next retraining start from by default.

    The newest version that passed the promotion gate or is a base model
    (trained on a dataset, or adopted from a folder: where a lineage of
    fine-tunes starts). Controls and fine-tunes that failed or await the
    gate are never the default; they stay in the lineage and may be chosen
    by hand. With neither, the newest version that did not fail.
    """
    versions = ModelVersion.objects.filter(kind=ModelKind.DIFFUSION, is_control=False)
    eligible = versions.filter(
        Q(gate=GateStatus.PROMOTED) | Q(parent=None) | Q(job__kind=JobKind.TRAIN_BASE)
    )
    newest = versions.exclude(gate=GateStatus.FAILED)
    order = ("-created_at", "-id")
    return eligible.order_by(*order).first() or newest.order_by(*order).first()


# --- review of reward-scored generations ------------------------------------------

REVIEW_SHOW = ("all", "kept", "rejected")
DEFAULT_REVIEW_THRESHOLD = 0.5


@dataclass(frozen=True)
class ReviewFilter:
    """Which scored generations of a version the review shows.

    ``threshold`` splits them: a reward at or above it is kept, below it
    rejected.  ``unused_only`` leaves out images already in some round.
    """

    model_version: ModelVersion
    threshold: float
    show: str = "all"
    modality: str = ""
    unused_only: bool = False


def review_scored_images(
    *, model_version: ModelVersion, modality: str = "", unused_only: bool = False
) -> QuerySet[Image]:
    """Generated images of a version that carry a reward score, from generate
    jobs and generated rounds alike."""
    qs = Image.objects.filter(
        source=ImageSource.GENERATED,
        model_version=model_version,
        quarantined=False,
        reward_score__isnull=False,
    )
    if modality:
        qs = qs.filter(modality=modality)
    if unused_only:
        qs = qs.exclude(Exists(RoundImage.objects.filter(image=OuterRef("pk"))))
    return qs


def review_images(*, review: ReviewFilter) -> QuerySet[Image]:
    """The filtered images, best reward first, with what their tiles show."""
    qs = review_scored_images(
        model_version=review.model_version,
        modality=review.modality,
        unused_only=review.unused_only,
    )
    if review.show == "kept":
        qs = qs.filter(reward_score__gte=review.threshold)
    elif review.show == "rejected":
        qs = qs.filter(reward_score__lt=review.threshold)
    return qs.select_related("model_version", "generated_for_round").order_by(
        "-reward_score", "-id"
    )


def review_page_images(*, review: ReviewFilter, ids: Any) -> list[Image]:
    """The images of one page, in the page's order.

    Pages are cut from ``review_images(...).values_list("id")``: sorting
    thousands of bare ids is cheap, sorting whole rows (prompts, JSON) is not;
    only the page's rows are then read in full.
    """
    ids = list(ids)
    rows = Image.objects.select_related("model_version", "generated_for_round")
    found = rows.in_bulk(ids)
    return [found[pk] for pk in ids if pk in found]


def review_shown_count(*, review: ReviewFilter, counts: dict[str, int]) -> int:
    """How many images ``review.show`` lists, from counts already made."""
    return {"kept": counts["kept"], "rejected": counts["rejected"]}.get(
        review.show, counts["total"]
    )


def review_counts(*, review: ReviewFilter) -> dict[str, int]:
    """Kept and rejected at the threshold, and the version's unscored images."""
    scored = review_scored_images(
        model_version=review.model_version,
        modality=review.modality,
        unused_only=review.unused_only,
    ).aggregate(
        kept=Count("id", filter=Q(reward_score__gte=review.threshold)),
        rejected=Count("id", filter=Q(reward_score__lt=review.threshold)),
    )
    unscored = Image.objects.filter(
        source=ImageSource.GENERATED,
        model_version=review.model_version,
        reward_score__isnull=True,
    )
    if review.modality:
        unscored = unscored.filter(modality=review.modality)
    return {
        "kept": scored["kept"],
        "rejected": scored["rejected"],
        "total": scored["kept"] + scored["rejected"],
        "unscored": unscored.count(),
    }


def review_modalities(*, model_version: ModelVersion) -> list[str]:
    return list(
        review_scored_images(model_version=model_version)
        .order_by("modality")
        .values_list("modality", flat=True)
        .distinct()
    )


def review_rounds_of(*, image_ids: list[int]) -> dict[int, list[str]]:
    """Names of the rounds each image is already in, for one page of tiles."""
    out: dict[int, list[str]] = {}
    rows = RoundImage.objects.filter(image_id__in=image_ids).values_list(
        "image_id", "round__name"
    )
    for image_id, name in rows:
        out.setdefault(image_id, []).append(name)
    return out


def review_default_threshold() -> float:
    """The newest reward model's calibrated threshold, else one half."""
    latest = latest_reward_version()
    value = (latest.metrics or {}).get("threshold") if latest is not None else None
    return float(value) if isinstance(value, (int, float)) else DEFAULT_REVIEW_THRESHOLD


def review_versions() -> QuerySet[ModelVersion]:
    """Diffusion versions that have scored generations, newest first."""
    scored = Image.objects.filter(
        model_version=OuterRef("pk"),
        source=ImageSource.GENERATED,
        reward_score__isnull=False,
    )
    return ModelVersion.objects.filter(kind=ModelKind.DIFFUSION).filter(Exists(scored))
