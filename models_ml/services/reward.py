"""The reward model: trained on every live rating so far, with real images as
the anchor (``reward_model_train_start`` in the web process,
``reward_model_train_run`` in the worker)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from annotations.errors import DomainError
from annotations.exports import export_rows
from annotations.models import (
    Rating,
    Round,
)
from annotations.users import User

from ..models import (
    Job,
    JobKind,
    ModelKind,
    ModelVersion,
)
from ..rater_weighting import RATER_WEIGHTINGS, RatedRow, rater_weighting
from ..selectors import (
    rating_summary,
    ratings_for_reward,
    real_images_for_training,
)
from .jobs import job_create, job_dir
from .params import REWARD_KEYS, check_keys, positive_int
from .worker import (
    DEFAULT_MAX_REAL_IMAGES,
    Progress,
    Reporter,
    image_file_path,
    version_result,
)


def check_reward_params(params: dict[str, Any]) -> None:
    check_keys(params, REWARD_KEYS, "train_reward")
    for key in ("ensemble_size", "epochs", "n_folds", "max_real_images"):
        if key in params:
            positive_int(params[key], key)
    target = params.get("target_precision", 0.8)
    if not isinstance(target, (int, float)) or not 0 < target <= 1:
        raise DomainError("target_precision must be in (0, 1]")
    weighting = params.get("rater_weighting", "none")
    if weighting not in RATER_WEIGHTINGS:
        raise DomainError(
            f"rater_weighting {weighting!r} is not one of {', '.join(RATER_WEIGHTINGS)}"
        )


@transaction.atomic
def reward_model_train_start(
    *,
    created_by: User | None,
    rounds: Iterable[Round] | None = None,
    params: dict[str, Any],
    chain: dict[str, Any] | None = None,
) -> Job:
    """Queue training of the reward model on every live rating so far (or of
    ``rounds``); the ratings are fixed when the job starts."""

    check_reward_params(params)
    round_ids = None if rounds is None else sorted({r.pk for r in rounds})
    ratings = Rating.objects.filter(retracted_at=None, is_repeat=False)
    if round_ids is not None:
        if not round_ids:
            raise DomainError("give at least one round, or none for all ratings")
        ratings = ratings.filter(round_id__in=round_ids)
    if ratings.count() < 2:
        raise DomainError("a reward model needs at least 2 ratings; too few so far")
    job_params: dict[str, Any] = {"round_ids": round_ids, "reward": dict(params)}
    if chain is not None:
        job_params["chain"] = chain
    return job_create(
        kind=JobKind.TRAIN_REWARD, created_by=created_by, params=job_params
    )


# The columns the engine and the rater weighting need, in export order.
_REWARD_ROW_FIELDS = (
    "image__file",
    "score",
    "image__modality",
    "image__prompt",
    "rater__username",
    "rater__rater_profile__expert_level",
    "round_id",
    "image__uid",
)


def reward_rows(ratings: QuerySet[Rating]) -> tuple[list[Any], list[RatedRow]]:
    """Every rating as the engine trains on it (``RatingRecord``) and as the
    rater weighting sees it (``RatedRow``), in the same order, read once from
    the database: no CSV is written and read back on the way."""
    from ..engine import RatingRecord

    media_root = Path(settings.MEDIA_ROOT)
    records: list[Any] = []
    rows: list[RatedRow] = []
    fields = ratings.values_list(*_REWARD_ROW_FIELDS)
    for file, score, modality, prompt, rater, level, round_id, uid in fields.iterator(
        chunk_size=5000
    ):
        path = media_root / file
        if not path.is_file():
            raise DomainError(
                f"round {round_id}, image {uid.hex}: image file not found: {path}"
            )
        records.append(
            RatingRecord(
                image_path=str(path),
                prompt=prompt.strip(),
                modality=modality,
                rating=score,
            )
        )
        rows.append(
            RatedRow(
                rater=rater,
                item=(str(round_id), uid.hex),
                score=score,
                expert_level=level or "",
            )
        )
    return records, rows


def reward_model_train_run(job: Job, progress: Progress) -> dict[str, Any]:
    """Train the reward model on the ratings up to the job's first start."""
    from ..engine import RewardConfig, spread_evenly, train_reward_model

    done = ModelVersion.objects.filter(job=job).first()
    if done is not None:
        return _reward_result(job, done)
    p = dict(job.params.get("reward") or {})
    until = job.started_at or timezone.now()
    ratings = ratings_for_reward(round_ids=job.params.get("round_ids"), until=until)
    summary = rating_summary(ratings=ratings)
    out = job_dir(job=job)
    out.mkdir(parents=True, exist_ok=True)
    records, weighting = _weighted_records(ratings, p, out)
    real_images = spread_evenly(
        list(real_images_for_training(dataset_ids=summary["dataset_ids"])),
        int(p.get("max_real_images", DEFAULT_MAX_REAL_IMAGES)),
    )
    real = [(image_file_path(im), im.prompt, im.modality) for im in real_images]
    fields = {f.name for f in dataclasses.fields(RewardConfig)}
    config = RewardConfig(**{k: v for k, v in p.items() if k in fields})
    reporter = Reporter(progress)
    spans = {"features": (0.0, 0.4), "folds": (0.4, 0.55), "final": (0.95, 0.05)}

    def on_stage(stage: str, done: int, total: int) -> None:
        start, span = spans.get(stage, (0.0, 1.0))
        reporter(start + span * done / max(total, 1), f"{stage}: {done} of {total}")

    result = train_reward_model(
        records, config=config, real_images=real, progress=on_stage
    )
    metrics = _calibrated_metrics(result, float(p.get("target_precision", 0.8)))
    model_dir = result.model.save(out / "reward")
    (model_dir / "metrics.json").write_text(
        json.dumps(
            {"heldout": metrics, "folds": result.fold_metrics}, indent=2, default=str
        )
    )
    with transaction.atomic():
        previous = (
            ModelVersion.objects.filter(kind=ModelKind.REWARD).exclude(job=job).first()
        )
        dataset_ids = summary["dataset_ids"]
        version = ModelVersion.objects.create(
            name=p.get("name") or f"reward #{job.pk} ({summary['count']} ratings)",
            kind=ModelKind.REWARD,
            backend="reward",
            parent=previous,
            dataset_id=dataset_ids[0] if len(dataset_ids) == 1 else None,
            rating_count=summary["count"],
            ratings_until=summary["until"],
            path=str(model_dir),
            params={
                **p,
                **weighting.as_params(),
                "round_ids": job.params.get("round_ids"),
                "dataset_ids": dataset_ids,
                "n_real_images": len(real),
            },
            metrics=json.loads(json.dumps(metrics, default=float)),
            job=job,
        )
        version.trained_on_rounds.set(summary["round_ids"])
        return _reward_result(job, version)


def _weighted_records(
    ratings: QuerySet[Rating], p: dict[str, Any], out: Path
) -> tuple[list[Any], Any]:
    """The ratings as the engine's records, each weighted by its physician
    (``rater_weighting``); the weights and the ratings themselves are kept
    beside the model."""
    records, rows = reward_rows(ratings)
    weighting = rater_weighting(rows=rows, scheme=p.get("rater_weighting", "none"))
    records = [
        dataclasses.replace(r, weight=w)
        for r, w in zip(records, weighting.row_weights(rows), strict=True)
    ]
    # The ratings the version learned from, in the researchers' export format
    # (what `python -m models_ml.engine train-reward --ratings` reads): an
    # artifact kept beside the model, not an input.
    with (out / "ratings.csv").open("w", newline="", encoding="utf-8") as handle:
        for line in export_rows(ratings, absolute_paths=True):
            handle.write(line)
    (out / "rater_weights.json").write_text(json.dumps(weighting.as_params(), indent=2))
    return records, weighting


def _calibrated_metrics(result: Any, target_precision: float) -> dict[str, Any]:
    """The held-out metrics, with the filter threshold that reaches
    ``target_precision`` on the held-out ratings (also set on the model)."""
    from ..engine import calibrate_threshold

    metrics = dict(result.metrics)
    if result.heldout is not None:
        calibration = calibrate_threshold(
            result.heldout.reward, result.heldout.ratings, target_precision
        )
        metrics.update(
            threshold=calibration.threshold,
            threshold_precision=calibration.achieved_precision,
            threshold_recall=calibration.recall,
            threshold_note=calibration.message,
        )
        result.model.info["threshold"] = calibration.threshold
    return metrics


def _reward_result(job: Job, version: ModelVersion) -> dict[str, Any]:
    from .chains import (  # chains starts reward models
        STEP_CONTROL,
        chain_next_after_reward,
        chain_step_job,
    )

    next_job = chain_next_after_reward(job=job, reward_version=version)
    # A retraining run queues the fine-tune and its control together.
    following = [next_job] if next_job is not None else []
    if next_job is not None and next_job.params.get("chain"):
        control = chain_step_job(next_job.params["chain"], STEP_CONTROL)
        following += [control] if control is not None else []
    return version_result(
        version,
        rating_count=version.rating_count,
        threshold=version.metrics.get("threshold"),
        next_job_id=getattr(next_job, "pk", None),
        next_job_ids=[j.pk for j in following],
    )
