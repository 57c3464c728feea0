"""Which fine-tuning objective turns one round of ratings into a better model?

Every objective of ``objectives.py`` against the compute-matched control
(``none``: the same images, steps, schedule and real-image term, no
feedback), with a program in the physician's place (the simulated rater of
``simulated_raters``: 3 when it is sure the image shows the prompted modality
and the image is as close to real images as held-out real ones are; 2 when
the modality is merely the likely one; 1 otherwise).

For each pipeline seed:

1. demo data of three modalities and the rater fitted on them;
2. a tiny base model (the parent);
3. one round: ``images_per_prompt`` images per prompt from the parent, of
   which ``rated_per_prompt`` are rated (at most 500 ratings in all);
4. the reward model trained on those ratings, scoring the unrated images;
5. one fine-tune of the parent per objective, all with the same steps,
   learning rate, batch and real-image term, from the round's images and
   what was said of them (``finetune_data``, the rules the platform uses);
6. every fine-tune and the parent draw ``eval_per_prompt`` fresh images per
   prompt (seeds no fine-tune saw, the same seeds for every arm), rated by
   the program; best-of-N by reward runs on top of the ``best_of`` arm;
7. per arm: share rated 3 with its Wilson interval, exact paired McNemar
   tests against the parent and against ``none`` (same seeds), the phi
   correlation of outcomes with the parent's on the same seed, and the local
   FD to the real images against the parent's.

Stages are cached under ``output_dir/seed-<s>/``: a rerun with other arm
settings reuses the base, the round and the reward model. Arms are cached
by a hash of their settings.

    python -m research.feedback_objectives \\
        --output_dir runs/objectives --seeds 100 101 [--objectives ...] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from models_ml.engine import (
    DEFAULT_SCHEDULER,
    DEFAULT_STEPS,
    OBJECTIVES,
    FeedbackImage,
    FeedbackRows,
    Judgement,
    mcnemar_exact,
    objective_rows,
    recipe_for,
    wilson_interval,
)

from .simulated_raters import (
    MODALITIES,
    SimulatedRater,
    Timer,
    _at_resolution,
    _load_average,
    _write_csv,
    choose_prompts,
    real_data_and_rater,
)

# Raw weight where physicians rated: their mean rating mapped to 0-1, as the
# platform does; a filter at 0.75 keeps what one physician rated 3.
FILTER_THRESHOLD = 0.75


@dataclass
class ArmSettings:
    """What every fine-tune shares, and each objective's own knobs."""

    steps: int = 200
    learning_rate: float = 1e-4
    warmup: int = 20
    batch_size: int = 16
    beta_real: float = 1.0
    weighting: str = "sample"
    kto_beta: float = 2000.0
    kto_middle: str = "neutral"
    kto_unrated_weight: float = 0.5
    dpo_beta: float = 2000.0
    max_drift: float | None = 3.0
    # More images of the parent per prompt that nobody rates: the reward
    # model scores them, and every arm (the control too) trains on them.
    pool_per_prompt: int = 0

    def key(self, objective: str) -> str:
        relevant = dataclasses.asdict(self)
        if objective != "kto":
            relevant = {k: v for k, v in relevant.items() if not k.startswith("kto")}
        if objective != "dpo":
            relevant.pop("dpo_beta", None)
        text = json.dumps([objective, relevant], sort_keys=True)
        return f"{objective}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


@dataclass
class ExperimentConfig:
    output_dir: Path
    seeds: tuple[int, ...] = (100,)
    objectives: tuple[str, ...] = OBJECTIVES
    modalities: tuple[str, ...] = MODALITIES
    resolution: int = 16
    channels: tuple[int, ...] = (32, 64)
    per_modality: int = 60
    base_steps: int = 300
    base_lr: float = 1e-3
    images_per_prompt: int = 96
    rated_per_prompt: int = 80
    eval_per_prompt: int = 96
    scheduler: str = DEFAULT_SCHEDULER
    sample_steps: int = DEFAULT_STEPS
    guidance: float = 1.0
    best_of: int = 4
    best_of_objective: str = "filtered"
    reward_ensemble: int = 5
    reward_epochs: int = 200
    arm: ArmSettings = field(default_factory=ArmSettings)
    # Each objective with the product's recipe (engine.recipes) instead of
    # ``arm``'s settings; each beside a control of its own schedule.
    recipes: bool = False


def quick_config(output_dir: Path, seeds: tuple[int, ...]) -> ExperimentConfig:
    """Test-size settings: every stage in a minute or two on one core."""
    return ExperimentConfig(
        output_dir=output_dir,
        seeds=seeds,
        channels=(8, 16),
        per_modality=10,
        base_steps=20,
        images_per_prompt=6,
        rated_per_prompt=4,
        eval_per_prompt=4,
        sample_steps=5,
        reward_ensemble=2,
        reward_epochs=30,
        arm=ArmSettings(steps=4, warmup=1, batch_size=8, max_drift=None),
    )


@dataclass
class RoundSample:
    path: str
    prompt: str
    modality: str
    seed: int
    rating: int
    rated: bool
    reward: float | None = None


# --- what each objective trains on ---------------------------------------------


def finetune_data(
    samples: Sequence[RoundSample], objective: str, arm: ArmSettings
) -> FeedbackRows:
    """The rows an objective fine-tunes on, by the platform's own rules
    (``feedback_data.objective_rows``): one simulated physician, so pairs
    form within a prompt."""
    images = [
        FeedbackImage(
            path=s.path,
            prompt=s.prompt,
            modality=s.modality,
            mean_rating=float(s.rating) if s.rated else None,
            reward=s.reward,
        )
        for s in samples
    ]
    judgements = [
        Judgement(rater="program", group=im.prompt, image=im, score=s.rating)
        for s, im in zip(samples, images, strict=True)
        if s.rated
    ]
    return objective_rows(
        objective,
        images,
        judgements=judgements,
        filter_threshold=FILTER_THRESHOLD,
        kto_middle=arm.kto_middle,
        kto_unrated_weight=arm.kto_unrated_weight,
    )


# --- stages --------------------------------------------------------------------


def _requests(prompts: Sequence[tuple[str, str]], per_prompt: int, first_seed: int):
    from models_ml.engine import GenerationRequest

    return [
        GenerationRequest(
            prompt=text, modality=modality, seed=first_seed + 1000 * p + k
        )
        for p, (text, modality) in enumerate(prompts)
        for k in range(per_prompt)
    ]


def _sample(backend: Any, requests: Sequence[Any], config: ExperimentConfig) -> list:
    return backend.generate(
        list(requests),
        steps=config.sample_steps,
        guidance=config.guidance,
        scheduler=config.scheduler,
        batch_size=32,
    )


def _save_images(images: Sequence[Image.Image], folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"{i:05d}.png"
        image.save(path)
        paths.append(str(path))
    return paths


def _read_samples(path: Path) -> list[RoundSample]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            RoundSample(
                path=r["path"],
                prompt=r["prompt"],
                modality=r["modality"],
                seed=int(r["seed"]),
                rating=int(r["rating"]),
                rated=r["rated"] == "1",
                reward=float(r["reward"]) if r["reward"] else None,
            )
            for r in csv.DictReader(handle)
        ]


def _write_samples(path: Path, samples: Sequence[RoundSample]) -> None:
    _write_csv(
        path,
        ("path", "prompt", "modality", "seed", "rating", "rated", "reward"),
        [
            (
                s.path,
                s.prompt,
                s.modality,
                s.seed,
                s.rating,
                int(s.rated),
                "" if s.reward is None else f"{s.reward:.6f}",
            )
            for s in samples
        ],
    )


# The base-step count whose cache folders carry no suffix (the first runs').
PLAIN_BASE_STEPS = 300


def _base_suffix(config: ExperimentConfig) -> str:
    steps = config.base_steps
    return "" if steps == PLAIN_BASE_STEPS else f"-{steps}"


def base_model(out: Path, real_csv: Path, config: ExperimentConfig, seed: int) -> Path:
    from models_ml.engine import TrainConfig, finetune

    folder = out / f"base{_base_suffix(config)}"
    model = folder / "model"
    if (model / "medrlhf_model.json").is_file():
        return model
    result = finetune(
        TrainConfig(
            data_csv=str(real_csv),
            output_dir=str(folder),
            resolution=config.resolution,
            channels=config.channels,
            max_steps=config.base_steps,
            learning_rate=config.base_lr,
            batch_size=16,
            lr_warmup_steps=0,
            seed=seed,
            device="cpu",
            checkpoints_total_limit=1,
        )
    )
    assert result.final_dir is not None
    return result.final_dir


def rating_round(
    out: Path,
    base: Path,
    prompts: Sequence[tuple[str, str]],
    rater: SimulatedRater,
    real: Sequence[tuple[str, str, str]],
    config: ExperimentConfig,
    seed: int,
) -> tuple[list[RoundSample], dict[str, Any]]:
    """The parent's round, rated in part, and the reward model's scores of
    the rest; cached in ``round.csv`` / ``reward.json``."""
    from models_ml.engine import (
        RatingRecord,
        RewardConfig,
        load_backend,
        train_reward_model,
    )

    cached, info_path = out / "round.csv", out / "reward.json"
    if cached.is_file() and info_path.is_file():
        return _read_samples(cached), json.loads(info_path.read_text())
    requests = _requests(prompts, config.images_per_prompt, seed * 7_919)
    generated = _sample(load_backend(base), requests, config)
    images = [g.image for g in generated]
    ratings = rater.rate(images, [r.modality for r in requests])
    paths = _save_images(images, out / "round")
    samples = [
        RoundSample(
            path=p,
            prompt=r.prompt,
            modality=r.modality,
            seed=r.seed,
            rating=v,
            rated=(i % config.images_per_prompt) < config.rated_per_prompt,
        )
        for i, (p, r, v) in enumerate(zip(paths, requests, ratings, strict=True))
    ]
    rated = [s for s in samples if s.rated]
    reward = train_reward_model(
        [RatingRecord(s.path, s.prompt, s.modality, s.rating) for s in rated],
        config=RewardConfig(
            ensemble_size=config.reward_ensemble,
            epochs=config.reward_epochs,
            seed=seed,
        ),
        real_images=list(real),
    )
    reward.model.save(out / "reward_model")
    unrated = [s for s in samples if not s.rated]
    if unrated:
        predicted = reward.model.predict(
            [Image.open(s.path).convert("RGB") for s in unrated],
            [s.prompt for s in unrated],
            [s.modality for s in unrated],
        )
        for s, value in zip(unrated, predicted.reward, strict=True):
            s.reward = float(value)
    info = {
        "ratings": len(rated),
        "images": len(samples),
        "share_3_of_rated": float(np.mean([s.rating == 3 for s in rated])),
        "metrics": {
            k: v
            for k, v in reward.metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        },
    }
    _write_samples(cached, samples)
    info_path.write_text(json.dumps(info, indent=2))
    return samples, info


def finetune_arm(
    out: Path,
    objective: str,
    base: Path,
    real_csv: Path,
    samples: Sequence[RoundSample],
    config: ExperimentConfig,
    seed: int,
    arm: ArmSettings,
) -> tuple[Path, dict[str, Any]]:
    from models_ml.engine import TrainConfig, finetune

    folder = out / "arms" / arm.key(objective)
    done = folder / "finetune.json"
    if done.is_file():
        return folder / "model", json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    data = finetune_data(samples, objective, arm)
    if not data.rows:
        raise ValueError(f"{objective}: nothing to train on")
    kind, rows = data.kind, data.rows
    data_csv = data.write(folder / f"{kind}.csv")
    extra: dict[str, Any] = {}
    if objective == "filtered":
        extra["filter_threshold"] = 1.0
    began = time.perf_counter()
    result = finetune(
        TrainConfig(
            weights_csv=str(data_csv) if kind == "weights" else None,
            pairs_csv=str(data_csv) if kind == "pairs" else None,
            objective=objective,
            real_csv=str(real_csv),
            beta=arm.beta_real,
            model_path=str(base),
            output_dir=str(folder),
            max_steps=arm.steps,
            learning_rate=arm.learning_rate,
            lr_scheduler="constant",
            lr_warmup_steps=arm.warmup,
            batch_size=arm.batch_size,
            weighting=arm.weighting,
            kto_beta=arm.kto_beta,
            dpo_beta=arm.dpo_beta,
            max_drift=arm.max_drift,
            drift_check_steps=max(1, arm.steps // 4),
            seed=seed,
            device="cpu",
            checkpoints_total_limit=1,
            **extra,
        )
    )
    if result.final_dir is None:
        raise RuntimeError(f"{objective}: stopped: {result.stopped_reason}")
    info = {
        "objective": objective,
        "settings": dataclasses.asdict(arm),
        "rows": len(rows),
        "seconds": round(time.perf_counter() - began, 1),
        "final_loss": float(np.mean(result.losses[-10:])),
        "trainer": result.objective,
        "drift": result.drift,
        "drift_baseline": result.drift_baseline,
    }
    done.write_text(json.dumps(info, indent=2))
    return result.final_dir, info


def evaluate_arm(
    folder: Path,
    model: Path,
    requests: Sequence[Any],
    rater: SimulatedRater,
    config: ExperimentConfig,
) -> list[int]:
    """Ratings of the model's evaluation images (cached in ``eval.json``)."""
    from models_ml.engine import load_backend

    cached = folder / "eval.json"
    if cached.is_file():
        return list(json.loads(cached.read_text())["ratings"])
    began = time.perf_counter()
    generated = _sample(load_backend(model), requests, config)
    images = [g.image for g in generated]
    ratings = rater.rate(images, [r.modality for r in requests])
    _save_images(images, folder / "eval")
    cached.write_text(
        json.dumps(
            {"ratings": ratings, "seconds": round(time.perf_counter() - began, 1)}
        )
    )
    return ratings


def best_of_n(
    folder: Path,
    model: Path,
    reward_dir: Path,
    requests: Sequence[Any],
    rater: SimulatedRater,
    config: ExperimentConfig,
) -> list[int]:
    """Ratings of the images best-of-N by reward keeps (cached)."""
    from models_ml.engine import RewardModel, filter_generate, load_backend

    cached = folder / f"best_of_{config.best_of}.json"
    if cached.is_file():
        return list(json.loads(cached.read_text())["ratings"])
    result = filter_generate(
        load_backend(model),
        RewardModel.load(reward_dir),
        list(requests),
        mode="best_of_n",
        n=config.best_of,
        steps=config.sample_steps,
        guidance=config.guidance,
        scheduler=config.scheduler,
        batch_size=32,
    )
    kept = sorted(result.kept, key=lambda k: k.request_index)
    ratings = rater.rate([k.image for k in kept], [k.modality for k in kept])
    cached.write_text(json.dumps({"ratings": ratings, "stats": result.stats}))
    return ratings


def _fd(folder: Path, real: Sequence[Image.Image]) -> float:
    """Local FD of ``folder/eval``'s images to the real ones (cached)."""
    from models_ml.engine import HandcraftedFeatures, local_fd_kid

    cached = folder / "fd.json"
    if cached.is_file():
        return float(json.loads(cached.read_text())["local_fd"])
    images = [Image.open(p) for p in sorted((folder / "eval").glob("*.png"))]
    fd = float(
        local_fd_kid(images, list(real), HandcraftedFeatures(), kid_subsets=2)[
            "local_fd"
        ]
    )
    cached.write_text(json.dumps({"local_fd": fd}))
    return fd


def _phi(a: Sequence[bool], b: Sequence[bool]) -> float | None:
    x, y = np.asarray(a, float), np.asarray(b, float)
    if x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def arm_summary(
    ratings: Sequence[int],
    *,
    parent: Sequence[int] | None,
    control: Sequence[int] | None,
) -> dict[str, Any]:
    threes = [r == 3 for r in ratings]
    n, k = len(ratings), sum(threes)
    summary: dict[str, Any] = {
        "n": n,
        "rated_3": k,
        "share_3": k / n if n else None,
        "wilson95": list(wilson_interval(k, n)),
        "counts": {str(v): sum(1 for r in ratings if r == v) for v in (1, 2, 3)},
    }
    for name, other in (("vs_parent", parent), ("vs_control", control)):
        if other is not None:
            base = [r == 3 for r in other]
            test = mcnemar_exact(base, threes)
            summary[name] = {
                **test,
                "difference": (k - sum(base)) / n if n else 0.0,
            }
    if parent is not None:
        summary["phi_with_parent"] = _phi([r == 3 for r in parent], threes)
    return summary


def arm_settings(config: ExperimentConfig, objective: str) -> ArmSettings:
    """The settings an objective fine-tunes with: the product's recipe for it
    (``engine.recipes``) with ``--recipes``, else the run's common ones."""
    if not config.recipes:
        return config.arm
    recipe = recipe_for(objective)
    return dataclasses.replace(
        config.arm,
        steps=int(recipe["max_steps"]),
        learning_rate=float(recipe["learning_rate"]),
        warmup=int(recipe["lr_warmup_steps"]),
        beta_real=float(recipe["beta"]),
        max_drift=recipe["max_drift"],
        kto_beta=float(recipe.get("kto_beta", config.arm.kto_beta)),
        dpo_beta=float(recipe.get("dpo_beta", config.arm.dpo_beta)),
    )


def schedule(arm: ArmSettings) -> tuple[Any, ...]:
    """What a control shares with the fine-tune it stands beside."""
    return (
        arm.steps,
        arm.learning_rate,
        arm.warmup,
        arm.batch_size,
        arm.beta_real,
        arm.weighting,
        arm.max_drift,
        arm.pool_per_prompt,
    )


def schedule_label(arm: ArmSettings) -> str:
    return f"({arm.steps} steps, lr {arm.learning_rate:g})"


def round_tag(config: ExperimentConfig) -> str:
    """What the round and every evaluation depend on besides the seed."""
    return (
        f"round-{config.scheduler}{config.sample_steps}-g{config.guidance:g}-"
        f"{config.images_per_prompt}x{config.rated_per_prompt}-"
        f"eval{config.eval_per_prompt}{_base_suffix(config).replace('-', '-b')}"
    )


def unrated_pool(
    out: Path,
    base: Path,
    prompts: Sequence[tuple[str, str]],
    config: ExperimentConfig,
    seed: int,
) -> list[RoundSample]:
    """``pool_per_prompt`` more images of the parent per prompt (seeds apart
    from the round's and the evaluation's), scored by the round's reward
    model; cached in ``pool-<n>.csv``."""
    from models_ml.engine import RewardModel, load_backend

    n = config.arm.pool_per_prompt
    if n < 1:
        return []
    cached = out / f"pool-{n}.csv"
    if cached.is_file():
        return _read_samples(cached)
    requests = _requests(prompts, n, seed * 7_919 + 900)
    generated = _sample(load_backend(base), requests, config)
    images = [g.image for g in generated]
    paths = _save_images(images, out / f"pool-{n}")
    predicted = RewardModel.load(out / "reward_model").predict(
        images, [r.prompt for r in requests], [r.modality for r in requests]
    )
    pool = [
        RoundSample(
            path=p,
            prompt=r.prompt,
            modality=r.modality,
            seed=r.seed,
            rating=0,
            rated=False,
            reward=float(v),
        )
        for p, r, v in zip(paths, requests, predicted.reward, strict=True)
    ]
    _write_samples(cached, pool)
    return pool


def run_seed(config: ExperimentConfig, seed: int, timer: Timer) -> dict[str, Any]:
    from models_ml.engine import load_pil

    top = Path(config.output_dir) / f"seed-{seed}"
    out = top / round_tag(config)
    out.mkdir(parents=True, exist_ok=True)
    real_csv, real, rater, rater_entry = real_data_and_rater(
        top,
        timer,
        per_modality=config.per_modality,
        modalities=config.modalities,
        resolution=config.resolution,
        seed=seed,
    )
    with timer.step(f"seed {seed}: base"):
        base = base_model(top, real_csv, config, seed)
    prompts = choose_prompts(real, config.modalities)
    with timer.step(f"seed {seed}: round and reward model"):
        samples, reward_info = rating_round(
            out, base, prompts, rater, real, config, seed
        )
    if config.arm.pool_per_prompt:
        with timer.step(f"seed {seed}: unrated pool"):
            samples = samples + unrated_pool(out, base, prompts, config, seed)
    eval_requests = _requests(prompts, config.eval_per_prompt, seed * 7_919 + 500)
    real_images = [_at_resolution(load_pil(p), config.resolution) for p, _, _ in real]
    with timer.step(f"seed {seed}: parent"):
        parent_ratings = evaluate_arm(out, base, eval_requests, rater, config)
    parent_fd = _fd(out, real_images)
    arms: dict[str, Any] = {}
    ratings_of: dict[str, list[int]] = {}
    models: dict[str, Path] = {}
    settings_of = {o: arm_settings(config, o) for o in config.objectives}
    # Every objective's compute-matched control: "none" with its schedule.
    controls = {schedule(arm): dataclasses.replace(arm) for arm in settings_of.values()}
    if "none" in settings_of:
        controls[schedule(settings_of["none"])] = settings_of["none"]
    control_ratings: dict[tuple[Any, ...], list[int]] = {}
    for key, arm in controls.items():
        label = f"none {schedule_label(arm)}"
        with timer.step(f"seed {seed}: {label}"):
            model, info = finetune_arm(
                out, "none", base, real_csv, samples, config, seed, arm
            )
            control_ratings[key] = evaluate_arm(
                model.parent, model, eval_requests, rater, config
            )
            fd = _fd(model.parent, real_images)
        entry = {"finetune": info, "local_fd": fd, "fd_vs_parent": fd / parent_fd}
        entry.update(
            arm_summary(control_ratings[key], parent=parent_ratings, control=None)
        )
        arms[label] = entry
    for objective in config.objectives:
        if objective == "none":
            continue
        arm = settings_of[objective]
        if not finetune_data(samples, objective, arm).rows:
            # A filter that keeps nothing, or no two ratings differ.
            arms[objective] = {"skipped": "nothing to train on"}
            continue
        with timer.step(f"seed {seed}: {objective}"):
            model, info = finetune_arm(
                out, objective, base, real_csv, samples, config, seed, arm
            )
            ratings_of[objective] = evaluate_arm(
                model.parent, model, eval_requests, rater, config
            )
            models[objective] = model
            fd = _fd(model.parent, real_images)
        control = control_ratings[schedule(arm)]
        entry = {"finetune": info, "local_fd": fd, "fd_vs_parent": fd / parent_fd}
        entry.update(
            arm_summary(ratings_of[objective], parent=parent_ratings, control=control)
        )
        entry["control"] = f"none {schedule_label(arm)}"
        arms[objective] = entry
    best: dict[str, Any] | None = None
    if config.best_of > 1 and config.best_of_objective in models:
        name = config.best_of_objective
        with timer.step(f"seed {seed}: best of {config.best_of} on {name}"):
            kept = best_of_n(
                models[name].parent,
                models[name],
                out / "reward_model",
                eval_requests,
                rater,
                config,
            )
        best = arm_summary(
            kept,
            parent=ratings_of[name],
            control=control_ratings[schedule(settings_of[name])],
        )
        best["of"] = name
    return {
        "seed": seed,
        "rater": rater_entry,
        "round": reward_info,
        "parent": {
            **arm_summary(parent_ratings, parent=None, control=None),
            "local_fd": parent_fd,
        },
        "arms": arms,
        "best_of": best,
        "prompts": [list(p) for p in prompts],
    }


def _cell(entry: dict[str, Any], key: str) -> str:
    test = entry.get(key)
    if not test:
        return ""
    return (
        f"{test['difference'] * 100:+.1f} (+{test['gained']}/-{test['lost']}, "
        f"p = {test['p_value']:.2g})"
    )


def markdown_report(report: dict[str, Any]) -> str:
    lines = [
        "# Fine-tuning objectives against the no-feedback control",
        "",
        "| seed | arm | n | share 3 | Wilson 95 % | vs parent, points | "
        "vs control (none), points | local FD / parent's |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for seed in report["seeds"]:
        parent = seed["parent"]
        low, high = parent["wilson95"]
        lines.append(
            f"| {seed['seed']} | parent | {parent['n']} | {parent['share_3']:.3f} | "
            f"[{low:.3f}, {high:.3f}] | | | 1.00 |"
        )
        rows = [(k, v) for k, v in seed["arms"].items() if "skipped" not in v]
        for name in sorted(set(seed["arms"]) - {k for k, _ in rows}):
            lines.append(f"| {seed['seed']} | {name} | skipped: nothing to train on |")
        if seed.get("best_of"):
            rows.append((f"best of N on {seed['best_of']['of']}", seed["best_of"]))
        for name, entry in rows:
            low, high = entry["wilson95"]
            ratio = entry.get("fd_vs_parent")
            lines.append(
                f"| {seed['seed']} | {name} | {entry['n']} | {entry['share_3']:.3f} | "
                f"[{low:.3f}, {high:.3f}] | {_cell(entry, 'vs_parent')} | "
                f"{_cell(entry, 'vs_control')} | "
                f"{'' if ratio is None else f'{ratio:.2f}'} |"
            )
    lines += [
        "",
        "Points: share rated 3 minus the other arm's, in percentage points, with "
        "the seeds gained / lost and the exact McNemar p-value (same seeds). "
        "Best of N: its difference against the arm it filters is under "
        "'vs parent'.",
        "",
        "Seconds per step: "
        + ", ".join(f"{k} {v:.0f}" for k, v in report["seconds"].items()),
        "",
    ]
    return "\n".join(lines)


def run_experiment(config: ExperimentConfig) -> dict[str, Any]:
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timer = Timer()
    report: dict[str, Any] = {
        "config": json.loads(json.dumps(dataclasses.asdict(config), default=str)),
        "load_average_start": _load_average(),
    }
    report["seeds"] = [run_seed(config, seed, timer) for seed in config.seeds]
    report["seconds"] = timer.seconds
    report["load_average_end"] = _load_average()
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "report.md").write_text(markdown_report(report))
    return report


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m research.feedback_objectives",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add = parser.add_argument
    add("--output_dir", required=True, type=Path, help="results folder (a cache)")
    add("--seeds", type=int, nargs="+", default=[100], help="pipeline seeds")
    add("--objectives", nargs="+", choices=OBJECTIVES, help="arms (default: all)")
    add("--quick", action="store_true", help="test-size run")
    add(
        "--recipes",
        action="store_true",
        help="each objective with the product's recipe (engine/recipes.py), "
        "beside a control of its own schedule; the options below then change "
        "nothing but --pool_per_prompt",
    )
    add("--steps", type=int, help="fine-tune steps of every arm (default 200)")
    add("--learning_rate", type=float, help="fine-tune learning rate (1e-4)")
    add("--beta_real", type=float, help="weight of the real-image term (1.0)")
    add("--kto_beta", type=float, help="KTO temperature")
    add("--kto_middle", choices=("neutral", "dropped", "weighted"))
    add("--dpo_beta", type=float, help="DPO temperature")
    add("--guidance", type=float, help="guidance of every sampling (default 1)")
    add("--scheduler", choices=("ddpm", "dpm", "euler", "ddim"), help="sampler")
    add("--sample_steps", type=int, help="sampling steps")
    add("--best_of_objective", choices=OBJECTIVES, help="arm best-of-N filters")
    add("--best_of", type=int, help="N of best-of-N (default 4; 1: none)")
    add("--rated_per_prompt", type=int, help="ratings per prompt (default 80)")
    add("--base_steps", type=int, help="steps of the base model (default 300)")
    add(
        "--pool_per_prompt",
        type=int,
        help="more unrated images of the parent per prompt, scored by the reward "
        "model, that every arm trains on (default 0)",
    )
    args = parser.parse_args(argv)
    seeds = tuple(dict.fromkeys(args.seeds))
    config = (
        quick_config(args.output_dir.resolve(), seeds)
        if args.quick
        # Absolute: the CSVs it writes name files that readers resolve
        # against the CSV's own folder, not the working directory.
        else ExperimentConfig(output_dir=args.output_dir.resolve(), seeds=seeds)
    )
    if args.objectives:
        config.objectives = tuple(dict.fromkeys(args.objectives))
    config.recipes = bool(args.recipes)
    for name in ("steps", "learning_rate", "beta_real", "kto_beta", "dpo_beta"):
        value = getattr(args, name)
        if value is not None:
            if value <= 0:
                parser.error(f"--{name} must be above 0, got {value}")
            setattr(config.arm, name, value)
    if args.kto_middle:
        config.arm.kto_middle = args.kto_middle
    if args.pool_per_prompt is not None:
        if not 0 <= args.pool_per_prompt <= 10_000:
            parser.error(
                f"--pool_per_prompt must be 0-10000, got {args.pool_per_prompt}"
            )
        config.arm.pool_per_prompt = args.pool_per_prompt
    if args.guidance is not None:
        config.guidance = args.guidance
    if args.scheduler:
        config.scheduler = args.scheduler
    if args.sample_steps is not None:
        if not 1 <= args.sample_steps <= 1000:
            parser.error(f"--sample_steps must be 1-1000, got {args.sample_steps}")
        config.sample_steps = args.sample_steps
    if args.best_of_objective:
        config.best_of_objective = args.best_of_objective
    if args.best_of is not None:
        if not 1 <= args.best_of <= 16:
            parser.error(f"--best_of must be 1-16, got {args.best_of}")
        config.best_of = args.best_of
    if args.base_steps is not None:
        if not 1 <= args.base_steps <= 100_000:
            parser.error(f"--base_steps must be 1-100000, got {args.base_steps}")
        config.base_steps = args.base_steps
    if args.rated_per_prompt is not None:
        if not 1 <= args.rated_per_prompt <= config.images_per_prompt:
            parser.error(
                f"--rated_per_prompt must be 1-{config.images_per_prompt}, got "
                f"{args.rated_per_prompt}"
            )
        config.rated_per_prompt = args.rated_per_prompt
    report = run_experiment(config)
    print(markdown_report(report))
    return report


if __name__ == "__main__":
    main()
