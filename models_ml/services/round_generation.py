"""Rounds that generate: a version (or several arms of a comparison) draws
the round's images in a job, and the round opens when they are stored
(``round_generate_start`` in the web process, ``round_generate_run`` in the
worker)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from annotations.design import PLAIN, ServingDesign
from annotations.errors import DomainError
from annotations.models import (
    Image,
    ImageSource,
    Round,
    RoundStatus,
)
from annotations.services.generation import generated_image_create
from annotations.services.rounds import (
    controls_needed,
    round_create,
    round_generated_fill,
)
from annotations.users import User

from ..models import (
    Job,
    JobKind,
    ModelVersion,
)
from .jobs import job_create
from .params import (
    MAX_IMAGES_PER_JOB,
    SAMPLING_KEYS,
    check_diffusion,
    check_keys,
    check_reward,
    check_sampling,
    positive_int,
    prompt_list,
    seed_or_random,
)
from .round_scoring import round_score_start
from .worker import Progress, Reporter, device_for, generation_record, sampling_kwargs


@dataclass(frozen=True)
class Arm:
    """One generator of a round: a version, or a version filtered best-of-N
    by a reward model. Every arm draws the same prompts and seeds."""

    name: str
    model_version: ModelVersion
    best_of_n: int | None = None
    reward_version: ModelVersion | None = None

    def as_params(self) -> dict[str, Any]:
        return {
            "arm": self.name,
            "model_version_id": self.model_version.pk,
            "best_of_n": self.best_of_n,
            "reward_version_id": getattr(self.reward_version, "pk", None),
        }


def _round_arms(
    model_version: ModelVersion, compare_model_version: ModelVersion | None
) -> list[Arm]:
    arms = [Arm("main", model_version)]
    if compare_model_version is not None:
        arms.append(Arm("compare", compare_model_version))
    return arms


MAX_BEST_OF_N = 16


def _check_arms(arms: Sequence[Arm]) -> None:
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise DomainError("every arm of a round needs its own name")
    plain = [a.model_version.pk for a in arms if a.best_of_n is None]
    if len(set(plain)) != len(plain):
        raise DomainError("a round cannot compare a version with itself")
    for arm in arms:
        check_diffusion(arm.model_version, f"{arm.name} arm's model_version")
        if arm.best_of_n is not None:
            positive_int(arm.best_of_n, "best_of_n", maximum=MAX_BEST_OF_N)
            if arm.best_of_n < 2:
                raise DomainError("best_of_n must be at least 2")
            check_reward(arm.reward_version, "best_of_n's reward_version")


def _generation_checked(
    model_version: ModelVersion,
    compare_model_version: ModelVersion | None,
    arms: Sequence[Arm] | None,
    sampling: dict[str, Any] | None,
    prompts: Sequence[tuple[str, str]],
) -> tuple[list[Arm], dict[str, Any], list[list[str]]]:
    """The round's generators (``arms``, else the version and the one it is
    compared with), its sampling settings and its prompts, each checked."""
    check_diffusion(model_version, "model_version")
    if compare_model_version is not None:
        check_diffusion(compare_model_version, "compare_model_version")
        if compare_model_version.pk == model_version.pk:
            raise DomainError("a round cannot compare a version with itself")
    arms = list(arms) if arms else _round_arms(model_version, compare_model_version)
    _check_arms(arms)
    sampling = dict(sampling or {})
    check_keys(sampling, SAMPLING_KEYS, "sampling")
    check_sampling(sampling)
    return arms, sampling, prompt_list(prompts)


def _controls_available(
    *, n_images: int, control_pool: Iterable[Image], control_share: float
) -> list[int]:
    """Check that the round's size is within one job's and that its pool
    holds the real controls it will need; the pool's ids."""
    if n_images > MAX_IMAGES_PER_JOB:
        raise DomainError(
            f"{n_images} images asked for; one round generates at most "
            f"{MAX_IMAGES_PER_JOB}"
        )
    pool_ids = [
        im.pk
        for im in control_pool
        if im.source == ImageSource.REAL and not im.quarantined
    ]
    n_controls = controls_needed(n_images=n_images, control_share=control_share)
    if n_controls > len(pool_ids):
        raise DomainError(
            f"control_share {control_share:.0%} needs {n_controls} real control "
            f"images, but only {len(pool_ids)} are available"
        )
    return pool_ids


@transaction.atomic
def round_generate_start(
    *,
    model_version: ModelVersion,
    prompts: Sequence[tuple[str, str]],
    images_per_prompt: int,
    created_by: User | None,
    name: str,
    raters_per_image: int = 1,
    control_share: float = 0.0,
    control_pool: Iterable[Image] = (),
    compare_model_version: ModelVersion | None = None,
    open_when_done: bool = True,
    seed: int | None = None,
    sampling: dict[str, Any] | None = None,
    chain: dict[str, Any] | None = None,
    enqueue: bool = True,
    serving: ServingDesign = PLAIN,
    arms: Sequence[Arm] | None = None,
) -> Job:
    """Create a round in ``generating`` and queue the job that fills it.

    With ``compare_model_version`` both versions draw the same prompts and
    seeds, so the round compares them image for image, blinded; ``arms``
    names any number of generators the same way (a retraining run's
    comparison: new version, parent, control, parent best-of-N). The
    serving design is an ordinary round's (``round_create``); a reward model
    scores the images once the job has generated them
    (``round_generated_finish``). ``enqueue=False`` leaves the job for a
    caller that runs it in-process.
    """
    arms, sampling, pairs = _generation_checked(
        model_version, compare_model_version, arms, sampling, prompts
    )
    positive_int(images_per_prompt, "images_per_prompt")
    n_images = len(pairs) * images_per_prompt * len(arms)
    pool_ids = _controls_available(
        n_images=n_images, control_pool=control_pool, control_share=control_share
    )
    seed = seed_or_random(seed)
    rnd = round_create(
        generating=True,
        images=(),
        name=name,
        created_by=created_by,
        model_version=model_version,
        compare_model_version=compare_model_version,
        raters_per_image=raters_per_image,
        control_share=control_share,
        serving=serving,
        settings={
            "prompts": pairs,
            "images_per_prompt": images_per_prompt,
            "seed": seed,
            "sampling": sampling,
            "arms": [a.name for a in arms],
        },
    )
    params: dict[str, Any] = {
        "round_id": rnd.pk,
        "model_version_id": model_version.pk,
        "compare_model_version_id": getattr(compare_model_version, "pk", None),
        "arms": [a.as_params() for a in arms],
        "prompts": pairs,
        "images_per_prompt": images_per_prompt,
        "seed": seed,
        "sampling": sampling,
        "control_pool_ids": pool_ids,
        "open_when_done": open_when_done,
    }
    if chain is not None:
        params["chain"] = chain
    job = job_create(
        kind=JobKind.GENERATE_ROUND,
        created_by=created_by,
        params=params,
        enqueue=enqueue,
    )
    Round.objects.filter(pk=rnd.pk).update(settings={**rnd.settings, "job_id": job.pk})
    return job


@transaction.atomic
def round_generated_finish(
    *,
    round: Round,
    images: Sequence[Image],
    control_pool: Iterable[Image],
    actor: User | None,
    open_now: bool,
) -> Round:
    """Fill a generating round (``round_generated_fill``) and, when it has a
    reward model, queue the scoring of its images in the same transaction.

    Both or neither commit, so a job retried after this finds the round filled
    and queues no second scoring.  A round opened before its scores arrive
    serves its unscored items as certain: fewest raters first, then where
    physicians disagree, then in shuffled order.
    """
    locked = Round.objects.select_for_update().only("status").get(pk=round.pk)
    was_generating = locked.status == RoundStatus.GENERATING
    rnd = round_generated_fill(
        round=round,
        images=images,
        control_pool=control_pool,
        actor=actor,
        open_now=open_now,
    )
    if was_generating and rnd.reward_model_version_id is not None:
        round_score_start(round=rnd, created_by=actor)
        rnd.refresh_from_db()
    return rnd


def _job_arms(p: dict[str, Any]) -> list[dict[str, Any]]:
    """The round's generators; jobs queued before arms existed name one or
    two versions."""
    if p.get("arms"):
        return list(p["arms"])
    arms = [{"arm": "main", "model_version_id": p["model_version_id"]}]
    if p.get("compare_model_version_id"):
        arms.append(
            {"arm": "compare", "model_version_id": p["compare_model_version_id"]}
        )
    return arms


def _arm_images(
    arm: dict[str, Any],
    backend: Any,
    requests: list[Any],
    sampling: dict[str, Any],
    reward_models: dict[int, Any],
) -> list[tuple[Any, Any, dict[str, Any]]]:
    """(request, picture, extra provenance) per request for one arm: the
    version's own sample, or the best of N by the arm's reward model."""
    if not arm.get("best_of_n"):
        return [
            (r, g, {})
            for r, g in zip(
                requests, backend.generate(requests, **sampling), strict=True
            )
        ]
    from ..engine import filter_generate

    result = filter_generate(
        backend,
        reward_models[arm["reward_version_id"]],
        requests,
        mode="best_of_n",
        n=int(arm["best_of_n"]),
        **sampling,
    )
    out = []
    for kept in sorted(result.kept, key=lambda k: k.request_index):
        request = requests[kept.request_index]
        out.append(
            (
                request,
                kept,
                {
                    "best_of_n": int(arm["best_of_n"]),
                    "reward_version_id": arm["reward_version_id"],
                    "reward": kept.reward,
                },
            )
        )
    return out


def round_generate_run(job: Job, progress: Progress) -> dict[str, Any]:
    """Generate a round's images (every arm on the same prompts and seeds),
    open it, and queue their scoring when the round has a reward model."""
    p = job.params
    rnd = Round.objects.get(pk=p["round_id"])
    if rnd.status == RoundStatus.GENERATING:
        _round_images_generate(job, rnd, Reporter(progress, span=0.95))
        images = list(
            Image.objects.filter(generated_for_round=rnd, source=ImageSource.GENERATED)
        )
        pool = Image.objects.filter(pk__in=p.get("control_pool_ids") or [])
        rnd = round_generated_finish(
            round=rnd,
            images=images,
            control_pool=pool,
            actor=job.created_by,
            open_now=bool(p.get("open_when_done", True)),
        )
    items = rnd.items.all()
    return {
        "round_id": rnd.pk,
        "round_status": rnd.status,
        "generated": items.filter(is_control=False).count(),
        "controls": items.filter(is_control=True).count(),
        "score_job_id": rnd.settings.get("score_job_id"),
    }


def _round_images_generate(job: Job, rnd: Round, reporter: Reporter) -> None:
    """Draw and store every arm's images of the round that are not stored
    yet: a retried job keeps what an earlier attempt stored."""
    from ..engine import GenerationRequest, RewardModel, load_backend

    p = job.params
    arms = _job_arms(p)
    versions = {
        v.pk: v
        for v in ModelVersion.objects.filter(
            pk__in={a["model_version_id"] for a in arms}
        )
    }
    per_prompt = int(p["images_per_prompt"])
    requests = [
        GenerationRequest(
            prompt=text, modality=modality, seed=p["seed"] + i * per_prompt + k
        )
        for i, (text, modality) in enumerate(p["prompts"])
        for k in range(per_prompt)
    ]
    stored = {
        (g.get("arm"), g.get("request_seed", g.get("seed")))
        for g in Image.objects.filter(generated_for_round=rnd).values_list(
            "generation", flat=True
        )
    }
    sampling = sampling_kwargs(p.get("sampling") or {})
    device = device_for((p.get("sampling") or {}).get("device"))
    backends = {pk: load_backend(v.path, device=device) for pk, v in versions.items()}
    reward_models = {
        a["reward_version_id"]: RewardModel.load(
            ModelVersion.objects.get(pk=a["reward_version_id"]).path
        )
        for a in arms
        if a.get("best_of_n")
    }
    total = len(requests) * len(arms)
    made = 0
    chunk = sampling["batch_size"]
    for start in range(0, len(requests), chunk):
        # Arms alternate chunk by chunk, so a stopped job leaves them
        # equally far along.
        for arm in arms:
            version = versions[arm["model_version_id"]]
            todo = [
                r
                for r in requests[start : start + chunk]
                if (arm["arm"], r.seed) not in stored
            ]
            made_now = _arm_images(
                arm, backends[version.pk], todo, sampling, reward_models
            )
            for request, generated, extra in made_now:
                record = generation_record(generated, job=job)
                record.update(extra, arm=arm["arm"], request_seed=request.seed)
                generated_image_create(
                    picture=generated.image,
                    prompt=request.prompt,
                    modality=request.modality or "",
                    model_version=version,
                    generation=record,
                    round=rnd,
                )
            made += len(requests[start : start + chunk])
            reporter(made / total, f"{made} of {total} images generated")
