"""What a fine-tune job trains on: the parent's generated images, what
physicians said of them, and the reward model's scores where nobody rated.

The rules per objective are the engine's (``engine.feedback_data``), shared
with the experiments; this module only reads the database and scores the
unrated images. Runs in the worker: the reward model is imported inside.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from django.core.files.storage import default_storage

from annotations.models import Image, Rating

from .engine import (
    DEFAULT_FILTER_THRESHOLD,
    DEFAULT_KTO_UNRATED_WEIGHT,
    EngineError,
    FeedbackImage,
    FeedbackRows,
    Judgement,
    objective_rows,
)
from .models import ModelVersion
from .selectors import mean_ratings

SCORE_CHUNK = 64


def _path(image: Image) -> str:
    return default_storage.path(image.file.name)


def feedback_images(
    *,
    images: list[Image],
    reward_version: ModelVersion | None,
    progress: Callable[[float, str], None],
    keep_unscored: bool = False,
) -> tuple[dict[int, FeedbackImage], dict[str, Any]]:
    """Each image with its physicians' mean rating, or the reward model's
    score where nobody rated it. Without ``reward_version`` unrated images
    are left out, or kept with neither (``keep_unscored``: the control
    counts every image the same)."""
    rated = mean_ratings(image_ids=[im.pk for im in images])
    rewards: dict[int, float] = {}
    unrated = [im for im in images if im.pk not in rated]
    if unrated and reward_version is not None:
        from PIL import Image as PILImage

        from .engine import RewardModel

        model = RewardModel.load(reward_version.path)
        for start in range(0, len(unrated), SCORE_CHUNK):
            chunk = unrated[start : start + SCORE_CHUNK]
            pictures = []
            for im in chunk:
                with PILImage.open(_path(im)) as picture:
                    pictures.append(picture.convert("RGB"))
            predicted = model.predict(
                pictures, [im.prompt for im in chunk], [im.modality for im in chunk]
            )
            rewards.update(
                (im.pk, float(r)) for im, r in zip(chunk, predicted.reward, strict=True)
            )
            done = start + len(chunk)
            progress(done / len(unrated), f"scored {done} of {len(unrated)} unrated")
    out = {}
    for im in images:
        if im.pk in rated:
            mean_rating, reward = rated[im.pk][0], None
        elif im.pk in rewards:
            mean_rating, reward = None, rewards[im.pk]
        elif keep_unscored:
            mean_rating, reward = None, None
        else:
            continue
        out[im.pk] = FeedbackImage(
            path=_path(im),
            prompt=im.prompt,
            modality=im.modality,
            mean_rating=mean_rating,
            reward=reward,
        )
    values = [f.value for f in out.values()]
    summary = {
        "n_samples": len(out),
        "n_rated": len(rated),
        "n_scored": len(rewards),
        "rating_count": sum(n for _, n in rated.values()),
        "mean_raw_weight": sum(values) / len(values) if values else None,
    }
    return out, summary


def feedback_judgements(feedback: dict[int, FeedbackImage]) -> list[Judgement]:
    """Every live first rating of these images, for DPO's pairs: a pair forms
    within one physician's ratings of one prompt in one round."""
    rows = (
        Rating.objects.filter(
            image_id__in=list(feedback), retracted_at=None, is_repeat=False
        )
        .order_by("round_id", "rater_id", "id")
        .values_list("round_id", "rater_id", "image_id", "score")
    )
    return [
        Judgement(
            rater=rater_id,
            group=(round_id, feedback[image_id].modality, feedback[image_id].prompt),
            image=feedback[image_id],
            score=score,
        )
        for round_id, rater_id, image_id, score in rows
    ]


def finetune_rows(
    *,
    objective: str,
    images: list[Image],
    reward_version: ModelVersion | None,
    params: dict[str, Any],
    progress: Callable[[float, str], None],
) -> tuple[FeedbackRows, dict[str, Any], list[int]]:
    """The rows ``objective`` trains on, a summary for the version's metrics,
    and the ids of the images behind them."""
    # The control and DPO never look at the reward model's scores.
    needs_reward = objective not in ("dpo", "none")
    feedback, summary = feedback_images(
        images=images,
        reward_version=reward_version if needs_reward else None,
        progress=progress,
        keep_unscored=objective == "none",
    )
    threshold = float(params.get("filter_threshold", DEFAULT_FILTER_THRESHOLD))
    rows = objective_rows(
        objective,
        [feedback[pk] for pk in sorted(feedback)],
        judgements=feedback_judgements(feedback) if objective == "dpo" else (),
        filter_threshold=threshold,
        kto_middle=params.get("kto_middle", "neutral"),
        kto_middle_weight=float(params.get("kto_middle_weight", 0.5)),
        kto_unrated_weight=float(
            params.get("kto_unrated_weight", DEFAULT_KTO_UNRATED_WEIGHT)
        ),
    )
    if not rows.rows:
        raise EngineError(_nothing_to_train_on(objective, len(images), threshold))
    summary["objective"] = objective
    summary["n_rows"] = len(rows.rows)
    if objective == "filtered":
        summary.update(filter_threshold=threshold, n_kept=len(rows.rows))
    if objective == "dpo":
        summary["n_pairs"] = len(rows.rows)
    if objective == "kto":
        # A kto row's fifth cell is its label, written as text.
        labels = [float(cast(str, r[4])) for r in rows.rows]
        summary["n_desirable"] = sum(1 for v in labels if v > 0)
        summary["n_undesirable"] = sum(1 for v in labels if v < 0)
        summary["n_neutral"] = sum(1 for v in labels if v == 0)
    used = {row[0] for row in rows.rows}
    if rows.kind == "pairs":
        used |= {row[1] for row in rows.rows}
    ids = sorted(pk for pk, f in feedback.items() if f.path in used)
    return rows, summary, ids


def _nothing_to_train_on(objective: str, n_images: int, threshold: float) -> str:
    if objective == "filtered":
        return (
            f"filter_threshold {threshold}: none of the {n_images} generated "
            "images reaches it; lower it or rate more images"
        )
    if objective == "dpo":
        return (
            f"dpo: no physician rated two images of one prompt differently among "
            f"the {n_images} generated images; rate more, or choose another "
            "objective"
        )
    return f"{objective}: nothing to train on among {n_images} generated images"


def write_rows(rows: FeedbackRows, out: Path) -> Path:
    return rows.write(out / f"{rows.kind}.csv")
