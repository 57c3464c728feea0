"""Starting ML jobs: base training, rounds that generate, reward model,
fine-tuning, filtered generation, and the retraining chain.

These run in the web process, so nothing here imports torch: they validate,
write rows, and queue a job once the transaction commits.  The job bodies live
in ``services_runs``.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from annotations.errors import DomainError
from annotations.models import (
    Dataset,
    Image,
    ImageSource,
    Round,
    RoundStatus,
    ServingPolicy,
)
from annotations.services.generation import (
    round_generated_fill,
    round_generating_create,
)
from annotations.services.rounds import controls_needed
from models_ml.engine.readers import InvalidModalityError, normalize_modality

from .models import (
    FINISHED_STATUSES,
    Job,
    JobKind,
    ModelKind,
    ModelVersion,
)
from .rater_weighting import RATER_WEIGHTINGS
from .selectors import real_images_for_training
from .services import job_create

TRAIN_KEYS = frozenset(
    {
        "name",
        "backend",
        "model_path",
        "resolution",
        "channels",
        "batch_size",
        "learning_rate",
        "max_steps",
        "grad_accum",
        "lr_scheduler",
        "lr_warmup_steps",
        "max_grad_norm",
        "weight_decay",
        "seed",
        "checkpointing_steps",
        "checkpoints_total_limit",
        "mixed_precision",
        "use_lora",
        "lora_rank",
        "use_ema",
        "ema_decay",
        "snr_gamma",
        "gradient_checkpointing",
        "cond_dropout",
        "device",
    }
)
FINETUNE_KEYS = TRAIN_KEYS | {
    "objective",
    "beta",
    "filter_threshold",
    "weighting",
    "kto_beta",
    "kto_desirable_weight",
    "kto_undesirable_weight",
    "kto_middle",
    "kto_middle_weight",
    "kto_unrated_weight",
    "dpo_beta",
    "max_drift",
    "min_diversity_fraction",
    "drift_check_steps",
    "drift_samples",
    "max_samples",
}
# What a fine-tune optimises when its parameters name no objective. The rule
# fixed before the reported runs of the simulated-physician experiment
# (docs/retraining.md): the objective that beats its compute-matched control
# at every reported seed, or, if none does, filtered with best-of-N. In the
# first cycle none did (seeds 0-2: filtered was the default); in the second,
# DPO at 600 steps did at seeds 10-12 (+7.8, +5.0, +4.9 points), so: dpo;
# the fourth kept it at half the steps (engine/recipes.py).
# The comparison round still rates the parent best-of-N beside it
# (DEFAULT_BEST_OF_N).
DEFAULT_OBJECTIVE = "dpo"
DEFAULT_BEST_OF_N = 4
# Objectives a retraining run's new version may use; "none" is its control.
FEEDBACK_OBJECTIVES = ("weighted", "filtered", "kto", "dpo")


def finetune_recipe(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with the objective's recipe under it: what was given wins,
    and the objective is named, so the job and the version record every
    setting the fine-tune used."""
    from models_ml.engine import recipe_for

    objective = finetune_objective(params)
    return {**recipe_for(objective), **params, "objective": objective}


REWARD_KEYS = frozenset(
    {
        "name",
        "features",
        "ensemble_size",
        "epochs",
        "lr",
        "weight_decay",
        "hidden",
        "rank",
        "negatives_per_image",
        "negative_weight",
        "n_folds",
        "seed",
        "modality_buckets",
        "target_precision",
        "max_real_images",
        "rater_weighting",
    }
)
SAMPLING_KEYS = frozenset({"steps", "guidance", "scheduler", "batch_size", "device"})
SERVING_KEYS = frozenset(
    {"agreement_share", "repeat_share", "serving_policy", "rescore_every"}
)
ROUND_KEYS = (
    SAMPLING_KEYS
    | SERVING_KEYS
    | {
        "name",
        "prompts",
        "images_per_prompt",
        "raters_per_image",
        "control_share",
        "seed",
        "best_of_n",
        "alpha",
    }
)
SCHEDULERS = ("ddim", "dpm", "euler", "ddpm")
MAX_GUIDANCE = 30.0
MAX_SAMPLING_BATCH = 256
MAX_IMAGES_PER_JOB = 20000
FILTER_MODES = ("best_of_n", "threshold")
# "none": sampled unfiltered, every image kept (also without a reward model).
GENERATE_MODES = (*FILTER_MODES, "none")


def job_dir(*, job: Job) -> Path:
    """Where a job keeps its checkpoints and outputs: MODELS_DIR/<job id>."""
    return Path(settings.MODELS_DIR) / str(job.pk)


def _check_keys(params: dict[str, Any], allowed: frozenset[str], what: str) -> None:
    if not isinstance(params, dict):
        raise DomainError(f"{what} params must be a mapping")
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise DomainError(
            f"{what}: unknown parameter(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def _positive_int(value: Any, name: str, *, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DomainError(f"{name} must be a whole number of at least 1")
    if maximum is not None and value > maximum:
        raise DomainError(f"{name} must be at most {maximum}")
    return value


def _check_sampling(params: dict[str, Any]) -> None:
    if "steps" in params:
        _positive_int(params["steps"], "steps", maximum=1000)
    if "batch_size" in params:
        _positive_int(params["batch_size"], "batch_size", maximum=MAX_SAMPLING_BATCH)
    if "scheduler" in params and params["scheduler"] not in SCHEDULERS:
        raise DomainError(f"scheduler must be one of {', '.join(SCHEDULERS)}")
    if "guidance" in params:
        _number(params, "guidance", 0, MAX_GUIDANCE)
    if "device" in params and params["device"] not in ("cpu", "cuda"):
        raise DomainError("device must be cpu or cuda")


def _check_generate_work(
    count: int, mode: str, n: int, max_attempts: int, sampling: dict[str, Any]
) -> None:
    """At most ``settings.GENERATE_MAX_UNET_PASSES`` per request: images x
    tries (best of n, or threshold mode's attempts at worst) x steps."""
    from models_ml.engine import DEFAULT_STEPS

    tries = {"best_of_n": n, "threshold": max_attempts}.get(mode, 1)
    steps = int(sampling.get("steps", DEFAULT_STEPS))
    work = count * tries * steps
    limit = settings.GENERATE_MAX_UNET_PASSES
    if work > limit:
        raise DomainError(
            f"{count} images x {tries} tries x {steps} steps is {work:,} UNet "
            f"passes, more than the {limit:,} one request may ask for: ask for "
            "fewer images, tries or steps"
        )


def _check_diffusion(version: Any, name: str) -> ModelVersion:
    if not isinstance(version, ModelVersion) or version.kind != ModelKind.DIFFUSION:
        raise DomainError(f"{name} must be a diffusion model version")
    return version


def _check_reward(version: Any, name: str = "reward_version") -> ModelVersion:
    if not isinstance(version, ModelVersion) or version.kind != ModelKind.REWARD:
        raise DomainError(f"{name} must be a reward model version")
    return version


def _modality(raw: str, where: str) -> str:
    try:
        return normalize_modality(raw)
    except InvalidModalityError as exc:
        raise DomainError(f"{where}: {exc}") from exc


def _prompt_list(prompts: Sequence[Any]) -> list[list[str]]:
    if not prompts:
        raise DomainError("give at least one prompt")
    out = []
    for number, item in enumerate(prompts, start=1):
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise DomainError(f"prompt {number}: give (prompt, modality)")
        text, modality = item
        if not isinstance(text, str) or not text.strip():
            raise DomainError(f"prompt {number}: the text is empty")
        out.append([text.strip(), _modality(str(modality), f"prompt {number}")])
    return out


def _seed(seed: int | None) -> int:
    if seed is None:
        return secrets.randbelow(2**31)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DomainError("seed must be a whole number >= 0")
    return seed


# --- base training -------------------------------------------------------------


@transaction.atomic
def model_version_train_base_start(
    *, dataset: Dataset, created_by: Any, params: dict[str, Any]
) -> Job:
    """Queue training of a base diffusion model on ``dataset``'s real images."""
    _check_keys(params, TRAIN_KEYS, "train_base")
    if not real_images_for_training(dataset_ids=[dataset.pk]).exists():
        raise DomainError(f"dataset {dataset.name!r} has no usable real images")
    if params.get("backend", "tiny") == "sd" and not params.get("model_path"):
        raise DomainError("backend 'sd' needs model_path (a local SD folder)")
    if "max_steps" in params:
        _positive_int(params["max_steps"], "max_steps")
    return job_create(
        kind=JobKind.TRAIN_BASE,
        created_by=created_by,
        params={"dataset_id": dataset.pk, "train": dict(params)},
    )


_MODEL_FILES = {
    ModelKind.DIFFUSION: ("medrlhf_model.json", "model_index.json"),
    ModelKind.REWARD: ("reward_model.json",),
}


@transaction.atomic
def model_version_register(
    *,
    name: str,
    kind: str,
    path: Path | str,
    created_by: Any,
    dataset: Dataset | None = None,
    parent: ModelVersion | None = None,
    params: dict[str, Any] | None = None,
) -> ModelVersion:
    """Adopt a model folder already on disk (a kept demo checkpoint, a local
    Stable Diffusion folder) as a version, without training it."""
    from annotations.audit import audit_record

    if kind not in _MODEL_FILES:
        raise DomainError(f"kind must be one of {', '.join(_MODEL_FILES)}")
    folder = Path(path).resolve()
    if not any((folder / f).is_file() for f in _MODEL_FILES[kind]):
        raise DomainError(
            f"{folder}: not a {kind} model folder (needs "
            f"{' or '.join(_MODEL_FILES[kind])})"
        )
    if not name.strip():
        raise DomainError("the version needs a name")
    backend = "reward" if kind == ModelKind.REWARD else "sd"
    described = folder / "medrlhf_model.json"
    if kind == ModelKind.DIFFUSION and described.is_file():
        try:
            backend = str(json.loads(described.read_text())["backend"])
        except (ValueError, KeyError) as exc:
            raise DomainError(f"{described}: no readable 'backend' field") from exc
    version = ModelVersion.objects.create(
        name=name.strip(),
        kind=kind,
        backend=backend,
        parent=parent,
        dataset=dataset,
        path=str(folder),
        params={**(params or {}), "registered": True},
    )
    audit_record(action="model_version_register", actor=created_by, obj=version)
    if version.kind == ModelKind.DIFFUSION:
        # Its sample grid (``samples``) is drawn by the ML worker: a Stable
        # Diffusion folder takes minutes on a CPU, too long for a request.
        version_id = version.pk
        transaction.on_commit(lambda: _version_samples_enqueue(version_id))
    return version


def _version_samples_enqueue(version_id: int) -> None:
    """Queued by name on the ML queue, as jobs are (services.job_create)."""
    from medrlhf.celery import app

    app.send_task("models_ml.tasks.ml_version_samples", args=[version_id], queue="ml")


# --- rounds that generate ------------------------------------------------------


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
        _check_diffusion(arm.model_version, f"{arm.name} arm's model_version")
        if arm.best_of_n is not None:
            _positive_int(arm.best_of_n, "best_of_n", maximum=MAX_BEST_OF_N)
            if arm.best_of_n < 2:
                raise DomainError("best_of_n must be at least 2")
            _check_reward(arm.reward_version, "best_of_n's reward_version")


@transaction.atomic
def round_generate_start(
    *,
    model_version: ModelVersion,
    prompts: Sequence[tuple[str, str]],
    images_per_prompt: int,
    created_by: Any,
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
    agreement_share: float = 0.0,
    repeat_share: float = 0.0,
    serving_policy: str = ServingPolicy.RANDOM,
    reward_model_version: ModelVersion | None = None,
    rescore_every: int | None = None,
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
    _check_diffusion(model_version, "model_version")
    if compare_model_version is not None:
        _check_diffusion(compare_model_version, "compare_model_version")
        if compare_model_version.pk == model_version.pk:
            raise DomainError("a round cannot compare a version with itself")
    arms = list(arms) if arms else _round_arms(model_version, compare_model_version)
    _check_arms(arms)
    sampling = dict(sampling or {})
    _check_keys(sampling, SAMPLING_KEYS, "sampling")
    _check_sampling(sampling)
    pairs = _prompt_list(prompts)
    _positive_int(images_per_prompt, "images_per_prompt")
    n_images = len(pairs) * images_per_prompt * len(arms)
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
    seed = _seed(seed)
    rnd = round_generating_create(
        name=name,
        created_by=created_by,
        model_version=model_version,
        compare_model_version=compare_model_version,
        raters_per_image=raters_per_image,
        control_share=control_share,
        agreement_share=agreement_share,
        repeat_share=repeat_share,
        serving_policy=serving_policy,
        reward_model_version=reward_model_version,
        rescore_every=rescore_every,
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
    actor: Any,
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


# --- reward model --------------------------------------------------------------


def _check_reward_params(params: dict[str, Any]) -> None:
    _check_keys(params, REWARD_KEYS, "train_reward")
    for key in ("ensemble_size", "epochs", "n_folds", "max_real_images"):
        if key in params:
            _positive_int(params[key], key)
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
    created_by: Any,
    rounds: Iterable[Round] | None = None,
    params: dict[str, Any],
    chain: dict[str, Any] | None = None,
) -> Job:
    """Queue training of the reward model on every live rating so far (or of
    ``rounds``); the ratings are fixed when the job starts."""
    from annotations.models import Rating

    _check_reward_params(params)
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


# --- reward-weighted fine-tuning ---------------------------------------------


def _number(
    params: dict[str, Any], key: str, low: float, high: float, *, low_open: bool = False
) -> None:
    if key not in params:
        return
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DomainError(f"{key} must be a number")
    if not (low < value if low_open else low <= value) or value > high:
        bracket = "(" if low_open else "["
        raise DomainError(f"{key} must be in {bracket}{low:g}, {high:g}]")


def finetune_objective(params: dict[str, Any]) -> str:
    """The objective a fine-tune's parameters ask for (see DEFAULT_OBJECTIVE)."""
    if params.get("objective"):
        return str(params["objective"])
    if params.get("filter_threshold") is not None:
        return "filtered"
    return DEFAULT_OBJECTIVE


def _check_finetune_params(params: dict[str, Any]) -> None:
    from .engine import KTO_MIDDLE_MODES, OBJECTIVES

    _check_keys(params, FINETUNE_KEYS, "finetune")
    for key in ("max_steps", "max_samples"):
        if key in params:
            _positive_int(params[key], key, maximum=1_000_000)
    objective = params.get("objective", DEFAULT_OBJECTIVE)
    if objective not in OBJECTIVES:
        raise DomainError(
            f"objective {objective!r} is not one of {', '.join(OBJECTIVES)}"
        )
    beta = params.get("beta", 1.0)
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or beta < 0:
        raise DomainError("beta must be a number >= 0")
    _number(params, "beta", 0, 1000)
    threshold = params.get("filter_threshold")
    if threshold is not None and (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not 0 < threshold <= 1
    ):
        raise DomainError(
            "filter_threshold must be a number in (0, 1]: the rating mapped to "
            "0-1, (mean - 1) / 2, or the reward; 1 keeps images rated 3"
        )
    if threshold is not None and objective not in ("weighted", "filtered"):
        raise DomainError(
            f"filter_threshold belongs to the filtered objective, not {objective!r}"
        )
    if params.get("weighting", "sample") not in ("sample", "loss"):
        raise DomainError(
            "weighting must be 'sample' (batches drawn in proportion to the "
            "weights) or 'loss' (every image's loss scaled by its weight)"
        )
    if params.get("kto_middle", "neutral") not in KTO_MIDDLE_MODES:
        raise DomainError(
            f"kto_middle must be one of {', '.join(KTO_MIDDLE_MODES)}: what an "
            "image rated 2 is to KTO"
        )
    _number(params, "kto_beta", 0, 1e7, low_open=True)
    _number(params, "dpo_beta", 0, 1e7, low_open=True)
    _number(params, "kto_desirable_weight", 0, 100, low_open=True)
    _number(params, "kto_undesirable_weight", 0, 100, low_open=True)
    _number(params, "kto_middle_weight", -1, 1)
    _number(params, "kto_unrated_weight", 0, 1)
    _number(params, "learning_rate", 0, 1, low_open=True)
    _number(params, "max_drift", 1, 1000, low_open=True)
    _number(params, "min_diversity_fraction", 0, 1)


@transaction.atomic
def finetune_start(
    *,
    diffusion_version: ModelVersion,
    reward_version: ModelVersion | None,
    created_by: Any,
    params: dict[str, Any],
    chain: dict[str, Any] | None = None,
    control: bool = False,
    pool_from_job: Job | None = None,
) -> Job:
    """Queue a fine-tune of ``diffusion_version`` from feedback on its images.

    ``params["objective"]`` says how (``weighted``, ``filtered``, ``kto``,
    ``dpo``, or ``none``: the same images without feedback). The reward
    model scores images nobody rated; DPO and ``none`` need none.
    ``control`` makes the version a control (``is_control``), never promoted;
    ``pool_from_job`` trains on exactly the images that fine-tune looked at.
    """
    _check_diffusion(diffusion_version, "diffusion_version")
    _check_finetune_params(params)
    objective = finetune_objective(params)
    if reward_version is None and objective not in ("dpo", "none"):
        raise DomainError(f"objective {objective!r} needs a reward_version")
    if reward_version is not None:
        _check_reward(reward_version)
    job_params: dict[str, Any] = {
        "diffusion_version_id": diffusion_version.pk,
        "reward_version_id": getattr(reward_version, "pk", None),
        "finetune": finetune_recipe(params),
    }
    if control:
        job_params["control"] = True
    if pool_from_job is not None:
        job_params["pool_from_job"] = pool_from_job.pk
    if chain is not None:
        job_params["chain"] = chain
    return job_create(kind=JobKind.FINETUNE, created_by=created_by, params=job_params)


# --- filtered generation ---------------------------------------------------------


@transaction.atomic
def generate_start(
    *,
    model_version: ModelVersion,
    reward_version: ModelVersion | None,
    prompt: str,
    modality: str,
    count: int,
    mode: str = "best_of_n",
    n: int = 4,
    threshold: float | None = None,
    created_by: Any,
    max_attempts: int = 8,
    seed: int | None = None,
    sampling: dict[str, Any] | None = None,
    enqueue: bool = True,
) -> Job:
    """Queue reward-filtered generation; kept and rejected images are stored.

    Threshold mode without a threshold uses the one calibrated on the reward
    model's held-out ratings. Without a reward model the images are sampled
    unfiltered (mode ``none``: every one kept, none scored).
    ``enqueue=False`` creates the job for a caller that runs it in-process
    (``manage.py generate``).
    """
    _check_diffusion(model_version, "model_version")
    if reward_version is not None:
        _check_reward(reward_version)
    if not prompt or not prompt.strip():
        raise DomainError("the prompt is empty")
    modality = _modality(modality, "modality")
    _positive_int(count, "count", maximum=256)
    _positive_int(n, "n", maximum=64)
    _positive_int(max_attempts, "max_attempts", maximum=64)
    if mode not in GENERATE_MODES:
        raise DomainError(f"mode must be one of {', '.join(GENERATE_MODES)}")
    if reward_version is None or mode == "none":
        mode, n, threshold, reward_version = "none", 1, None, None
    if threshold is None and mode == "threshold":
        assert reward_version is not None
        threshold = reward_version.metrics.get("threshold")
        if threshold is None:
            raise DomainError(
                "threshold mode needs a threshold: this reward model has no "
                "calibrated one; give it explicitly"
            )
    if threshold is not None and not 0 <= float(threshold) <= 1:
        raise DomainError("threshold must be between 0 and 1")
    sampling = dict(sampling or {})
    _check_keys(sampling, SAMPLING_KEYS, "sampling")
    _check_sampling(sampling)
    _check_generate_work(count, mode, n, max_attempts, sampling)
    return job_create(
        kind=JobKind.GENERATE,
        enqueue=enqueue,
        created_by=created_by,
        params={
            "model_version_id": model_version.pk,
            "reward_version_id": getattr(reward_version, "pk", None),
            "prompt": prompt.strip(),
            "modality": modality,
            "count": count,
            "mode": mode,
            "n": n,
            "threshold": None if threshold is None else float(threshold),
            "max_attempts": max_attempts,
            "seed": _seed(seed),
            "sampling": sampling,
        },
    )


# --- scoring a round's images -----------------------------------------------------


# --- re-scoring a most-informative-first round as it is rated -----------------


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
    from annotations.audit import audit_record
    from annotations.models import Rating

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
    created_by: Any,
    reward_model_version: ModelVersion | None = None,
    chain: dict[str, Any] | None = None,
) -> Job:
    """Queue scoring of every image of ``round`` with a reward model.

    The job writes an ``ImageScore`` per image and sets each item's
    ``uncertainty`` (the ensemble spread) that uncertainty serving orders by.
    Given a version, it becomes the round's reward model.
    """
    from annotations.audit import audit_record

    rnd = Round.objects.select_for_update().get(pk=round.pk)
    version = reward_model_version or rnd.reward_model_version
    if version is None:
        raise DomainError(
            "reward_model_version: this round has no reward model; choose one"
        )
    _check_reward(version, "reward_model_version")
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
