"""Scoring a round's images with a reward model, and re-scoring a
most-informative-first round as it is rated (``round_score_start`` and
``round_rescore_maybe`` in the web process, ``round_score_run`` in the
worker)."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction

from annotations.audit import audit_record
from annotations.errors import DomainError
from annotations.models import (
    Rating,
    Round,
    RoundStatus,
    ServingPolicy,
)
from annotations.users import User

from ..models import (
    FINISHED_STATUSES,
    Job,
    JobKind,
    ModelVersion,
)
from .jobs import job_create
from .params import REWARD_KEYS, check_reward
from .reward import reward_model_train_start
from .worker import Progress, Reporter, image_file_path


def _rescore_reward_params(version: ModelVersion | None) -> dict[str, Any]:
    """The training settings of the round's reward model, so each re-scoring
    trains the same recipe on more ratings."""
    params = (version.params or {}) if version is not None else {}
    return {k: v for k, v in params.items() if k in REWARD_KEYS and k != "name"}


def _in_flight(job_id: Any) -> bool:
    return (
        job_id is not None
        and Job.objects.filter(pk=job_id).exclude(status__in=FINISHED_STATUSES).exists()
    )


@transaction.atomic
def round_rescore_maybe(*, round_id: int) -> Job | None:
    """Queue a re-scoring of a most-informative-first round when it is due.

    Due: the round is open, has ``rescore_every`` > 0 and a reward model, at
    least ``rescore_every`` live first ratings have come in since the last
    re-scoring began (or since the round opened), and neither that
    re-scoring's reward training nor any scoring of the round is still queued
    or running.  Then a reward model is trained on every live rating so far,
    with the round's reward model's settings, and the round is scored with it
    (``chain_next_after_reward``), which makes it the round's reward model.
    Called after each first rating commits; the round row is locked, so two
    physicians' ratings never start two.  Returns the reward job, or None.
    """

    rnd = (
        Round.objects.select_for_update(of=("self",))
        .select_related("reward_model_version")
        .filter(pk=round_id)
        .first()
    )
    if (
        rnd is None
        or rnd.status != RoundStatus.RATING
        or rnd.serving_policy != ServingPolicy.UNCERTAINTY
        or rnd.rescore_every < 1
        or rnd.reward_model_version is None
    ):
        return None
    state = dict(rnd.settings.get("rescore") or {})
    if _in_flight(state.get("job_id")) or _in_flight(rnd.settings.get("score_job_id")):
        return None
    rated = Rating.objects.filter(round=rnd, retracted_at=None, is_repeat=False).count()
    if rated - int(state.get("at", 0)) < rnd.rescore_every:
        return None
    params = {
        **_rescore_reward_params(rnd.reward_model_version),
        "name": f"{rnd.name[:120]}: re-scored at {rated} ratings",
    }
    try:
        job = reward_model_train_start(
            created_by=rnd.created_by,
            rounds=None,
            params=params,
            chain={
                "id": uuid.uuid4().hex,
                "step": JobKind.TRAIN_REWARD.value,
                "rescore_round_id": rnd.pk,
            },
        )
    except DomainError:
        return None  # too few ratings to train on yet: asked again next rating
    state.update(at=rated, job_id=job.pk, count=int(state.get("count", 0)) + 1)
    rnd.settings = {**rnd.settings, "rescore": state}
    rnd.save(update_fields=["settings", "updated_at"])
    audit_record(
        action="round_rescore_start",
        actor=rnd.created_by,
        obj=rnd,
        detail={"job": job.pk, "ratings": rated},
    )
    return job


@transaction.atomic
def round_score_start(
    *,
    round: Round,
    created_by: User | None,
    reward_model_version: ModelVersion | None = None,
    chain: dict[str, Any] | None = None,
) -> Job:
    """Queue scoring of every image of ``round`` with a reward model.

    The job writes an ``ImageScore`` per image and sets each item's
    ``uncertainty`` (the ensemble spread) that uncertainty serving orders by.
    Given a version, it becomes the round's reward model.
    """

    rnd = Round.objects.select_for_update().get(pk=round.pk)
    version = reward_model_version or rnd.reward_model_version
    if version is None:
        raise DomainError(
            "reward_model_version: this round has no reward model; choose one"
        )
    check_reward(version, "reward_model_version")
    if not rnd.items.exists():
        raise DomainError(f"round {rnd.name!r} has no images to score yet")
    job_params: dict[str, Any] = {"round_id": rnd.pk, "reward_version_id": version.pk}
    if chain is not None:
        job_params["chain"] = chain
    job = job_create(kind=JobKind.SCORE, created_by=created_by, params=job_params)
    rnd.reward_model_version = version
    rnd.settings = {**rnd.settings, "score_job_id": job.pk}
    rnd.save(update_fields=["reward_model_version", "settings", "updated_at"])
    audit_record(
        action="round_score_start",
        actor=created_by,
        obj=rnd,
        detail={"job": job.pk, "reward_model_version": version.pk},
    )
    return job


SCORE_BATCH = 64


def round_score_run(job: Job, progress: Progress) -> dict[str, Any]:
    """Score a round's images with a reward model: an ``ImageScore`` each, and
    the ensemble spread as the item's ``uncertainty``.

    Images this version already scored are not scored again (a retried job
    picks up where it stopped); their stored spread is still copied.
    """
    from annotations.models import RoundImage

    from ..engine import RewardModel, load_pil
    from ..models import ImageScore

    rnd = Round.objects.get(pk=job.params["round_id"])
    version = ModelVersion.objects.get(pk=job.params["reward_version_id"])
    items = list(rnd.items.select_related("image").order_by("pk"))
    known = dict(
        ImageScore.objects.filter(
            model_version=version, image_id__in=[it.image_id for it in items]
        ).values_list("image_id", "spread")
    )
    todo = [it for it in items if it.image_id not in known]
    reporter = Reporter(progress)
    model = RewardModel.load(version.path) if todo else None
    for start in range(0, len(todo), SCORE_BATCH):
        chunk = todo[start : start + SCORE_BATCH]
        pictures = [load_pil(image_file_path(it.image)).convert("RGB") for it in chunk]
        predicted = model.predict(  # type: ignore[union-attr]
            pictures,
            [it.image.prompt for it in chunk],
            [it.image.modality for it in chunk],
        )
        with transaction.atomic():
            for k, it in enumerate(chunk):
                reward = min(max(float(predicted.reward[k]), 0.0), 1.0)
                spread = float(predicted.uncertainty[k])
                ImageScore.objects.update_or_create(
                    image=it.image,
                    model_version=version,
                    defaults={
                        "reward": reward,
                        "expected_score": 1.0 + 2.0 * reward,
                        "probs": [float(p) for p in predicted.probs[k]],
                        "spread": spread,
                    },
                )
                known[it.image_id] = spread
        done = start + len(chunk)
        reporter(done / len(todo), f"scored {done} of {len(todo)} images")
    for it in items:
        it.uncertainty = known[it.image_id]
    # Only this column is written, so counts changed by ratings meanwhile stay.
    RoundImage.objects.bulk_update(items, ["uncertainty"], batch_size=1000)
    spreads = [known[it.image_id] for it in items]
    return {
        "round_id": rnd.pk,
        "reward_version_id": version.pk,
        "scored": len(todo),
        "reused": len(items) - len(todo),
        "mean_uncertainty": sum(spreads) / len(spreads) if spreads else None,
        "max_uncertainty": max(spreads) if spreads else None,
    }
