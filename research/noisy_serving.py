"""Serving order with noisy physicians: the product's policies, rating by rating.

``active_learning`` reveals one noise-free rating per image. A real round has
several physicians who disagree, and an image is rated by up to
``raters_per_image`` of them, so "most informative first" can also spend a
rating where physicians disagree. Here three simulated physicians of known
noise (with probability ``p`` a rating moves one level: 1 and 3 to 2, 2 to 1
or 3) take turns, and each rating goes to an image by one of three policies:

- **random**: any image this physician has not rated and that has fewer than
  ``raters_per_image`` ratings, uniformly (the product's random order);
- **coverage**: the same, fewest ratings first (random within a tier): the
  first tier of the product's uncertainty policy alone;
- **informative**: fewest ratings first, then the largest ensemble variance
  plus the physicians' score variance / 4, as the product's
  ``models.informativeness`` orders a round;
- **mixed**: each rating a coin toss (``mix_share`` heads): heads as
  ``informative``, tails as ``random``;
- **warmup**: ``random`` until ``warmup_share`` of the round's images have a
  rating, then ``informative``;
- **balanced**: ``informative`` within one modality at a time: the modality
  whose share of the round's ratings so far lags its share of the round's
  images most (ties at random), so the most uncertain images cannot all come
  from one modality.

The ensemble spread that orders ``informative`` is either re-scored after
every batch by the model retrained on the ratings so far (``--spread batch``)
or scored once, at the round's start, by the earlier round's model and kept
(``--spread round``), as the product's scoring job does unless an admin
scores the round again.

Every rating is a training row (as the platform trains on every first
rating). After each batch the ensemble is retrained and scored on held-out
images by Spearman's rho against the program's own (noise-free) rating. The
split, the earlier round's ratings and the physicians' noise are those of
``active_learning``'s next-round scenario; seeds are paired.

    python -m research.noisy_serving \\
        --source_dir runs/active_pool --output_dir runs/noisy \\
        [--first_seed 100 --seeds 5] [--noise 0.1 0.2 0.3] [--budget 240] \\
        [--spread batch|round] [--policies random informative mixed ...]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .active_learning import (
    ActiveConfig,
    Pool,
    _fit_and_predict,
    _spearman,
    add_curve_arguments,
    apply_curve_arguments,
    curve_table,
    plot_curves,
    reach_table,
    round_split,
    run_from_command_line,
    summarise_runs,
)

POLICIES = ("informative", "coverage", "random", "mixed", "warmup", "balanced")
DEFAULT_POLICIES = ("informative", "coverage", "random")
SPREADS = ("batch", "round")


@dataclass
class NoisyConfig:
    output_dir: Path
    noise: tuple[float, ...] = (0.1, 0.2, 0.3)
    raters_per_image: int = 2
    batch: int = 12
    budget: int = 240
    seeds: tuple[int, ...] = tuple(range(10))
    policies: tuple[str, ...] = DEFAULT_POLICIES
    spread: str = "batch"
    mix_share: float = 0.5
    warmup_share: float = 0.25
    # From random's curve on the development seeds (100-104), fixed before
    # the reported seeds ran.
    targets: tuple[float, ...] = (0.45, 0.5, 0.55)
    active: ActiveConfig = field(
        default_factory=lambda: ActiveConfig(
            output_dir=Path("."), warm_sets=("base_10", "base_20"), warm_ratings=120
        )
    )


def noisy_score(true: int, p: float, rng: np.random.Generator) -> int:
    """The program's rating, moved one level with probability ``p``."""
    if rng.random() >= p:
        return int(true)
    if true != 2:
        return 2
    return 1 if rng.random() < 0.5 else 3


def lagging_modality(
    eligible: np.ndarray,
    modality: np.ndarray,
    round_idx: np.ndarray,
    counts: np.ndarray,
    rng: np.random.Generator,
) -> int:
    """Of the modalities ``eligible`` images have, the one whose share of the
    round's ratings lags its share of the round's images most."""
    present = np.unique(modality[eligible])
    images = np.array([(modality[round_idx] == m).sum() for m in present])
    rated = np.array(
        [counts[round_idx][modality[round_idx] == m].sum() for m in present]
    )
    lag = rated / max(counts[round_idx].sum(), 1) - images / len(round_idx)
    return int(rng.choice(present[lag <= lag.min() + 1e-12]))


def pick_image(
    policy: str,
    eligible: np.ndarray,
    counts: np.ndarray,
    informativeness: np.ndarray,
    rng: np.random.Generator,
    modality: np.ndarray | None = None,
    round_idx: np.ndarray | None = None,
) -> int:
    """One image of ``eligible`` (pool indices) by ``policy`` (``random``,
    ``coverage``, ``informative`` or ``balanced``, which needs each image's
    ``modality`` and the round's images ``round_idx``; ``serving_key`` maps
    the other hybrids to one of these for each rating)."""
    if policy == "random":
        return int(rng.choice(eligible))
    if policy == "balanced":
        if modality is None or round_idx is None:
            raise ValueError("balanced needs modality and round_idx")
        chosen = lagging_modality(eligible, modality, round_idx, counts, rng)
        eligible = eligible[modality[eligible] == chosen]
        policy = "informative"
    tier = eligible[counts[eligible] == counts[eligible].min()]
    if policy == "coverage":
        return int(rng.choice(tier))
    if policy == "informative":
        best = informativeness[tier].max()
        return int(rng.choice(tier[informativeness[tier] >= best - 1e-12]))
    raise ValueError(f"policy {policy!r}: use one of {POLICIES}")


def serving_key(
    policy: str,
    config: NoisyConfig,
    rated_share: float,
    rng: np.random.Generator,
) -> str:
    """The plain policy that serves the next rating: a hybrid's choice for
    this rating (``rated_share``: the share of the round's images that have a
    rating), any other policy itself."""
    if policy == "mixed":
        return "informative" if rng.random() < config.mix_share else "random"
    if policy == "warmup":
        return "random" if rated_share < config.warmup_share else "informative"
    return policy


def score_variance(scores: list[list[int]]) -> np.ndarray:
    """Each image's variance of its scores (0 below two), ``s²`` in the
    product's ``(n Σx² - (Σx)²) / n²``."""
    out = np.zeros(len(scores))
    for i, mine in enumerate(scores):
        if len(mine) > 1:
            out[i] = float(np.var(mine))
    return out


def run_policy(
    pool: Pool, config: NoisyConfig, *, policy: str, seed: int
) -> dict[str, Any]:
    before, pool_idx, held_idx = round_split(pool, config.active, seed)
    n_raters = len(config.noise)
    noise_rng = np.random.default_rng(seed + 30_000)
    warm_scores = np.array(
        [
            noisy_score(pool.ratings[i], config.noise[k % n_raters], noise_rng)
            for k, i in enumerate(before)
        ]
    )
    # Each physician's noise draws are their own stream, the same for every
    # policy: a policy changes which images they see, not how they err.
    rater_rngs = [np.random.default_rng([seed, 40_000 + r]) for r in range(n_raters)]
    modality = pool.modality.argmax(axis=1)
    pick_rng = np.random.default_rng(seed + 50_000)
    coin_rng = np.random.default_rng(seed + 60_000)
    spread = np.zeros(len(pool.ratings))
    scored = False
    served_by: dict[str, int] = {}
    picks: list[dict[str, Any]] = []
    counts = np.zeros(len(pool.ratings), dtype=np.int64)
    scores: list[list[int]] = [[] for _ in range(len(pool.ratings))]
    rated_by = [set() for _ in range(n_raters)]
    rows: list[int] = []
    row_scores: list[int] = []
    informativeness = np.zeros(len(pool.ratings))
    points: list[dict[str, Any]] = []
    budget = min(config.budget, len(pool_idx) * config.raters_per_image)
    turn = 0
    while True:
        train_idx = np.concatenate([before, np.array(rows, dtype=np.int64)])
        train_scores = np.concatenate([warm_scores, np.array(row_scores)])
        predict_idx = np.concatenate([held_idx, pool_idx])
        pred, _ = _fit_and_predict(
            pool,
            train_idx,
            predict_idx,
            config.active,
            seed,
            train_ratings=train_scores.astype(np.int64),
        )
        rho = _spearman(pred.reward[: len(held_idx)], pool.ratings[held_idx])
        points.append(
            {
                "n_ratings": len(rows),
                "spearman": rho,
                "distinct_images": int((counts > 0).sum()),
                "most_ratings_of_an_image": int(counts.max()),
            }
        )
        if len(rows) >= budget:
            break
        if not scored or config.spread == "batch":
            spread[pool_idx] = pred.uncertainty[len(held_idx) :]
            scored = True
        informativeness[pool_idx] = (
            spread[pool_idx] ** 2 + score_variance([scores[i] for i in pool_idx]) / 4
        )
        served_before = len(rows)
        for _ in range(min(config.batch, budget - len(rows))):
            rater = turn % n_raters
            turn += 1
            eligible = pool_idx[
                (counts[pool_idx] < config.raters_per_image)
                & ~np.isin(pool_idx, list(rated_by[rater]))
            ]
            if len(eligible) == 0:
                continue
            key = serving_key(
                policy, config, float((counts[pool_idx] > 0).mean()), coin_rng
            )
            served_by[key] = served_by.get(key, 0) + 1
            image = pick_image(
                key,
                eligible,
                counts,
                informativeness,
                pick_rng,
                modality=modality,
                round_idx=pool_idx,
            )
            picks.append(
                {
                    "image": image,
                    "by": key,
                    "informativeness": round(float(informativeness[image]), 6),
                }
            )
            score = noisy_score(
                pool.ratings[image], config.noise[rater], rater_rngs[rater]
            )
            counts[image] += 1
            scores[image].append(score)
            rated_by[rater].add(image)
            rows.append(image)
            row_scores.append(score)
            # Disagreement is live, as the product's running sums are.
            informativeness[image] = (
                spread[image] ** 2 + score_variance([scores[image]])[0] / 4
            )
        if len(rows) == served_before:
            break  # no physician has an image left to rate
    return {
        "strategy": policy,
        "seed": seed,
        "n_pool": int(len(pool_idx)),
        "served_by": served_by,
        "points": points,
        "picks": picks,
    }


def run_experiment(
    pool: Pool, config: NoisyConfig, facts: dict[str, Any] | None = None
) -> dict[str, Any]:
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    runs = []
    for seed in config.seeds:
        for policy in config.policies:
            runs.append(run_policy(pool, config, policy=policy, seed=seed))
        print(f"[noisy_serving] seed {seed} done", flush=True)
    summary = summarise_runs(runs, config.targets)
    report = {
        "config": {
            "noise": list(config.noise),
            "raters_per_image": config.raters_per_image,
            "batch": config.batch,
            "budget": config.budget,
            "seeds": list(config.seeds),
            "policies": list(config.policies),
            "spread": config.spread,
            "mix_share": config.mix_share,
            "warmup_share": config.warmup_share,
            "targets": list(config.targets),
            "warm_sets": list(config.active.warm_sets),
            "warm_ratings": config.active.warm_ratings,
        },
        "pool": facts or {},
        "summary": summary,
        "runs": runs,
        "seconds": round(time.perf_counter() - started, 1),
    }
    report["plot"] = str(plot_curves(summary, out / "curves.png"))
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown_report(report))
    return report


_SPREAD_WORDS = {
    "batch": "the ensemble spread re-scored after every batch",
    "round": "the ensemble spread scored once, by the earlier round's model",
}


def markdown_report(report: dict[str, Any]) -> str:
    cfg = report["config"]
    distinct: dict[tuple[str, int], list[int]] = {}
    for run in report["runs"]:
        for p in run["points"]:
            key = (run["strategy"], p["n_ratings"])
            distinct.setdefault(key, []).append(p["distinct_images"])

    def images(strategy: str, n: int) -> str:
        seen = distinct.get((strategy, n))
        return f", {np.mean(seen):.0f} images" if seen else ""

    lines = [
        "# Serving order with noisy physicians",
        "",
        f"Physicians' noise {cfg['noise']}, {cfg['raters_per_image']} raters "
        f"per image, {_SPREAD_WORDS[cfg.get('spread', 'batch')]}; "
        f"the reward model starts from {cfg['warm_ratings']} noisy "
        f"ratings of {', '.join(cfg['warm_sets'])}. Held-out Spearman rho "
        f"against the noise-free rating, mean ± 95 % interval over "
        f"{len(cfg['seeds'])} seeds; in brackets the paired difference from "
        "random; then the distinct images rated (mean over seeds).",
        "",
        *curve_table(report["summary"], images),
        *reach_table(report["summary"], cfg["targets"]),
        "",
        f"{report['seconds']} s.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m research.noisy_serving",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--source_dir", required=True, type=Path, help="a pool")
    parser.add_argument("--output_dir", required=True, type=Path)
    parser.add_argument(
        "--first_seed",
        type=int,
        default=0,
        help="seeds run from here (0: the reported seeds; 100: development)",
    )
    parser.add_argument("--seeds", type=int, default=10, help="number of seeds")
    parser.add_argument(
        "--noise", type=float, nargs="+", help="one per physician (default 0.1 0.2 0.3)"
    )
    parser.add_argument(
        "--policies",
        nargs="+",
        choices=POLICIES,
        help=f"default: {' '.join(DEFAULT_POLICIES)}",
    )
    parser.add_argument(
        "--spread",
        choices=SPREADS,
        default="batch",
        help="re-score the ensemble spread after every batch, or once per round "
        "as the product does (default batch)",
    )
    parser.add_argument(
        "--mix_share",
        type=float,
        help="mixed: share of ratings served most informative first (default 0.5)",
    )
    parser.add_argument(
        "--warmup_share",
        type=float,
        help="warmup: share of the round's images rated in random order first "
        "(default 0.25)",
    )
    add_curve_arguments(parser, NoisyConfig(output_dir=Path(".")))
    parser.add_argument("--quick", action="store_true", help="test-size run")
    args = parser.parse_args(argv)
    config = NoisyConfig(
        output_dir=args.output_dir,
        seeds=tuple(range(args.first_seed, args.first_seed + args.seeds)),
    )
    if args.noise:
        if any(not 0 <= p <= 1 for p in args.noise):
            parser.error("--noise values must lie in [0, 1]")
        config.noise = tuple(args.noise)
    for name in ("mix_share", "warmup_share"):
        value = getattr(args, name)
        if value is not None:
            if not 0 <= value <= 1:
                parser.error(f"--{name} must lie in [0, 1]")
            setattr(config, name, value)
    if args.policies:
        if "random" not in args.policies:
            parser.error(
                "--policies must include random: every curve is paired with it"
            )
        config.policies = tuple(dict.fromkeys(args.policies))
    config.spread = args.spread
    apply_curve_arguments(parser, args, config)
    if args.quick:
        config.budget, config.batch = min(config.budget, 24), 6
        config.active.ensemble_size, config.active.epochs = 2, 20
    return run_from_command_line(
        parser, args.source_dir, config, run_experiment, markdown_report
    )


if __name__ == "__main__":
    main()
