"""Simulated-rater experiment: does one round of feedback raise the share rated 3?

A program plays the physician. It is a logistic regression on handcrafted
features, trained on REAL demo images of a few modalities, and rates a
generated image 3 when it is confident the image shows the prompted modality
and the image lies as close to real images of that modality as held-out real
images do; 2 when the prompted modality is merely the likely one; 1 otherwise.

Steps: build the demo data, train a small tiny-backend base model, generate
N images per prompt (no classifier-free guidance, see ``guidance``), rate part
of them with the program, train the reward model on those ratings, and
fine-tune the base three ways that differ only in the per-image weights
(normalised per prompt): reward-weighted, filtered (images rated 3 only) and
equal weights (the control). Each fine-tuned model generates again with the
same prompts and seeds and is rated again; finally the best of 4 candidates by
reward is kept from the reward-weighted model. Shares rated 3 are reported
with Wilson 95 % intervals and exact paired McNemar tests (same seeds),
together with the reward model's held-out metrics, step times and the load
average.

    python -m research.simulated_raters --output_dir DIR \
        [--quick] [--seed S] [--base_model DIR] [--images_per_prompt N]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

MODALITIES = ("Fundus", "Chest X-ray", "CT")
PROMPTS_PER_MODALITY = 2


@dataclass
class ExperimentConfig:
    output_dir: Path
    resolution: int = 16
    channels: tuple[int, ...] = (32, 64)
    per_modality: int = 60
    base_steps: int = 300
    base_lr: float = 1e-3
    finetune_steps: int = 100
    # Small and warmed up: a fresh Adam state at a large constant rate moves a
    # converged model more than the feedback does.
    finetune_lr: float = 1e-4
    finetune_warmup: int = 20
    beta: float = 3.0
    # Raw weight = ((rating - 1) / 2) ** power (reward ** power where unrated):
    # with power 1 a 2 weighs half a 3, too little contrast to beat the drift
    # of training on the model's own samples.
    weight_power: float = 4.0
    base_model: Path | None = None
    batch_size: int = 16
    images_per_prompt: int = 24
    rated_fraction: float = 0.5
    sample_steps: int = 40
    scheduler: str = "ddpm"
    # No classifier-free guidance: reward-weighted fine-tuning fits the model
    # to its own samples, which must then come from the model itself. Samples
    # drawn at guidance 3 come from a sharpened distribution; fitting them and
    # sampling at guidance 3 again compounds the sharpening (colour
    # saturation drifts away from real images), and every variant, the
    # equal-weights control included, lost 3s that way (docs/engine.md).
    guidance: float = 1.0
    best_of: int = 4
    # The first variant is the headline one (best-of-N runs on it); the
    # equal-weights control isolates what the feedback adds.
    variants: tuple[str, ...] = ("reward_weighted", "filtered", "equal_weights")
    filter_reward: float = 0.75
    # "prompt": each prompt's weights average 1 (as the platform does);
    # "none": the raw weights as they are.
    normalise: str = "prompt"
    # How train applies the weights: "sample" (batches drawn in proportion to
    # them, as the platform does) or "loss" (scaled losses: the figures
    # reported before session 4); the filtered variant drops its 0s either way.
    weighting: str = "sample"
    reward_ensemble: int = 5
    reward_epochs: int = 200
    seed: int = 0
    modalities: tuple[str, ...] = MODALITIES


def quick_config(output_dir: Path) -> ExperimentConfig:
    """Test-size settings: the whole pipeline in about a minute on one core."""
    return ExperimentConfig(
        output_dir=output_dir,
        resolution=16,
        channels=(8, 16),
        per_modality=10,
        base_steps=20,
        finetune_steps=6,
        finetune_warmup=2,
        batch_size=8,
        images_per_prompt=3,
        sample_steps=8,
        reward_ensemble=2,
        reward_epochs=40,
    )


# --- statistics --------------------------------------------------------------


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95 % by default)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def rating_summary(ratings: Sequence[int], modalities: Sequence[str]) -> dict[str, Any]:
    """Share rated 3 with its interval, the rating counts and a per-modality split."""
    n = len(ratings)
    threes = sum(1 for r in ratings if r == 3)
    low, high = wilson_interval(threes, n)
    per_modality: dict[str, dict[str, Any]] = {}
    for modality in sorted(set(modalities)):
        subset = [r for r, m in zip(ratings, modalities, strict=True) if m == modality]
        per_modality[modality] = {
            "n": len(subset),
            "rated_3": sum(1 for r in subset if r == 3),
        }
    return {
        "n": n,
        "rated_3": threes,
        "share_3": threes / n if n else None,
        "share_3_wilson95": [low, high],
        "mean_rating": float(np.mean(ratings)) if n else None,
        "counts": {str(v): int(sum(1 for r in ratings if r == v)) for v in (1, 2, 3)},
        "per_modality": per_modality,
    }


# --- the simulated physician -------------------------------------------------


@dataclass
class SimulatedRater:
    """Rates (image, modality) pairs from a classifier fitted on real images."""

    classes: list[str]
    resolution: int
    classifier: Any
    scaler: Any
    reference: dict[str, np.ndarray]
    radius: dict[str, float]
    confident: float = 0.9
    heldout_accuracy: float = float("nan")
    heldout_real_share_3: float = float("nan")
    n_train: int = 0
    n_heldout: int = 0
    extractor: Any = None

    def _features(self, images: Sequence[Image.Image]) -> np.ndarray:
        prepared = [_at_resolution(image, self.resolution) for image in images]
        return self.scaler.transform(self.extractor.extract(prepared))

    def rate(
        self, images: Sequence[Image.Image], modalities: Sequence[str]
    ) -> list[int]:
        if not images:
            return []
        features = self._features(images)
        probs = self.classifier.predict_proba(features)
        ratings = []
        for row, vector, modality in zip(probs, features, modalities, strict=True):
            p = float(row[self.classes.index(modality)])
            distance = _nearest_distance(vector[None], self.reference[modality])[0]
            if p >= self.confident and distance <= self.radius[modality]:
                ratings.append(3)
            elif p >= 0.5:
                ratings.append(2)
            else:
                ratings.append(1)
        return ratings


def _at_resolution(image: Image.Image, resolution: int) -> Image.Image:
    """What a model at ``resolution`` could produce of this image, as RGB."""
    from models_ml.engine import prepare_image

    return Image.fromarray(prepare_image(image, resolution).transpose(1, 2, 0))


def _nearest_distance(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    squared = ((points[:, None, :] - reference[None, :, :]) ** 2).sum(-1)
    return np.sqrt(squared.min(axis=1))


def fit_simulated_rater(
    real: Sequence[tuple[str, str, str]], *, resolution: int, seed: int
) -> SimulatedRater:
    """Fit on 70 % of the real images per modality, check on the other 30 %.

    The in-distribution radius of a modality is the 90th percentile of held-out
    real images' distance to their nearest training image, so a generated image
    counts as realistic when it is as close to the data as unseen real ones.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    from models_ml.engine import HandcraftedFeatures, load_pil

    extractor = HandcraftedFeatures()
    images = [_at_resolution(load_pil(path), resolution) for path, _, _ in real]
    labels = [modality for _, _, modality in real]
    features = extractor.extract(images)
    index = np.arange(len(images))
    train_idx, test_idx = train_test_split(
        index, test_size=0.3, random_state=seed, stratify=labels
    )
    scaler = StandardScaler().fit(features[train_idx])
    scaled = scaler.transform(features)
    classifier = LogisticRegression(max_iter=5000, C=0.5)
    classifier.fit(scaled[train_idx], [labels[i] for i in train_idx])
    classes = [str(c) for c in classifier.classes_]
    accuracy = float(
        np.mean(classifier.predict(scaled[test_idx]) == np.array(labels)[test_idx])
    )
    reference, radius = {}, {}
    for modality in classes:
        own_train = [i for i in train_idx if labels[i] == modality]
        own_test = [i for i in test_idx if labels[i] == modality]
        reference[modality] = scaled[own_train]
        distances = _nearest_distance(scaled[own_test], scaled[own_train])
        radius[modality] = float(np.percentile(distances, 90))
    rater = SimulatedRater(
        classes=classes,
        resolution=resolution,
        classifier=classifier,
        scaler=scaler,
        reference=reference,
        radius=radius,
        heldout_accuracy=accuracy,
        n_train=len(train_idx),
        n_heldout=len(test_idx),
        extractor=extractor,
    )
    heldout_ratings = rater.rate(
        [images[i] for i in test_idx], [labels[i] for i in test_idx]
    )
    rater.heldout_real_share_3 = float(np.mean([r == 3 for r in heldout_ratings]))
    return rater


# --- the pipeline ------------------------------------------------------------


@dataclass
class Sample:
    path: Path
    prompt: str
    modality: str
    seed: int
    rating: int
    reward: float | None = None


@dataclass
class Timer:
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        print(f"[simulated_raters] {name} ...", flush=True)
        yield
        self.seconds[name] = round(time.perf_counter() - start, 2)
        print(f"[simulated_raters] {name}: {self.seconds[name]:.1f} s", flush=True)


def _write_csv(
    path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]
) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def real_data_and_rater(
    out: Path,
    timer: Timer,
    *,
    per_modality: int,
    modalities: Sequence[str],
    resolution: int,
    seed: int,
) -> tuple[Path, list[tuple[str, str, str]], SimulatedRater, dict[str, Any]]:
    """The demo data of ``modalities`` (``out/real.csv``), the program fitted
    to rate against it, and the rater's entry for a report."""
    from models_ml.engine import build_demo_dataset, read_real_csv

    with timer.step("demo_data"):
        summary = build_demo_dataset(
            out / "demo", per_modality=per_modality, size=64, seed=seed
        )
        real_csv = _real_subset(summary.csv_path, out / "real.csv", modalities)
        real = read_real_csv(real_csv)
    with timer.step("rater_fit"):
        rater = fit_simulated_rater(real, resolution=resolution, seed=seed)
    entry = {
        "kind": "logistic regression on HandcraftedFeatures of real images",
        "classes": rater.classes,
        "n_train": rater.n_train,
        "n_heldout": rater.n_heldout,
        "heldout_accuracy": rater.heldout_accuracy,
        "heldout_real_share_3": rater.heldout_real_share_3,
        "radius": rater.radius,
    }
    return real_csv, real, rater, entry


def _real_subset(demo_csv: Path, out_csv: Path, modalities: Sequence[str]) -> Path:
    """The demo rows of the chosen modalities, paths relative to ``out_csv``."""
    with demo_csv.open(newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["modality"] in modalities]
    base = demo_csv.parent.relative_to(out_csv.parent)
    return _write_csv(
        out_csv,
        ("path", "Text", "modality"),
        [(str(base / r["path"]), r["Text"], r["modality"]) for r in rows],
    )


def choose_prompts(
    real: Sequence[tuple[str, str, str]], modalities: Sequence[str]
) -> list[tuple[str, str]]:
    """The most frequent training texts of each modality, so prompts are in domain."""
    chosen = []
    for modality in modalities:
        counts = Counter(text for _, text, m in real if m == modality)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        chosen += [(text, modality) for text, _ in ranked[:PROMPTS_PER_MODALITY]]
    return chosen


def _requests(
    prompts: Sequence[tuple[str, str]], per_prompt: int, seed: int
) -> list[Any]:
    from models_ml.engine import GenerationRequest

    return [
        GenerationRequest(prompt=text, modality=modality, seed=seed + 1000 * p + k)
        for p, (text, modality) in enumerate(prompts)
        for k in range(per_prompt)
    ]


def _save(images: Sequence[Image.Image], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"{i:04d}.png"
        image.save(path)
        paths.append(path)
    return paths


def _generate_and_rate(
    backend: Any,
    requests: Sequence[Any],
    rater: SimulatedRater,
    folder: Path,
    config: ExperimentConfig,
) -> list[Sample]:
    generated = backend.generate(
        list(requests),
        steps=config.sample_steps,
        guidance=config.guidance,
        scheduler=config.scheduler,
        batch_size=config.batch_size,
    )
    images = [g.image for g in generated]
    ratings = rater.rate(images, [r.modality for r in requests])
    return [
        Sample(path=path, prompt=r.prompt, modality=r.modality, seed=r.seed, rating=v)
        for path, r, v in zip(_save(images, folder), requests, ratings, strict=True)
    ]


def _rated_subset(samples: Sequence[Sample], fraction: float) -> list[bool]:
    """Which samples the 'physician' rates: the first ``fraction`` of each prompt."""
    by_prompt: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        by_prompt[s.prompt].append(i)
    rated = [False] * len(samples)
    for indices in by_prompt.values():
        for i in indices[: max(1, round(len(indices) * fraction))]:
            rated[i] = True
    return rated


def _grid(
    rows: Sequence[tuple[str, list[list[tuple[Image.Image, int]]]]], path: Path
) -> Path:
    """One row per prompt; column groups before / after / best-of-4, rating in red."""
    cell, gap, label_width = 64, 12, 0
    groups = len(rows[0][1])
    per_group = max(len(g) for _, g_list in rows for g in g_list)
    width = label_width + groups * (per_group * cell + gap)
    height = 16 + len(rows) * cell
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for g, title in enumerate(("before", "after 1 round", "best of 4")[:groups]):
        draw.text((g * (per_group * cell + gap) + 2, 2), title, fill="black")
    for r, (_, group_list) in enumerate(rows):
        for g, group in enumerate(group_list):
            for c, (image, rating) in enumerate(group):
                x = g * (per_group * cell + gap) + c * cell
                y = 16 + r * cell
                canvas.paste(image.convert("RGB").resize((cell, cell)), (x, y))
                draw.text((x + 2, y + 2), str(rating), fill=(255, 0, 0))
    canvas.save(path)
    return path


# ``filtered_weights``: the filtered variant's 0/1 weights, used the way
# reward-weighted uses its weights (every image stays in the batches, its loss
# scaled) instead of dropping the 0s from the data: it separates what the
# weights are from how training applies them.
VARIANTS = ("reward_weighted", "filtered", "equal_weights", "filtered_weights")
CONTROL = "equal_weights"


def mcnemar_exact(before: Sequence[bool], after: Sequence[bool]) -> dict[str, Any]:
    """Exact McNemar test of paired yes/no outcomes (same seeds, two models).

    Only discordant pairs carry information: ``gained`` went from no to yes,
    ``lost`` from yes to no; the two-sided p-value is that of a fair coin
    giving a split at least this uneven.
    """
    from scipy.stats import binomtest

    gained = sum(1 for b, a in zip(before, after, strict=True) if a and not b)
    lost = sum(1 for b, a in zip(before, after, strict=True) if b and not a)
    discordant = gained + lost
    p = binomtest(gained, discordant, 0.5).pvalue if discordant else 1.0
    return {"gained": gained, "lost": lost, "p_value": float(p)}


def variant_weights(
    samples: Sequence[Sample],
    rated: Sequence[bool],
    variant: str,
    config: ExperimentConfig,
) -> list[float]:
    """Per-sample fine-tuning weight of one variant, normalised per prompt.

    ``reward_weighted``: ``((rating - 1) / 2) ** power`` where rated, the reward
    model's ``reward ** power`` elsewhere. ``filtered``: 1 for images rated 3
    (or, unrated, with reward at least ``filter_reward``), 0 for the rest.
    ``equal_weights``: 1 for every image (the control: the same fine-tuning
    without the feedback).
    """
    from models_ml.engine import normalise_weights_per_prompt

    raw = []
    for s, is_rated in zip(samples, rated, strict=True):
        score = (s.rating - 1) / 2 if is_rated else float(s.reward or 0.0)
        if variant == "reward_weighted":
            raw.append(score**config.weight_power)
        elif variant in ("filtered", "filtered_weights"):
            good = s.rating == 3 if is_rated else score >= config.filter_reward
            raw.append(1.0 if good else 0.0)
        elif variant == "equal_weights":
            raw.append(1.0)
        else:
            raise ValueError(f"unknown variant {variant!r}: use one of {VARIANTS}")
    if config.normalise == "none":
        return raw
    return normalise_weights_per_prompt(
        [(s.prompt, w) for s, w in zip(samples, raw, strict=True)]
    )


def weight_mass(
    weights: Sequence[float], ratings: Sequence[int], rated: Sequence[bool]
) -> dict[str, Any]:
    """Where a fine-tune's synthetic weight goes, by the program's rating.

    ``share_by_rating``: the share of all weight on images the program rates
    1, 2 and 3 (every image, rated by the physician or not); the same for
    the images the physician did not rate (``unrated_share_by_rating``,
    which only the reward model weighs), and the share of all weight that
    those unrated images carry. ``effective_n`` is Kish's effective sample
    size ``(sum w)^2 / sum w^2``: how many equally weighted images the
    weights amount to.
    """
    w = np.asarray(weights, dtype=np.float64)
    r = np.asarray(ratings)
    unrated = ~np.asarray(rated, dtype=bool)
    total = float(w.sum())

    def shares(mask: np.ndarray) -> dict[str, float]:
        mass = float(w[mask].sum())
        return {
            str(v): (float(w[mask & (r == v)].sum()) / mass if mass > 0 else 0.0)
            for v in (1, 2, 3)
        }

    everyone = np.ones(len(w), dtype=bool)
    return {
        "share_by_rating": shares(everyone),
        "unrated_share_by_rating": shares(unrated),
        "unrated_weight_share": float(w[unrated].sum()) / total if total > 0 else 0.0,
        "effective_n": total**2 / float((w**2).sum()) if total > 0 else 0.0,
        "n": int(len(w)),
    }


def run_experiment(config: ExperimentConfig) -> dict[str, Any]:
    """Run every step; write report.json, report.md, samples.csv and grid.png."""
    import torch

    from models_ml.engine import (
        RatingRecord,
        RewardConfig,
        TrainConfig,
        filter_generate,
        finetune,
        load_backend,
        train_reward_model,
    )

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    timer = Timer()
    report: dict[str, Any] = {"config": _jsonable(dataclasses.asdict(config))}
    report["load_average_start"] = _load_average()

    real_csv, real, rater, report["rater"] = real_data_and_rater(
        out,
        timer,
        per_modality=config.per_modality,
        modalities=config.modalities,
        resolution=config.resolution,
        seed=config.seed,
    )

    common = {
        "batch_size": config.batch_size,
        "lr_warmup_steps": 0,
        "seed": config.seed,
        "device": "cpu",
        "checkpoints_total_limit": 1,
    }
    with timer.step("base_train"):
        base_dir = config.base_model
        if base_dir is None:
            base = finetune(
                TrainConfig(
                    data_csv=str(real_csv),
                    output_dir=str(out / "base"),
                    resolution=config.resolution,
                    channels=config.channels,
                    max_steps=config.base_steps,
                    learning_rate=config.base_lr,
                    **common,
                )
            )
            assert base.final_dir is not None
            base_dir = base.final_dir
    prompts = choose_prompts(real, config.modalities)
    requests = _requests(prompts, config.images_per_prompt, config.seed)

    with timer.step("generate_before"):
        base_backend = load_backend(base_dir)
        before = _generate_and_rate(
            base_backend, requests, rater, out / "before", config
        )
    rated = _rated_subset(before, config.rated_fraction)

    with timer.step("reward_train"):
        records = [
            RatingRecord(
                image_path=str(s.path),
                prompt=s.prompt,
                modality=s.modality,
                rating=s.rating,
            )
            for s, is_rated in zip(before, rated, strict=True)
            if is_rated
        ]
        reward = train_reward_model(
            records,
            config=RewardConfig(
                ensemble_size=config.reward_ensemble,
                epochs=config.reward_epochs,
                seed=config.seed,
            ),
            real_images=real,
        )
        unrated = [s for s, is_rated in zip(before, rated, strict=True) if not is_rated]
        if unrated:
            predicted = reward.model.predict(
                [Image.open(s.path) for s in unrated],
                [s.prompt for s in unrated],
                [s.modality for s in unrated],
            )
            for s, value in zip(unrated, predicted.reward, strict=True):
                s.reward = float(value)
    report["reward_model"] = {
        k: v for k, v in reward.metrics.items() if k not in ("reliability",)
    }
    report["weights"] = {
        "from_ratings": int(sum(rated)),
        "from_reward_model": int(len(rated) - sum(rated)),
        "reward_weighted": f"((rating - 1) / 2) ** {config.weight_power}, "
        f"reward ** {config.weight_power} where unrated",
        "filtered": f"1 where rated 3 (unrated: reward >= {config.filter_reward}), "
        "else 0",
        "equal_weights": "1 for every image (control)",
        "filtered_weights": "the filtered weights, every image kept in the "
        "batches with its loss scaled (no filter_threshold)",
        "applied_as": config.weighting,
        "normalisation": "each prompt's weights average 1"
        if config.normalise == "prompt"
        else "none: the raw weights",
    }

    samples_rows: list[tuple[Any, ...]] = [
        ("before", s.path.relative_to(out), s.prompt, s.modality, s.seed, s.rating)
        for s in before
    ]
    report["before"] = rating_summary(
        [s.rating for s in before], [s.modality for s in before]
    )
    before_3 = [s.rating == 3 for s in before]
    report["variants"] = {}
    tuned_dirs: dict[str, Path] = {}
    after_by_variant: dict[str, list[Sample]] = {}
    skipped: dict[str, str] = {}
    for variant in config.variants:
        weights = variant_weights(before, rated, variant, config)
        report.setdefault("weight_mass", {})[variant] = weight_mass(
            weights, [s.rating for s in before], rated
        )
        if not any(w > 0 for w in weights):
            # A filter that keeps nothing has nothing to train on.
            skipped[variant] = "no image qualifies (every weight is 0)"
            continue
        weights_csv = _write_csv(
            out / f"weights_{variant}.csv",
            ("path", "Text", "modality", "weight"),
            [
                (str(s.path.relative_to(out)), s.prompt, s.modality, f"{w:.6f}")
                for s, w in zip(before, weights, strict=True)
            ],
        )
        with timer.step(f"finetune_{variant}"):
            tuned = finetune(
                TrainConfig(
                    weights_csv=str(weights_csv),
                    real_csv=str(real_csv),
                    beta=config.beta,
                    model_path=str(base_dir),
                    output_dir=str(out / f"finetuned_{variant}"),
                    max_steps=config.finetune_steps,
                    learning_rate=config.finetune_lr,
                    lr_scheduler="constant",
                    filter_threshold=0.5 if variant == "filtered" else None,
                    weighting=config.weighting,
                    **{**common, "lr_warmup_steps": config.finetune_warmup},
                )
            )
        assert tuned.final_dir is not None
        tuned_dirs[variant] = tuned.final_dir
        if variant == config.variants[0] and config.best_of > 1:
            continue  # its "after" set is candidate 0 of best-of-N below
        with timer.step(f"generate_after_{variant}"):
            after_by_variant[variant] = _generate_and_rate(
                load_backend(tuned.final_dir),
                requests,
                rater,
                out / f"after_{variant}",
                config,
            )

    main_variant = config.variants[0]
    kept_ratings: list[int] = []
    kept: list[Any] = []
    if config.best_of > 1 and main_variant in tuned_dirs:
        with timer.step(f"best_of_{config.best_of}"):
            filtered = filter_generate(
                load_backend(tuned_dirs[main_variant]),
                reward.model,
                requests,
                mode="best_of_n",
                n=config.best_of,
                steps=config.sample_steps,
                guidance=config.guidance,
                scheduler=config.scheduler,
                batch_size=config.batch_size,
            )
            candidates = sorted(
                filtered.kept + filtered.rejected,
                key=lambda c: (c.request_index, c.attempt),
            )
            candidate_ratings = rater.rate(
                [c.image for c in candidates], [c.modality for c in candidates]
            )
            paths = _save([c.image for c in candidates], out / "candidates")
            rating_of = {
                (c.request_index, c.attempt): (r, p)
                for c, r, p in zip(candidates, candidate_ratings, paths, strict=True)
            }
            after_by_variant[main_variant] = [
                Sample(
                    path=rating_of[(i, 0)][1],
                    prompt=r.prompt,
                    modality=r.modality,
                    seed=r.seed,
                    rating=rating_of[(i, 0)][0],
                )
                for i, r in enumerate(requests)
            ]
            kept = filtered.kept
            kept_ratings = [rating_of[(k.request_index, k.attempt)][0] for k in kept]
            samples_rows += [
                (
                    f"candidates_{main_variant}",
                    p.relative_to(out),
                    c.prompt,
                    c.modality,
                    c.seed,
                    r,
                )
                for c, r, p in zip(candidates, candidate_ratings, paths, strict=True)
            ]
    for variant in config.variants:
        if variant in skipped:
            report["variants"][variant] = {"skipped": skipped[variant]}
            continue
        after = after_by_variant[variant]
        entry = rating_summary([s.rating for s in after], [s.modality for s in after])
        entry["vs_before"] = mcnemar_exact(before_3, [s.rating == 3 for s in after])
        control = after_by_variant.get(CONTROL)
        if variant != CONTROL and control is not None:
            # Same seeds, same fine-tuning, only the weights differ: this is
            # the test of what the feedback adds over fine-tuning by itself.
            entry["vs_control"] = mcnemar_exact(
                [s.rating == 3 for s in control], [s.rating == 3 for s in after]
            )
        entry["finetune_dir"] = str(tuned_dirs[variant])
        report["variants"][variant] = entry
        if variant != main_variant or config.best_of <= 1:
            samples_rows += [
                (
                    f"after_{variant}",
                    s.path.relative_to(out),
                    s.prompt,
                    s.modality,
                    s.seed,
                    s.rating,
                )
                for s in after
            ]
    if kept:
        best = rating_summary(kept_ratings, [k.modality for k in kept])
        best["filter_stats"] = filtered.stats
        best["of_variant"] = main_variant
        best["vs_after"] = mcnemar_exact(
            [s.rating == 3 for s in after_by_variant[main_variant]],
            [r == 3 for r in kept_ratings],
        )
        best["vs_before"] = mcnemar_exact(before_3, [r == 3 for r in kept_ratings])
        best["all_candidates"] = rating_summary(
            candidate_ratings, [c.modality for c in candidates]
        )
        report["best_of_n"] = best
    _write_csv(
        out / "samples.csv",
        ("set", "path", "prompt", "modality", "seed", "rating"),
        samples_rows,
    )
    report["seconds"] = timer.seconds
    report["seconds"]["total"] = round(sum(timer.seconds.values()), 2)
    report["load_average_end"] = _load_average()

    show = min(4, config.images_per_prompt)
    after_main = after_by_variant.get(main_variant, before)
    rows = []
    for p, (text, _) in enumerate(prompts):
        lo = p * config.images_per_prompt
        span = range(lo, lo + show)
        groups = [
            [(Image.open(before[i].path), before[i].rating) for i in span],
            [(Image.open(after_main[i].path), after_main[i].rating) for i in span],
        ]
        if kept:
            groups.append([(kept[i].image, kept_ratings[i]) for i in span])
        rows.append((text, groups))
    report["grid"] = str(_grid(rows, out / "grid.png"))
    report["prompts"] = [text for text, _ in prompts]
    (out / "report.json").write_text(
        json.dumps(report, indent=2, default=_json_default)
    )
    (out / "report.md").write_text(markdown_report(report))
    return report


def _load_average() -> list[float] | None:
    import os

    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(values, default=_json_default))


def _share_line(name: str, summary: dict[str, Any], test: str = "") -> str:
    low, high = summary["share_3_wilson95"]
    share = summary["share_3"] or 0.0
    return (
        f"| {name} | {summary['n']} | {summary['rated_3']} | {share:.3f} | "
        f"[{low:.3f}, {high:.3f}] | {summary['mean_rating']:.2f} | {test} |"
    )


def _test_cell(test: dict[str, Any] | None, against: str) -> str:
    if not test:
        return ""
    return (
        f"vs {against}: +{test['gained']} / -{test['lost']}, p = {test['p_value']:.3g}"
    )


VARIANT_NAMES = {
    "reward_weighted": "after one round, reward-weighted",
    "filtered": "after one round, filtered (rated 3 only)",
    "equal_weights": "after one round, equal weights (control)",
    "filtered_weights": "after one round, filtered weights, no rows dropped",
}


def markdown_report(report: dict[str, Any]) -> str:
    """The headline table and the side facts, as Markdown."""
    reward = report["reward_model"]
    rater = report["rater"]
    lines = [
        "# Simulated-rater experiment",
        "",
        "| set | n | rated 3 | share 3 | Wilson 95 % | mean rating "
        "| paired McNemar (seeds gained / lost) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        _share_line("before (base model)", report["before"]),
    ]
    for variant, entry in report["variants"].items():
        if "skipped" in entry:
            lines.append(
                f"| {VARIANT_NAMES.get(variant, variant)} | skipped: "
                f"{entry['skipped']} | | | | | |"
            )
            continue
        lines.append(
            _share_line(
                VARIANT_NAMES.get(variant, variant),
                entry,
                "; ".join(
                    cell
                    for cell in (
                        _test_cell(entry.get("vs_before"), "before"),
                        _test_cell(entry.get("vs_control"), "control"),
                    )
                    if cell
                ),
            )
        )
    best = report.get("best_of_n")
    if best:
        n = best["filter_stats"]["n"]
        lines.append(
            _share_line(
                f"best of {n} by reward, {best['of_variant']} model",
                best,
                _test_cell(best.get("vs_after"), "its unfiltered set")
                + "; "
                + _test_cell(best.get("vs_before"), "before"),
            )
        )
        lines.append(
            _share_line(
                f"all {n} candidates of that model (no filter)", best["all_candidates"]
            )
        )
    per_modality = ["", "Rated 3 per modality:", ""]
    sets = [("before", report["before"])] + [
        (v, e) for v, e in report["variants"].items() if "skipped" not in e
    ]
    if best:
        sets.append((f"best_of_{best['filter_stats']['n']}", best))
    for name, entry in sets:
        cells = ", ".join(
            f"{m} {c['rated_3']}/{c['n']}" for m, c in entry["per_modality"].items()
        )
        per_modality.append(f"- {name}: {cells}")
    lines += per_modality
    masses = report.get("weight_mass") or {}
    if masses:
        lines += [
            "",
            "Where each fine-tune's synthetic weight went (share of weight on the "
            "images the program rates 1 / 2 / 3; in brackets the same among the "
            "images the physician did not rate, and the share of weight those "
            "carry; Kish effective n):",
            "",
        ]
        for variant, mass in masses.items():
            every = mass["share_by_rating"]
            unrated = mass["unrated_share_by_rating"]
            lines.append(
                f"- {VARIANT_NAMES.get(variant, variant)}: "
                + " / ".join(f"{every[k]:.2f}" for k in ("1", "2", "3"))
                + " (unrated "
                + " / ".join(f"{unrated[k]:.2f}" for k in ("1", "2", "3"))
                + f", {mass['unrated_weight_share']:.2f} of the weight); "
                f"effective n {mass['effective_n']:.0f} of {mass['n']}"
            )
    lines += [
        "",
        f"Rater: {rater['kind']}; held-out accuracy {rater['heldout_accuracy']:.3f} "
        f"on {rater['n_heldout']} real images; held-out real images rated 3: "
        f"{rater['heldout_real_share_3']:.3f}.",
        "",
        "Reward model held-out (split by prompt): "
        + ", ".join(
            f"{k} {reward[k]:.3f}"
            for k in ("spearman", "auc_rated_3", "kappa_quadratic", "ece", "accuracy")
            if isinstance(reward.get(k), int | float)
        )
        + f"; {reward.get('n_ratings')} ratings.",
        "",
        "Seconds per step: "
        + ", ".join(f"{k} {v:.1f}" for k, v in report["seconds"].items()),
        f"Load average (1, 5, 15 min) at start {report.get('load_average_start')}, "
        f"at end {report.get('load_average_end')}.",
        "",
        f"Samples: `{report['grid']}` (rows: prompts; red digit: the rating).",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m research.simulated_raters",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--output_dir", required=True, type=Path, help="results folder")
    parser.add_argument(
        "--quick", action="store_true", help="test-size run (about a minute)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every step")
    parser.add_argument(
        "--base_model",
        type=Path,
        help="reuse this trained tiny model folder instead of training a base",
    )
    parser.add_argument(
        "--guidance",
        type=float,
        help="classifier-free guidance of every sampling step (default 1: none)",
    )
    parser.add_argument(
        "--images_per_prompt",
        type=int,
        help="images per prompt in every set (default 24; 3 with --quick); the "
        "rated share of them also trains the reward model and the fine-tunes",
    )
    parser.add_argument(
        "--weight_power",
        type=float,
        help="reward-weighted raw weight = ((rating - 1) / 2) ** power, reward ** "
        "power where unrated (default 4): larger is sharper, closer to filtering",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANTS,
        help="fine-tunes to run, the first is the headline one that best-of-N "
        f"draws from (default: {' '.join(VARIANTS)})",
    )
    parser.add_argument(
        "--best_of",
        type=int,
        help="candidates per request for the best-of-N set (default 4; 1: none)",
    )
    parser.add_argument(
        "--weighting",
        choices=("loss", "sample"),
        help="how the fine-tunes apply the weights: sample (default, as the "
        "platform: batches drawn in proportion to the weights) or loss (scaled "
        "losses, the setting of the figures reported before session 4)",
    )
    parser.add_argument(
        "--normalise",
        choices=("prompt", "none"),
        help="prompt: each prompt's weights average 1 (default, as the platform "
        "does); none: the raw weights",
    )
    args = parser.parse_args(argv)
    if args.weight_power is not None and args.weight_power <= 0:
        parser.error(f"--weight_power must be above 0, got {args.weight_power}")
    if args.best_of is not None and args.best_of < 1:
        parser.error(f"--best_of must be at least 1, got {args.best_of}")
    if args.images_per_prompt is not None and args.images_per_prompt < 1:
        parser.error(
            f"--images_per_prompt must be at least 1, got {args.images_per_prompt}"
        )
    config = (
        quick_config(args.output_dir)
        if args.quick
        else ExperimentConfig(output_dir=args.output_dir)
    )
    config.seed = args.seed
    config.base_model = args.base_model
    if args.guidance is not None:
        config.guidance = args.guidance
    if args.images_per_prompt is not None:
        config.images_per_prompt = args.images_per_prompt
    if args.weight_power is not None:
        config.weight_power = args.weight_power
    if args.variants:
        config.variants = tuple(dict.fromkeys(args.variants))
    if args.best_of is not None:
        config.best_of = args.best_of
    if args.normalise:
        config.normalise = args.normalise
    if args.weighting:
        config.weighting = args.weighting
    report = run_experiment(config)
    print(markdown_report(report))
    return report


if __name__ == "__main__":
    main()
