"""Fine-tuning a diffusion version from the physicians' judgements with an
objective, or as the compute-matched control (``finetune_start`` in the web
process, ``finetune_run`` in the worker); which generated images it looks
at is fixed when a retraining run queues it (``finetune_pool_fix``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.db import transaction

from annotations.errors import DomainError
from annotations.models import (
    Image,
    Rating,
)
from annotations.users import User

from ..engine import EngineError
from ..models import (
    Job,
    JobKind,
    ModelKind,
    ModelVersion,
)
from ..samples import version_samples_make
from ..selectors import (
    generated_images_for_finetune,
    model_version_dataset,
    rating_summary,
    real_images_for_training,
)
from .jobs import job_create, job_dir
from .params import (
    DEFAULT_OBJECTIVE,
    FINETUNE_KEYS,
    check_diffusion,
    check_keys,
    check_reward,
    number_in_range,
    positive_int,
)
from .worker import (
    DEFAULT_FINETUNE_LR,
    DEFAULT_FINETUNE_STEPS,
    DEFAULT_MAX_DRIFT,
    PLATFORM_ONLY_FINETUNE_KEYS,
    Progress,
    Reporter,
    checkpoint_step,
    device_for,
    real_csv_write,
    train_config_kwargs,
    train_metrics,
    train_with_reporter,
    version_result,
)


def finetune_recipe(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with the objective's recipe under it: what was given wins,
    and the objective is named, so the job and the version record every
    setting the fine-tune used."""
    from models_ml.engine import recipe_for

    objective = finetune_objective(params)
    return {**recipe_for(objective), **params, "objective": objective}


def finetune_objective(params: dict[str, Any]) -> str:
    """The objective a fine-tune's parameters ask for (see DEFAULT_OBJECTIVE)."""
    if params.get("objective"):
        return str(params["objective"])
    if params.get("filter_threshold") is not None:
        return "filtered"
    return DEFAULT_OBJECTIVE


def check_finetune_params(params: dict[str, Any]) -> None:
    from ..engine import KTO_MIDDLE_MODES, OBJECTIVES

    check_keys(params, FINETUNE_KEYS, "finetune")
    for key in ("max_steps", "max_samples"):
        if key in params:
            positive_int(params[key], key, maximum=1_000_000)
    objective = params.get("objective", DEFAULT_OBJECTIVE)
    if objective not in OBJECTIVES:
        raise DomainError(
            f"objective {objective!r} is not one of {', '.join(OBJECTIVES)}"
        )
    beta = params.get("beta", 1.0)
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or beta < 0:
        raise DomainError("beta must be a number >= 0")
    number_in_range(params, "beta", 0, 1000)
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
    number_in_range(params, "kto_beta", 0, 1e7, low_open=True)
    number_in_range(params, "dpo_beta", 0, 1e7, low_open=True)
    number_in_range(params, "kto_desirable_weight", 0, 100, low_open=True)
    number_in_range(params, "kto_undesirable_weight", 0, 100, low_open=True)
    number_in_range(params, "kto_middle_weight", -1, 1)
    number_in_range(params, "kto_unrated_weight", 0, 1)
    number_in_range(params, "learning_rate", 0, 1, low_open=True)
    number_in_range(params, "max_drift", 1, 1000, low_open=True)
    number_in_range(params, "min_diversity_fraction", 0, 1)


@transaction.atomic
def finetune_start(
    *,
    diffusion_version: ModelVersion,
    reward_version: ModelVersion | None,
    created_by: User | None,
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
    check_diffusion(diffusion_version, "diffusion_version")
    check_finetune_params(params)
    objective = finetune_objective(params)
    if reward_version is None and objective not in ("dpo", "none"):
        raise DomainError(f"objective {objective!r} needs a reward_version")
    if reward_version is not None:
        check_reward(reward_version)
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


def finetune_run(job: Job, progress: Progress) -> dict[str, Any]:
    """Fine-tune a diffusion version from feedback on its generated images
    (or, as the control, from the same images without it), real images
    regularising; the objective is ``params["finetune"]["objective"]``."""
    done = ModelVersion.objects.filter(job=job).first()
    if done is not None:
        return _finetune_result(job, done)
    parent = ModelVersion.objects.get(pk=job.params["diffusion_version_id"])
    params = dict(job.params.get("finetune") or {})
    objective = finetune_objective(params)
    # DPO and the control never look at the reward model, though a
    # retraining run hands its new one to every fine-tune.
    reward_id = job.params.get("reward_version_id")
    if objective in ("dpo", "none"):
        reward_id = None
    reward_version = ModelVersion.objects.get(pk=reward_id) if reward_id else None
    out = job_dir(job=job)
    out.mkdir(parents=True, exist_ok=True)
    summary = _finetune_inputs(
        job, parent, params, objective, reward_version, Reporter(progress, span=0.1)
    )
    config = _finetune_config(parent, params, objective, summary, out)
    resumed_from = checkpoint_step(out)
    result = train_with_reporter(
        config, Reporter(progress, start=0.1, span=0.9, hold_cancel=True)
    )
    version = _finetune_version(
        job,
        parent,
        params,
        objective,
        reward_version,
        summary,
        config,
        result,
        resumed_from,
    )
    version_samples_make(version, device=device_for(params.get("device")))
    return _finetune_result(job, version)


def _finetune_inputs(
    job: Job,
    parent: ModelVersion,
    params: dict[str, Any],
    objective: str,
    reward_version: ModelVersion | None,
    reporter: Reporter,
) -> dict[str, Any]:
    """The rows the fine-tune trains on and the real images beside them,
    written once to the job's folder, so a resumed run trains on the same
    rows; their summary."""
    from ..feedback import finetune_rows, write_rows

    out = job_dir(job=job)
    summary_json = out / "inputs_summary.json"
    if not summary_json.exists():
        images = finetune_pool(job, parent, params)
        if not images:
            raise EngineError(
                f"{parent.name}: no generated images of this version or its "
                "ancestors to fine-tune on; open a round first"
            )
        rows, summary, image_ids = finetune_rows(
            objective=objective,
            images=images,
            reward_version=reward_version,
            params=params,
            progress=reporter,
        )
        summary["data_csv"] = str(write_rows(rows, out))
        summary["data_kind"] = rows.kind
        dataset = model_version_dataset(model_version=parent)
        if dataset is not None:
            real_csv_write(
                out / "real.csv", real_images_for_training(dataset_ids=[dataset.pk])
            )
        summary["image_ids"] = image_ids
        summary["pool_image_ids"] = [im.pk for im in images]
        summary_json.write_text(json.dumps(summary))
    return dict(json.loads(summary_json.read_text()))


def _finetune_config(
    parent: ModelVersion,
    params: dict[str, Any],
    objective: str,
    summary: dict[str, Any],
    out: Path,
) -> Any:
    """The engine's ``TrainConfig``: the job's parameters over the platform's
    defaults, from the parent's weights, resuming from the last checkpoint."""
    from ..engine import TrainConfig

    kwargs = train_config_kwargs(params, DEFAULT_FINETUNE_STEPS)
    for key in PLATFORM_ONLY_FINETUNE_KEYS:
        kwargs.pop(key, None)
    kwargs.setdefault("learning_rate", DEFAULT_FINETUNE_LR)
    kwargs.setdefault("weighting", "sample")
    kwargs.setdefault("max_drift", DEFAULT_MAX_DRIFT)
    kwargs.setdefault("drift_check_steps", max(1, int(kwargs["max_steps"]) // 4))
    kwargs.update(backend=parent.backend, model_path=parent.path, objective=objective)
    if objective == "filtered":
        # The rows are the kept images already, each with weight 1.
        kwargs["filter_threshold"] = 1.0
    data_kind = summary["data_kind"]
    real_csv = out / "real.csv"
    return TrainConfig(
        weights_csv=summary["data_csv"] if data_kind == "weights" else None,
        pairs_csv=summary["data_csv"] if data_kind == "pairs" else None,
        real_csv=str(real_csv) if real_csv.exists() else None,
        output_dir=str(out),
        resume="latest",
        **kwargs,
    )


def _finetune_version(
    job: Job,
    parent: ModelVersion,
    params: dict[str, Any],
    objective: str,
    reward_version: ModelVersion | None,
    summary: dict[str, Any],
    config: Any,
    result: Any,
    resumed_from: int,
) -> ModelVersion:
    """Record the trained model as a version of ``parent``, with the ratings
    and rounds behind it and its training metrics."""
    is_control = bool(job.params.get("control"))
    used = Rating.objects.filter(
        image_id__in=[] if is_control else summary["image_ids"],
        retracted_at=None,
        is_repeat=False,
    )
    rating_info = rating_summary(ratings=used)
    metrics = train_metrics(result, resumed_from)
    metrics.update(
        {
            k: v
            for k, v in summary.items()
            if k not in ("image_ids", "pool_image_ids", "data_csv")
        }
    )
    metrics["objective"] = result.objective
    metrics["drift_baseline"] = result.drift_baseline
    name = params.get("name") or f"{parent.name} + {objective} #{job.pk}"
    if is_control:
        name = f"{parent.name}: control #{job.pk}"
    with transaction.atomic():
        version = ModelVersion.objects.create(
            name=name,
            kind=ModelKind.DIFFUSION,
            backend=parent.backend,
            parent=parent,
            dataset=model_version_dataset(model_version=parent),
            rating_count=rating_info["count"],
            ratings_until=rating_info["until"],
            path=str(result.final_dir),
            params={
                **params,
                "objective": objective,
                "weighting": config.weighting,
                "max_drift": config.max_drift,
                "reward_version_id": getattr(reward_version, "pk", None),
                "reward_version": getattr(reward_version, "name", None),
            },
            metrics=metrics,
            job=job,
            is_control=is_control,
        )
        rounds = set(rating_info["round_ids"])
        if reward_version is not None and objective not in ("dpo", "none"):
            rounds |= set(reward_version.trained_on_rounds.values_list("pk", flat=True))
        version.trained_on_rounds.set(sorted(rounds))
    return version


def _finetune_result(job: Job, version: ModelVersion) -> dict[str, Any]:
    from .chains import chain_next_after_finetune  # chains starts fine-tunes

    next_job = chain_next_after_finetune(job=job, new_version=version)
    return version_result(version, next_job_id=getattr(next_job, "pk", None))


# The generated images a fine-tune looks at, at most (the newest first).
DEFAULT_MAX_SAMPLES = 5000
POOL_FILE = "pool.json"


def finetune_pool_fix(
    *, job: Job, parent: ModelVersion, params: dict[str, Any]
) -> list[int]:
    """Fix the generated images a queued fine-tune of a retraining run will
    look at (the newest of the parent's lineage) in its job folder, so that a
    control queued beside it trains on exactly the same ones whenever either
    starts. The file names the run: one left by a queueing that rolled back
    is not taken for another job's that reuses the id."""
    ids = [
        image.pk
        for image in generated_images_for_finetune(
            diffusion_version=parent,
            limit=int(params.get("max_samples", DEFAULT_MAX_SAMPLES)),
        )
    ]
    folder = job_dir(job=job)
    folder.mkdir(parents=True, exist_ok=True)
    chain_id = (job.params.get("chain") or {}).get("id")
    (folder / POOL_FILE).write_text(json.dumps({"chain": chain_id, "image_ids": ids}))
    return ids


def finetune_pool(
    job: Job, parent: ModelVersion, params: dict[str, Any]
) -> list[Image]:
    """The generated images a fine-tune looks at: those fixed when it was
    queued (a retraining run's, ``finetune_pool_fix``), those of the fine-tune
    a control is the control of, else the newest of the parent's lineage."""
    source = job.params.get("pool_from_job")
    folder = job_dir(job=Job(pk=source)) if source is not None else job_dir(job=job)
    fixed = folder / POOL_FILE
    chain_id = (job.params.get("chain") or {}).get("id")
    pool = json.loads(fixed.read_text()) if fixed.exists() else {}
    if chain_id is not None and pool.get("chain") == chain_id:
        ids = pool["image_ids"]
    elif source is not None:
        # A control queued after its fine-tune had started (before the pool
        # was fixed at queueing): the images that fine-tune looked at.
        summary = folder / "inputs_summary.json"
        ids = json.loads(summary.read_text())["pool_image_ids"]
    else:
        return generated_images_for_finetune(
            diffusion_version=parent,
            limit=int(params.get("max_samples", DEFAULT_MAX_SAMPLES)),
        )
    found = Image.objects.in_bulk(ids)
    return [found[pk] for pk in ids if pk in found]
