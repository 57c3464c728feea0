"""What the ML jobs do once a worker has claimed them.

Each ``*_run(job, progress)`` is the body a Celery task hands to ``run_job``:
it reads its inputs from the database, calls the engine (imported here, inside
the functions, so the web process never loads torch), records the outcome as
rows and files, and returns the job's result.  Bodies are safe to run again
after a worker died: training resumes from its last checkpoint, generation
skips images already stored, and a version already recorded for the job is
returned instead of made twice.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from annotations.exports import export_rows
from annotations.models import Dataset, Image, ImageSource, Round, RoundStatus
from annotations.services.generation import generated_image_create

from .chains import (
    STEP_CONTROL,
    chain_next_after_finetune,
    chain_next_after_reward,
    chain_step_job,
)
from .engine import EngineError
from .finetune_pool import finetune_pool
from .ml_services import (
    finetune_objective,
    job_dir,
    round_generated_finish,
)
from .models import Job, ModelKind, ModelVersion
from .rater_weighting import RatedRow, rater_weighting
from .samples import version_samples_make
from .selectors import (
    model_version_dataset,
    rating_summary,
    ratings_for_reward,
    real_images_for_training,
)
from .services import JobCancelled

Progress = Callable[[float, str], None]

# Progress rows are written at most this often; each write is also the
# heartbeat and the cancel check.
PROGRESS_EVERY_S = 1.0
DEFAULT_BASE_STEPS = 1000
DEFAULT_FINETUNE_STEPS = 200
DEFAULT_FINETUNE_LR = 5e-5
# The drift guard is on for every fine-tune: it stops one whose samples get
# three times as far from the real images as its parent's were.
DEFAULT_MAX_DRIFT = 3.0
# Fine-tune parameters the platform reads itself; the rest go to TrainConfig.
PLATFORM_ONLY_FINETUNE_KEYS = (
    "filter_threshold",
    "kto_middle",
    "kto_middle_weight",
    "kto_unrated_weight",
    "objective",
)
DEFAULT_MAX_REAL_IMAGES = 500
MAX_LOSSES_KEPT = 500
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class _Reporter:
    """Throttled progress for one part (``start`` .. ``start + span``) of a job.

    With ``hold_cancel`` a cancel request is remembered instead of raised, so
    a training loop can stop at a step boundary and write its checkpoint.
    """

    def __init__(
        self,
        progress: Progress,
        *,
        start: float = 0.0,
        span: float = 1.0,
        hold_cancel: bool = False,
    ) -> None:
        self.progress = progress
        self.start = start
        self.span = span
        self.hold_cancel = hold_cancel
        self.cancelled = False
        self.last = 0.0

    def __call__(self, fraction: float, message: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        try:
            fraction = min(max(fraction, 0.0), 1.0)
            self.progress(self.start + self.span * fraction, message)
        except JobCancelled:
            if not self.hold_cancel:
                raise
            self.cancelled = True

    def should_stop(self) -> bool:
        return self.cancelled


def _device(preference: str | None) -> str:
    import torch

    return preference or ("cuda" if torch.cuda.is_available() else "cpu")


def _file_path(image: Image) -> str:
    return default_storage.path(image.file.name)


def _write_real_csv(path: Path, images: Iterable[Image]) -> int:
    """The import CSV format (path,Text,modality) with absolute paths."""
    count = 0
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "Text", "modality"])
        for image in images:
            writer.writerow([_file_path(image), image.prompt, image.modality])
            count += 1
    tmp.replace(path)
    return count


def _thin(values: Sequence[float], limit: int) -> list[float]:
    if len(values) <= limit:
        return [float(v) for v in values]
    stride = len(values) / limit
    return [float(values[int(i * stride)]) for i in range(limit)]


def _checkpoint_step(output_dir: Path) -> int:
    from .engine import latest_checkpoint

    latest = latest_checkpoint(output_dir)
    return int(latest.name.rsplit("-", 1)[1]) if latest else 0


def _train(config: Any, reporter: _Reporter) -> Any:
    """Run the engine's training loop; a cancel stops it after a checkpoint."""
    from .engine import TrainProgress, finetune

    def on_step(p: TrainProgress) -> None:
        reporter(
            p.step / p.max_steps,
            f"step {p.step} of {p.max_steps}, loss {p.loss:.4f}",
            force=p.step in (1, p.max_steps),
        )

    result = finetune(config, progress=on_step, should_stop=reporter.should_stop)
    if reporter.cancelled:
        raise JobCancelled(f"stopped at step {result.steps}; checkpoints kept")
    if result.final_dir is None:
        raise EngineError(f"training stopped without a model: {result.stopped_reason}")
    return result


def _train_metrics(result: Any, resumed_from: int) -> dict[str, Any]:
    losses = list(result.losses)
    tail = losses[-10:]
    return {
        "steps": result.steps,
        "final_loss": sum(tail) / len(tail) if tail else None,
        "losses": _thin(losses, MAX_LOSSES_KEPT),
        "samples_per_second": result.samples_per_second,
        "resumed_from_step": resumed_from,
        "drift": result.drift,
        "engine_version": result.version,
    }


def _version_result(version: ModelVersion, **extra: Any) -> dict[str, Any]:
    return {
        "model_version_id": version.pk,
        "model_version": version.name,
        "path": version.path,
        "steps": version.metrics.get("steps"),
        "resumed_from_step": version.metrics.get("resumed_from_step"),
        **extra,
    }


def _train_config_kwargs(params: dict[str, Any], default_steps: int) -> dict[str, Any]:
    kwargs = {k: v for k, v in params.items() if k not in ("name", "max_samples")}
    kwargs.setdefault("max_steps", default_steps)
    kwargs.setdefault("checkpointing_steps", max(1, int(kwargs["max_steps"]) // 10))
    if "channels" in kwargs:
        kwargs["channels"] = tuple(kwargs["channels"])
    return kwargs


# --- base training -------------------------------------------------------------


def train_base_run(job: Job, progress: Progress) -> dict[str, Any]:
    """Train a base diffusion model on a dataset's real images."""
    from .engine import TrainConfig

    done = ModelVersion.objects.filter(job=job).first()
    if done is not None:
        return _version_result(done)
    dataset = Dataset.objects.get(pk=job.params["dataset_id"])
    out = job_dir(job=job)
    out.mkdir(parents=True, exist_ok=True)
    data_csv = out / "data.csv"
    # Written once: a resumed run must draw its batches from the same rows.
    if not data_csv.exists():
        _write_real_csv(data_csv, real_images_for_training(dataset_ids=[dataset.pk]))
    params = dict(job.params.get("train") or {})
    config = TrainConfig(
        data_csv=str(data_csv),
        output_dir=str(out),
        resume="latest",
        **_train_config_kwargs(params, DEFAULT_BASE_STEPS),
    )
    resumed_from = _checkpoint_step(out)
    result = _train(config, _Reporter(progress, hold_cancel=True))
    # Trained from a folder that is a version already: that is its parent.
    parent = None
    if config.model_path:
        parent = ModelVersion.objects.filter(
            kind=ModelKind.DIFFUSION, path=str(Path(config.model_path).resolve())
        ).first()
    with transaction.atomic():
        version = ModelVersion.objects.create(
            name=params.get("name") or f"{dataset.name} base #{job.pk}",
            kind=ModelKind.DIFFUSION,
            backend=config.backend,
            parent=parent,
            dataset=dataset,
            path=str(result.final_dir),
            params=params,
            metrics=_train_metrics(result, resumed_from),
            job=job,
        )
    version_samples_make(version, device=_device(params.get("device")))
    return _version_result(version)


# --- rounds that generate ------------------------------------------------------


def _generation_record(generated: Any, *, job: Job) -> dict[str, Any]:
    """Provenance of an engine picture, a plain sample or a scored one."""
    provenance = getattr(generated, "provenance", None) or {}

    def field(name: str) -> Any:
        return getattr(generated, name, provenance.get(name))

    return {
        "seed": generated.seed,
        "steps": field("steps"),
        "guidance": field("guidance"),
        "scheduler": field("scheduler"),
        "prompt": generated.prompt,
        "modality": generated.modality,
        "engine_version": field("model_version"),
        "job_id": job.pk,
    }


def _sampling_kwargs(sampling: dict[str, Any]) -> dict[str, Any]:
    return {
        "steps": sampling.get("steps"),
        "guidance": sampling.get("guidance"),
        "scheduler": sampling.get("scheduler"),
        "batch_size": int(sampling.get("batch_size", 8)),
    }


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
    from .engine import filter_generate

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
    from .engine import GenerationRequest, RewardModel, load_backend

    p = job.params
    rnd = Round.objects.get(pk=p["round_id"])
    if rnd.status == RoundStatus.GENERATING:
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
        # A retried job keeps what an earlier attempt stored.
        stored = {
            (g.get("arm"), g.get("request_seed", g.get("seed")))
            for g in Image.objects.filter(generated_for_round=rnd).values_list(
                "generation", flat=True
            )
        }
        sampling = _sampling_kwargs(p.get("sampling") or {})
        device = _device((p.get("sampling") or {}).get("device"))
        backends = {
            pk: load_backend(v.path, device=device) for pk, v in versions.items()
        }
        reward_models = {
            a["reward_version_id"]: RewardModel.load(
                ModelVersion.objects.get(pk=a["reward_version_id"]).path
            )
            for a in arms
            if a.get("best_of_n")
        }
        reporter = _Reporter(progress, span=0.95)
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
                    record = _generation_record(generated, job=job)
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


# --- reward model --------------------------------------------------------------


def _unescape(text: str) -> str:
    """Undo the export's spreadsheet-formula guard on a prompt."""
    if len(text) > 1 and text[0] == "'" and text[1] in _FORMULA_PREFIXES:
        return text[1:]
    return text


def _rated_rows(ratings_csv: Path) -> list[RatedRow]:
    """The rater, item and level of every rating in the training CSV, in order.

    Read back from the file the engine trains on, so the weights line up with
    its rows whatever changed in the database meanwhile.
    """
    with ratings_csv.open(newline="", encoding="utf-8") as handle:
        return [
            RatedRow(
                rater=_unescape(row["rater"]),
                item=(row["round_id"], row["image_uid"]),
                score=int(row["rating"]),
                expert_level=_unescape(row["expert_level"]),
            )
            for row in csv.DictReader(handle)
        ]


def _evenly(items: Sequence[Any], limit: int) -> list[Any]:
    if len(items) <= limit:
        return list(items)
    stride = len(items) / limit
    return [items[int(i * stride)] for i in range(limit)]


def reward_model_train_run(job: Job, progress: Progress) -> dict[str, Any]:
    """Train the reward model on the ratings up to the job's first start."""
    import dataclasses

    from .engine import (
        RewardConfig,
        calibrate_threshold,
        read_ratings_csv,
        train_reward_model,
    )

    done = ModelVersion.objects.filter(job=job).first()
    if done is not None:
        return _reward_result(job, done)
    p = dict(job.params.get("reward") or {})
    until = job.started_at or timezone.now()
    ratings = ratings_for_reward(round_ids=job.params.get("round_ids"), until=until)
    summary = rating_summary(ratings=ratings)
    out = job_dir(job=job)
    out.mkdir(parents=True, exist_ok=True)
    ratings_csv = out / "ratings.csv"
    with ratings_csv.open("w", newline="", encoding="utf-8") as handle:
        for line in export_rows(ratings, absolute_paths=True):
            handle.write(line)
    rows = _rated_rows(ratings_csv)
    weighting = rater_weighting(rows=rows, scheme=p.get("rater_weighting", "none"))
    records = [
        dataclasses.replace(r, prompt=_unescape(r.prompt), weight=w)
        for r, w in zip(
            read_ratings_csv(ratings_csv), weighting.row_weights(rows), strict=True
        )
    ]
    (out / "rater_weights.json").write_text(json.dumps(weighting.as_params(), indent=2))
    real_images = _evenly(
        list(real_images_for_training(dataset_ids=summary["dataset_ids"])),
        int(p.get("max_real_images", DEFAULT_MAX_REAL_IMAGES)),
    )
    real = [(_file_path(im), im.prompt, im.modality) for im in real_images]
    fields = {f.name for f in dataclasses.fields(RewardConfig)}
    config = RewardConfig(**{k: v for k, v in p.items() if k in fields})
    reporter = _Reporter(progress)
    spans = {"features": (0.0, 0.4), "folds": (0.4, 0.55), "final": (0.95, 0.05)}

    def on_stage(stage: str, done: int, total: int) -> None:
        start, span = spans.get(stage, (0.0, 1.0))
        reporter(start + span * done / max(total, 1), f"{stage}: {done} of {total}")

    result = train_reward_model(
        records, config=config, real_images=real, progress=on_stage
    )
    metrics = {k: v for k, v in result.metrics.items()}
    if result.heldout is not None:
        calibration = calibrate_threshold(
            result.heldout.reward,
            result.heldout.ratings,
            float(p.get("target_precision", 0.8)),
        )
        metrics.update(
            threshold=calibration.threshold,
            threshold_precision=calibration.achieved_precision,
            threshold_recall=calibration.recall,
            threshold_note=calibration.message,
        )
        result.model.info["threshold"] = calibration.threshold
    model_dir = result.model.save(out / "reward")
    (model_dir / "metrics.json").write_text(
        json.dumps(
            {"heldout": metrics, "folds": result.fold_metrics}, indent=2, default=str
        )
    )
    metrics = json.loads(json.dumps(metrics, default=float))
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
            metrics=metrics,
            job=job,
        )
        version.trained_on_rounds.set(summary["round_ids"])
        return _reward_result(job, version)


def _reward_result(job: Job, version: ModelVersion) -> dict[str, Any]:
    next_job = chain_next_after_reward(job=job, reward_version=version)
    # A retraining run queues the fine-tune and its control together.
    following = [next_job] if next_job is not None else []
    if next_job is not None and next_job.params.get("chain"):
        control = chain_step_job(next_job.params["chain"], STEP_CONTROL)
        following += [control] if control is not None else []
    return _version_result(
        version,
        rating_count=version.rating_count,
        threshold=version.metrics.get("threshold"),
        next_job_id=getattr(next_job, "pk", None),
        next_job_ids=[j.pk for j in following],
    )


# --- reward-weighted fine-tuning ---------------------------------------------


def finetune_run(job: Job, progress: Progress) -> dict[str, Any]:
    """Fine-tune a diffusion version from feedback on its generated images
    (or, as the control, from the same images without it), real images
    regularising; the objective is ``params["finetune"]["objective"]``."""
    from annotations.models import Rating

    from .engine import TrainConfig
    from .feedback import finetune_rows, write_rows

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
    is_control = bool(job.params.get("control"))
    out = job_dir(job=job)
    out.mkdir(parents=True, exist_ok=True)
    real_csv = out / "real.csv"
    summary_json = out / "inputs_summary.json"
    dataset = model_version_dataset(model_version=parent)
    # Inputs are written once, so a resumed run trains on the same rows.
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
            progress=_Reporter(progress, span=0.1),
        )
        summary["data_csv"] = str(write_rows(rows, out))
        summary["data_kind"] = rows.kind
        if dataset is not None:
            _write_real_csv(
                real_csv, real_images_for_training(dataset_ids=[dataset.pk])
            )
        summary["image_ids"] = image_ids
        summary["pool_image_ids"] = [im.pk for im in images]
        summary_json.write_text(json.dumps(summary))
    summary = json.loads(summary_json.read_text())
    kwargs = _train_config_kwargs(params, DEFAULT_FINETUNE_STEPS)
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
    config = TrainConfig(
        weights_csv=summary["data_csv"] if data_kind == "weights" else None,
        pairs_csv=summary["data_csv"] if data_kind == "pairs" else None,
        real_csv=str(real_csv) if real_csv.exists() else None,
        output_dir=str(out),
        resume="latest",
        **kwargs,
    )
    resumed_from = _checkpoint_step(out)
    result = _train(config, _Reporter(progress, start=0.1, span=0.9, hold_cancel=True))
    used = Rating.objects.filter(
        image_id__in=[] if is_control else summary["image_ids"],
        retracted_at=None,
        is_repeat=False,
    )
    rating_info = rating_summary(ratings=used)
    metrics = _train_metrics(result, resumed_from)
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
            dataset=dataset,
            rating_count=rating_info["count"],
            ratings_until=rating_info["until"],
            path=str(result.final_dir),
            params={
                **params,
                "objective": objective,
                "weighting": kwargs["weighting"],
                "max_drift": kwargs["max_drift"],
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
    version_samples_make(version, device=_device(params.get("device")))
    return _finetune_result(job, version)


def _finetune_result(job: Job, version: ModelVersion) -> dict[str, Any]:
    next_job = chain_next_after_finetune(job=job, new_version=version)
    return _version_result(version, next_job_id=getattr(next_job, "pk", None))


# --- filtered generation ---------------------------------------------------------


class _CountingGenerator:
    """Passes a progress callback to each ``generate`` call filtering makes."""

    def __init__(self, backend: Any, reporter: _Reporter, expected_calls: int) -> None:
        self.backend = backend
        self.reporter = reporter
        self.expected = max(expected_calls, 1)
        self.calls = 0

    def generate(self, requests: list[Any], **kwargs: Any) -> list[Any]:
        call = self.calls
        self.calls += 1

        def on_step(done: int, total: int) -> None:
            fraction = (call + done / max(total, 1)) / self.expected
            self.reporter(fraction, f"generating: {done} of {total} sampling steps")

        return self.backend.generate(requests, progress=on_step, **kwargs)


def generate_run(job: Job, progress: Progress) -> dict[str, Any]:
    """Generate, score with the reward model, store kept and rejected images;
    without a reward model (mode ``none``) every image is kept, unscored."""
    from .engine import GenerationRequest, RewardModel, filter_generate, load_backend

    p = job.params
    stored = Image.objects.filter(generation__job_id=job.pk).order_by("id")
    if not stored.exists():
        version = ModelVersion.objects.get(pk=p["model_version_id"])
        reward_id = p.get("reward_version_id")
        reward_version = ModelVersion.objects.get(pk=reward_id) if reward_id else None
        sampling = _sampling_kwargs(p.get("sampling") or {})
        backend = load_backend(
            version.path, device=_device((p.get("sampling") or {}).get("device"))
        )
        requests = [
            GenerationRequest(
                prompt=p["prompt"], modality=p["modality"], seed=p["seed"] + i
            )
            for i in range(int(p["count"]))
        ]
        if reward_version is None:
            counting = _CountingGenerator(backend, _Reporter(progress, span=0.9), 1)
            plain = counting.generate(requests, **sampling)
            with transaction.atomic():
                for index, item in enumerate(plain):
                    record = _generation_record(item, job=job)
                    record.update(kept=True, request_index=index, attempt=0)
                    generated_image_create(
                        picture=item.image,
                        prompt=item.prompt,
                        modality=item.modality or "",
                        model_version=version,
                        generation=record,
                    )
            stats: dict[str, Any] = {"n": 1, "generated": len(plain), "filtered": False}
            return _generate_result(job, stats)
        reward = RewardModel.load(reward_version.path)
        calls = 1 if p["mode"] == "best_of_n" else int(p["max_attempts"])
        result = filter_generate(
            _CountingGenerator(backend, _Reporter(progress, span=0.9), calls),
            reward,
            requests,
            mode=p["mode"],
            n=int(p["n"]),
            threshold=p.get("threshold"),
            max_attempts=int(p["max_attempts"]),
            **sampling,
        )
        scored = [(s, True) for s in result.kept]
        scored += [(s, False) for s in result.rejected]
        with transaction.atomic():
            for item, kept in scored:
                generated_image_create(
                    picture=item.image,
                    prompt=item.prompt,
                    modality=item.modality,
                    model_version=version,
                    reward_score=item.reward,
                    generation={
                        "seed": item.seed,
                        "steps": item.provenance.get("steps"),
                        "guidance": item.provenance.get("guidance"),
                        "scheduler": item.provenance.get("scheduler"),
                        "prompt": item.prompt,
                        "modality": item.modality,
                        "engine_version": item.provenance.get("model_version"),
                        "job_id": job.pk,
                        "reward_version_id": reward_version.pk,
                        "kept": kept,
                        "request_index": item.request_index,
                        "attempt": item.attempt,
                        "probs": list(item.probs),
                        "uncertainty": item.uncertainty,
                    },
                )
        return _generate_result(job, result.stats)
    return _generate_result(job, dict(job.result.get("stats") or {}))


def _generate_result(job: Job, stats: dict[str, Any]) -> dict[str, Any]:
    p = job.params
    stored = Image.objects.filter(generation__job_id=job.pk).order_by("id")
    rows: dict[str, list[dict[str, Any]]] = {"kept": [], "rejected": []}
    for image in stored:
        g = image.generation
        rows["kept" if g.get("kept") else "rejected"].append(
            {
                "uid": image.uid.hex,
                "reward_score": image.reward_score,
                "seed": g.get("seed"),
                "request_index": g.get("request_index"),
                "attempt": g.get("attempt"),
                "uncertainty": g.get("uncertainty"),
            }
        )
    return {**rows, "stats": stats, "threshold": p.get("threshold")}


# --- scoring a round's images -----------------------------------------------------

SCORE_BATCH = 64


def round_score_run(job: Job, progress: Progress) -> dict[str, Any]:
    """Score a round's images with a reward model: an ``ImageScore`` each, and
    the ensemble spread as the item's ``uncertainty``.

    Images this version already scored are not scored again (a retried job
    picks up where it stopped); their stored spread is still copied.
    """
    from annotations.models import RoundImage

    from .engine import RewardModel, load_pil
    from .models import ImageScore

    rnd = Round.objects.get(pk=job.params["round_id"])
    version = ModelVersion.objects.get(pk=job.params["reward_version_id"])
    items = list(rnd.items.select_related("image").order_by("pk"))
    known = dict(
        ImageScore.objects.filter(
            model_version=version, image_id__in=[it.image_id for it in items]
        ).values_list("image_id", "spread")
    )
    todo = [it for it in items if it.image_id not in known]
    reporter = _Reporter(progress)
    model = RewardModel.load(version.path) if todo else None
    for start in range(0, len(todo), SCORE_BATCH):
        chunk = todo[start : start + SCORE_BATCH]
        pictures = [load_pil(_file_path(it.image)).convert("RGB") for it in chunk]
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
