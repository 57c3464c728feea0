"""Simulated-rater active learning: does serving by spread need fewer ratings?

The same task as ``simulated_raters``: a program rates generated images 1-3.
A pool of generated images is rated by the program, but a rating is only
"revealed" when the loop asks for it. Starting from a small random batch, the
reward ensemble is retrained after every batch of ratings, and the next batch
is chosen either

- by **uncertainty**: the unrated images with the largest ensemble spread
  (``RewardPrediction.uncertainty``, the std of the members' rewards),
- by **uncertainty_batch**: random until ``warmup`` ratings are in (the same
  picks as ``random``), then a greedy batch on spread x label entropy,
  discounted for closeness to rated or already-chosen images, one image per
  generation seed,
- by **uncertainty_per_prompt**: the largest spread per prompt in turn,
- by **vote_entropy**: query-by-committee disagreement on the rating class
  (entropy of the members' votes, ties by the entropy of the mean
  prediction); **vote_entropy_stratified** takes the same score within each
  predicted rating, the batch shared out in proportion to the unrated
  images' predicted ratings; **vote_entropy_mixed** takes half the batch by
  vote entropy and half at random,
- by **uncertainty_sampled**: drawn without replacement with probability
  proportional to the spread (power acquisition with exponent 1), so the
  most uncertain images are the likeliest picks but a batch still covers the
  pool,
- by **uncertainty_weighted**: drawn in proportion to the spread mixed half
  and half with an even draw, each rating then weighted by the inverse of
  its draw probability (relative to an even draw) when the reward model
  trains, so that the model learns the pool's distribution, not the
  spread's (importance-weighted active learning),
- by **design**: greedy Bayesian experimental design (``design.py``): the
  images whose ratings most reduce a Gaussian-kernel model's predictive
  variance summed over every servable image, the rated images (and free
  negatives) as what is already known, or
- at **random**.

After every batch the ensemble is scored on a held-out set (images whose seeds
never enter the pool, so near-duplicates cannot leak) by Spearman's rho between
predicted reward and the program's rating. Several seeds, paired (a seed fixes
the split and the first batch for every strategy); curves with 95 % intervals
and paired differences from random, and the ceiling (every pool image rated),
written to ``report.json`` / ``report.md`` and drawn to ``curves.png``.

Two scenarios. **Cold start** (the default): nothing is rated, a random
first batch trains the first ensemble. **Next round** (``--warm_sets``), the
product's own case: uncertainty serving needs a reward model, so a round that
uses it follows an earlier one. The ensemble starts from ``--warm_ratings``
ratings of the warm sets' images (an earlier round's model versions); the
round serves only the other sets' images (the new versions), from its first
image on, and rho is measured on those sets' held-out images.

Image features and prompt embeddings are computed once; each retrain is the
reward head alone (seconds).

    python -m research.active_learning \
        --source_dir DIR_OF_A_SIMULATED_RATERS_RUN_OR_ACTIVE_POOL \
        --output_dir DIR [--quick] [--first_seed 100 --seeds 5] \
        [--warm_sets base_10 base_20 --warm_ratings 120]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

STRATEGIES = (
    "uncertainty",
    "uncertainty_per_prompt",
    "uncertainty_batch",
    "vote_entropy",
    "vote_entropy_stratified",
    "vote_entropy_mixed",
    "uncertainty_sampled",
    "uncertainty_weighted",
    "design",
    "random",
)
DEFAULT_STRATEGIES = ("uncertainty", "uncertainty_sampled", "random")


@dataclass
class ActiveConfig:
    output_dir: Path
    initial: int = 12
    batch: int = 12
    budget: int = 120
    seeds: tuple[int, ...] = tuple(range(10))
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    # uncertainty_batch serves at random (the same picks as `random`) until this
    # many ratings are in: a cold-start ensemble's spread marks outliers.
    warmup: int = 36
    heldout_fraction: float = 0.3
    targets: tuple[float, ...] = (0.5, 0.6, 0.7)
    ensemble_size: int = 5
    epochs: int = 200
    # The next-round scenario (the product's own): the reward model already
    # holds ``warm_ratings`` ratings of images from ``warm_sets`` (an earlier
    # round's model versions); the round serves the other sets' images, and
    # rho is measured on those sets' held-out images. Empty: a cold start.
    warm_sets: tuple[str, ...] = ()
    warm_ratings: int = 120
    # The design strategy: ridge (prior ratings' worth per direction), a
    # Gaussian kernel (random Fourier features) or the linear head inputs, and
    # the kernel's length scale (None: the median distance between images).
    # uncertainty_weighted: the share of each draw spread evenly.
    uniform_share: float = 0.5
    design_ridge: float = 1.0
    design_kernel: bool = True
    design_length: float | None = None


@dataclass
class Pool:
    """Everything the loop needs, as arrays: computed once per run."""

    image: np.ndarray  # (N, F) image features
    prompt: np.ndarray  # (N, D) prompt embeddings
    modality: np.ndarray  # (N, B) hashed modality one-hots
    ratings: np.ndarray  # (N,) the program's ratings, 1..3
    group: np.ndarray  # (N,) generation seed: held-out split unit
    negatives: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    negative_weight: float = 0.3
    sets: np.ndarray | None = None  # (N,) which generator made each image


def round_split(
    pool: Pool, config: ActiveConfig, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (rated before the round, servable, held out) for one seed.

    Cold start: nothing rated before, the servable and held-out sides of the
    seed-group split. Next round: a random ``warm_ratings`` of the warm sets'
    servable images were rated in the earlier round; the round serves the
    other sets' servable images and is scored on their held-out images.
    """
    pool_idx, held_idx = split_heldout(pool.group, config.heldout_fraction, seed)
    if not config.warm_sets:
        return np.empty(0, dtype=np.int64), pool_idx, held_idx
    if pool.sets is None:
        raise ValueError("warm_sets needs a pool whose images name their set")
    unknown = sorted(set(config.warm_sets) - set(pool.sets.tolist()))
    if unknown:
        raise ValueError(
            f"warm_sets {unknown} are not in the pool (sets: "
            f"{sorted(set(pool.sets.tolist()))})"
        )
    warm = np.isin(pool.sets, config.warm_sets)
    if warm.all():
        raise ValueError("warm_sets take every set: the round has nothing to serve")
    rng = np.random.default_rng(seed + 20_000)
    before = rng.permutation(pool_idx[warm[pool_idx]])[: config.warm_ratings]
    return np.sort(before), pool_idx[~warm[pool_idx]], held_idx[~warm[held_idx]]


# --- the loop -----------------------------------------------------------------


def select_by_spread(
    uncertainty: np.ndarray, candidates: np.ndarray, k: int
) -> np.ndarray:
    """The ``k`` candidates with the largest spread (ties by lower index)."""
    order = np.lexsort((candidates, -uncertainty[candidates]))
    return candidates[order[:k]]


def select_by_spread_per_prompt(
    uncertainty: np.ndarray,
    candidates: np.ndarray,
    k: int,
    prompt_ids: np.ndarray,
    groups: np.ndarray,
) -> np.ndarray:
    """Largest spread within each prompt, taking prompts in turn, one image per
    seed group: a batch spread over the prompts instead of piled on one corner
    of feature space where the members happen to disagree most."""
    order = candidates[np.lexsort((candidates, -uncertainty[candidates]))]
    queues = {
        p: [i for i in order if prompt_ids[i] == p]
        for p in sorted(set(prompt_ids[candidates].tolist()))
    }
    chosen: list[int] = []
    used_groups: set[int] = set()
    while len(chosen) < k and any(queues.values()):
        for queue in queues.values():
            while queue and int(groups[queue[0]]) in used_groups:
                queue.pop(0)
            if queue and len(chosen) < k:
                pick = queue.pop(0)
                chosen.append(int(pick))
                used_groups.add(int(groups[pick]))
        if all(not q for q in queues.values()) and len(chosen) < k:
            used_groups.clear()  # fewer groups than k: allow repeats
            queues = {
                p: [i for i in order if prompt_ids[i] == p and i not in chosen]
                for p in queues
            }
    return np.array(chosen, dtype=np.int64)


def label_entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy of the ensemble-mean P(rating = 1, 2, 3), scaled to [0, 1]."""
    p = np.clip(probs, 1e-12, 1.0)
    return -(p * np.log(p)).sum(-1) / math.log(probs.shape[-1])


def select_diverse_batch(
    score: np.ndarray,
    features: np.ndarray,
    candidates: np.ndarray,
    labelled_features: np.ndarray,
    k: int,
    groups: np.ndarray,
) -> np.ndarray:
    """Greedy batch: largest ``score`` x closeness discount, one image per group.

    The discount of a candidate is ``min(1, d / d_ref)``, ``d`` its distance to
    the nearest rated or already-chosen image and ``d_ref`` the median of those
    distances before the batch: near-duplicates of what is (or is about to be)
    rated lose their score, distinct images keep it. A seed group (the same
    generation seed: near-duplicate images) gives at most one image per batch
    while other groups remain.
    """
    feats = features[candidates]
    if len(labelled_features):
        d = np.sqrt(
            ((feats[:, None, :] - labelled_features[None, :, :]) ** 2).sum(-1)
        ).min(1)
    else:
        d = np.full(len(candidates), np.inf)
    finite = d[np.isfinite(d)]
    d_ref = float(np.median(finite)) if len(finite) and np.median(finite) > 0 else 1.0
    chosen: list[int] = []
    used_groups: set[int] = set()
    available = np.ones(len(candidates), dtype=bool)
    base = score[candidates]
    while len(chosen) < min(k, len(candidates)):
        value = base * np.minimum(1.0, d / d_ref)
        fresh = available & np.array(
            [int(g) not in used_groups for g in groups[candidates]]
        )
        mask = fresh if fresh.any() else available
        value = np.where(mask, value, -np.inf)
        best = int(np.lexsort((candidates, -value))[0])
        chosen.append(int(candidates[best]))
        available[best] = False
        used_groups.add(int(groups[candidates[best]]))
        step = np.sqrt(((feats - feats[best]) ** 2).sum(-1))
        d = np.minimum(d, step)
    return np.array(chosen, dtype=np.int64)


def vote_entropy(member_probs: np.ndarray) -> np.ndarray:
    """Query-by-committee disagreement on the rating class.

    Each ensemble member votes for its most likely rating; the score is the
    entropy of the votes, scaled by log 3. Unlike the spread of the members'
    expected ratings it is zero wherever the members name the same rating,
    however much their rewards differ inside it, so it asks only where a
    rating would change what the model says.
    """
    classes = member_probs.shape[-1]
    votes = member_probs.argmax(-1)  # (members, N)
    shares = np.stack([(votes == c).mean(0) for c in range(classes)], axis=-1)
    logs = np.log(np.where(shares > 0, shares, 1.0))
    return -(shares * logs).sum(-1) / math.log(classes)


def select_top(
    score: np.ndarray, tiebreak: np.ndarray, candidates: np.ndarray, k: int
) -> np.ndarray:
    """The ``k`` candidates with the largest ``score``, ties by ``tiebreak``."""
    order = np.lexsort((candidates, -tiebreak[candidates], -score[candidates]))
    return candidates[order[:k]]


def select_stratified(
    score: np.ndarray,
    tiebreak: np.ndarray,
    candidates: np.ndarray,
    k: int,
    strata: np.ndarray,
) -> np.ndarray:
    """Top-``score`` candidates within each stratum, ``k`` shared out in
    proportion to the strata's sizes among the candidates (largest
    remainder), so the batch has the candidates' mix of strata; a stratum too
    small for its share passes the rest to the overall top."""
    labels, sizes = np.unique(strata[candidates], return_counts=True)
    quota = sizes * k / sizes.sum()
    take = np.floor(quota).astype(int)
    for i in np.lexsort((labels, -(quota - take)))[: k - int(take.sum())]:
        take[i] += 1
    chosen: list[int] = []
    for label, n in zip(labels, take, strict=True):
        inside = candidates[strata[candidates] == label]
        chosen += select_top(score, tiebreak, inside, int(n)).tolist()
    if len(chosen) < k:
        rest = np.setdiff1d(candidates, chosen)
        chosen += select_top(score, tiebreak, rest, k - len(chosen)).tolist()
    return np.array(chosen, dtype=np.int64)


def importance_draw(spread: np.ndarray, uniform_share: float) -> np.ndarray:
    """Draw probabilities: ``uniform_share`` spread evenly, the rest in
    proportion to the spread. The even part bounds each importance weight
    ``1 / (n q)`` by ``1 / uniform_share``."""
    n = len(spread)
    total = float(np.clip(spread, 0.0, None).sum())
    if total <= 0:
        return np.full(n, 1.0 / n)
    return uniform_share / n + (1 - uniform_share) * np.clip(spread, 0.0, None) / total


def select_proportional(
    score: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """``k`` indices drawn without replacement, each draw with probability
    proportional to ``score`` among those left (uniform when all are 0)."""
    weights = np.clip(score, 0.0, None)
    if weights.sum() <= 0 or np.count_nonzero(weights) < k:
        weights = weights + 1e-12
    return rng.choice(len(score), size=k, replace=False, p=weights / weights.sum())


def split_heldout(
    groups: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (pool, heldout): whole seed groups go to one side."""
    unique = np.unique(groups)
    rng = np.random.default_rng(seed)
    held = set(
        rng.choice(
            unique, size=max(1, round(len(unique) * fraction)), replace=False
        ).tolist()
    )
    mask = np.array([g in held for g in groups.tolist()])
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def _fit_and_predict(
    pool: Pool,
    train_idx: np.ndarray,
    predict_idx: np.ndarray,
    config: ActiveConfig,
    seed: int,
    train_weights: np.ndarray | None = None,
    train_ratings: np.ndarray | None = None,
) -> tuple[Any, np.ndarray]:
    """Fit the ensemble on ``train_idx`` (each row at ``train_weights``,
    default 1, rated ``train_ratings``, default the pool's ratings; an image
    may repeat); its summary and ``[members, N, 3]`` probabilities on
    ``predict_idx``."""
    from models_ml.engine import RewardConfig, fit_ensemble, summarise_members

    image = pool.image[train_idx]
    prompt = pool.prompt[train_idx]
    modality = pool.modality[train_idx]
    ratings = pool.ratings[train_idx] if train_ratings is None else train_ratings
    weights = (
        np.ones(len(train_idx), dtype=np.float32)
        if train_weights is None
        else np.asarray(train_weights, dtype=np.float32)
    )
    if pool.negatives is not None:
        n_image, n_prompt, n_modality, n_ratings = pool.negatives
        image = np.concatenate([image, n_image])
        prompt = np.concatenate([prompt, n_prompt])
        modality = np.concatenate([modality, n_modality])
        ratings = np.concatenate([ratings, n_ratings])
        weights = np.concatenate(
            [weights, np.full(len(n_ratings), pool.negative_weight, np.float32)]
        )
    reward_config = RewardConfig(
        ensemble_size=config.ensemble_size, epochs=config.epochs, seed=seed
    )
    head, norm = fit_ensemble(
        image, prompt, modality, ratings.astype(np.int64), weights, reward_config, seed
    )
    import torch

    img, cond = norm.apply(
        pool.image[predict_idx], pool.prompt[predict_idx], pool.modality[predict_idx]
    )
    with torch.no_grad():
        member_probs = head.probs(img, cond)
    return summarise_members(member_probs), member_probs.numpy().astype(np.float64)


def head_inputs(
    pool: Pool, train_idx: np.ndarray, idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The reward head's inputs (normalised image features, prompt and
    modality) for ``idx`` and for the free negatives, with the normaliser
    fitted as training on ``train_idx`` fits it."""
    from models_ml.engine import FeatureNormaliser, RewardConfig

    parts = [(pool.image[train_idx], pool.prompt[train_idx])]
    if pool.negatives is not None:
        parts.append((pool.negatives[0], pool.negatives[1]))
    defaults = RewardConfig()
    norm = FeatureNormaliser.fit(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        image_dims=defaults.image_dims,
        prompt_dims=defaults.prompt_dims,
    )

    def inputs(image: np.ndarray, prompt: np.ndarray, modality: np.ndarray):
        img, cond = norm.apply(image, prompt, modality)
        return np.concatenate([img.numpy(), cond.numpy()], axis=1).astype(np.float64)

    wanted = inputs(pool.image[idx], pool.prompt[idx], pool.modality[idx])
    if pool.negatives is None:
        return wanted, np.empty((0, wanted.shape[1]))
    return wanted, inputs(*pool.negatives[:3])


def select_by_design(
    pool: Pool,
    labelled: np.ndarray,
    unlabelled: np.ndarray,
    servable: np.ndarray,
    k: int,
    config: ActiveConfig,
) -> np.ndarray:
    """The first ``k`` of :func:`.design.serving_order` over the unrated
    images: the rated ones (and free negatives, at their weight) are the
    prior, every servable image is a target."""
    from .design import kernel_features, serving_order

    phi, negatives = head_inputs(pool, labelled, np.concatenate([labelled, servable]))
    if config.design_kernel:
        both = np.concatenate([phi, negatives])
        mapped = kernel_features(
            both, reference=phi[len(labelled) :], length_scale=config.design_length
        )
        phi, negatives = mapped[: len(phi)], mapped[len(phi) :]
    rated = np.concatenate([phi[: len(labelled)], negatives])
    weights = np.concatenate(
        [np.ones(len(labelled)), np.full(len(negatives), pool.negative_weight)]
    )
    targets = phi[len(labelled) :]
    position = {int(i): j for j, i in enumerate(servable.tolist())}
    design = serving_order(
        targets[[position[int(i)] for i in unlabelled]],
        rated=rated,
        rated_weights=weights,
        targets=targets,
        ridge=config.design_ridge,
        limit=k,
    )
    return design.order[:k]


def _spearman(reward: np.ndarray, ratings: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.ptp(reward) == 0 or len(set(ratings.tolist())) < 2:
        return 0.0
    value = float(spearmanr(reward, ratings).statistic)
    return 0.0 if math.isnan(value) else value


def run_loop(
    pool: Pool,
    config: ActiveConfig,
    *,
    strategy: str,
    seed: int,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """One learning curve: held-out rho after each batch of revealed ratings."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r}: use one of {STRATEGIES}")
    before, pool_idx, held_idx = round_split(pool, config, seed)
    # Standardised image features + prompt embedding: the space in which
    # uncertainty_batch measures how close a candidate is to rated images.
    joint = np.concatenate([pool.image, pool.prompt], axis=1).astype(np.float64)
    joint = (joint - joint[pool_idx].mean(0)) / (joint[pool_idx].std(0) + 1e-8)
    joint /= math.sqrt(joint.shape[1])
    prompt_ids = np.unique(pool.prompt, axis=0, return_inverse=True)[1].ravel()
    rng = np.random.default_rng(seed)
    # The same first batch for every strategy at a given seed. A next round
    # starts from the earlier round's reward model: no random batch first.
    initial = 0 if len(before) else config.initial
    served = rng.permutation(pool_idx)[:initial]
    select_rng = np.random.default_rng(seed + 10_000)
    budget = min(config.budget, len(pool_idx))
    points: list[dict[str, Any]] = []
    picks: list[dict[str, Any]] = []
    # Importance weights of served images (uncertainty_weighted): 1 for a
    # random pick, 1 / (n q) for one drawn with probability q among n.
    served_weight = np.ones(len(served))
    while True:
        labelled = np.concatenate([before, served])
        unlabelled = np.setdiff1d(pool_idx, served)
        predict_idx = np.concatenate([held_idx, unlabelled])
        weights = np.concatenate([np.ones(len(before)), served_weight])
        pred, member_probs = _fit_and_predict(
            pool, labelled, predict_idx, config, seed, weights / weights.mean()
        )
        held_reward = pred.reward[: len(held_idx)]
        rho = _spearman(held_reward, pool.ratings[held_idx])
        # Does the spread know where the model is wrong? rho between each
        # held-out image's spread and its error (expected rating vs rating).
        error = np.abs(1 + 2 * held_reward - pool.ratings[held_idx])
        points.append(
            {
                "n_ratings": int(len(served)),
                "spearman": rho,
                "spread_error_rho": _spearman(pred.uncertainty[: len(held_idx)], error),
            }
        )
        if log:
            log(f"{strategy} seed {seed}: {len(served)} ratings, rho {rho:.3f}")
        if len(served) >= budget or len(unlabelled) == 0:
            break
        k = min(config.batch, budget - len(served), len(unlabelled))
        spread = pred.uncertainty[len(held_idx) :]
        if strategy == "uncertainty":
            local = select_by_spread(spread, np.arange(len(unlabelled)), k)
        elif strategy == "uncertainty_per_prompt":
            local = select_by_spread_per_prompt(
                spread,
                np.arange(len(unlabelled)),
                k,
                prompt_ids[unlabelled],
                pool.group[unlabelled],
            )
        elif strategy == "uncertainty_batch" and len(served) >= config.warmup:
            probs = pred.probs[len(held_idx) :]
            local = select_diverse_batch(
                spread * label_entropy(probs),
                joint[unlabelled],
                np.arange(len(unlabelled)),
                joint[labelled],
                k,
                pool.group[unlabelled],
            )
        elif strategy.startswith("vote_entropy"):
            probs = member_probs[:, len(held_idx) :]
            votes = vote_entropy(probs)
            consensus = label_entropy(probs.mean(0))
            everyone = np.arange(len(unlabelled))
            if strategy == "vote_entropy":
                local = select_top(votes, consensus, everyone, k)
            elif strategy == "vote_entropy_stratified":
                local = select_stratified(
                    votes, consensus, everyone, k, probs.mean(0).argmax(-1)
                )
            else:  # vote_entropy_mixed: half by disagreement, half at random
                top = select_top(votes, consensus, everyone, k // 2)
                rest = np.setdiff1d(everyone, top)
                local = np.concatenate(
                    [top, select_rng.choice(rest, size=k - len(top), replace=False)]
                )
        elif strategy == "uncertainty_sampled":
            local = select_proportional(spread, k, select_rng)
        elif strategy == "uncertainty_weighted":
            draw = importance_draw(spread, config.uniform_share)
            local = select_proportional(draw, k, select_rng)
            new_weight = 1.0 / (len(unlabelled) * draw[local])
        elif strategy == "design":
            local = select_by_design(pool, labelled, unlabelled, pool_idx, k, config)
        else:
            local = select_rng.choice(len(unlabelled), size=k, replace=False)
        chosen = unlabelled[local]
        if strategy != "uncertainty_weighted":
            new_weight = np.ones(len(local))
        picks.append(
            {
                "n_ratings": int(len(served)),
                "chosen": chosen.tolist(),
                "chosen_spread": spread[local].tolist(),
                "random_warmup": strategy == "uncertainty_batch"
                and len(served) < config.warmup,
                "max_unchosen_spread": float(np.delete(spread, local).max(initial=0.0)),
            }
        )
        served = np.concatenate([served, chosen])
        served_weight = np.concatenate([served_weight, new_weight])
    return {
        "strategy": strategy,
        "seed": seed,
        "n_rated_before": int(len(before)),
        "n_pool": int(len(pool_idx)),
        "n_heldout": int(len(held_idx)),
        "points": points,
        "picks": picks,
    }


def ratings_to_reach(curve: Sequence[dict[str, Any]], target: float) -> int | None:
    """Fewest ratings at which the curve first reaches ``target`` (None: never)."""
    for point in curve:
        if point["spearman"] >= target:
            return int(point["n_ratings"])
    return None


def _interval95(values: Sequence[float]) -> float:
    """Half-width of the 95 % t-interval of the mean (0 for one value)."""
    from scipy.stats import t

    n = len(values)
    if n < 2:
        return 0.0
    return float(t.ppf(0.975, n - 1) * np.std(values, ddof=1) / math.sqrt(n))


def summarise_runs(
    runs: Sequence[dict[str, Any]], targets: Sequence[float]
) -> dict[str, Any]:
    """Per strategy and number of ratings: mean rho, std, 95 % interval of the
    mean over seeds and the mean paired difference from ``random`` (same seed:
    same split and first batch) with its interval; ratings to reach each target.
    """
    summary: dict[str, Any] = {}
    by_key = {
        (r["strategy"], r["seed"], p["n_ratings"]): p["spearman"]
        for r in runs
        for p in r["points"]
    }
    names = list(STRATEGIES) + sorted({r["strategy"] for r in runs} - set(STRATEGIES))
    for strategy in names:
        mine = [r for r in runs if r["strategy"] == strategy]
        if not mine:
            continue
        counts = sorted({p["n_ratings"] for r in mine for p in r["points"]})
        curve = []
        for n in counts:
            values = [
                p["spearman"] for r in mine for p in r["points"] if p["n_ratings"] == n
            ]
            calibration = [
                p["spread_error_rho"]
                for r in mine
                for p in r["points"]
                if p["n_ratings"] == n and "spread_error_rho" in p
            ]
            point = {
                "n_ratings": n,
                "spearman": float(np.mean(values)),
                "std": float(np.std(values)),
                "ci95": _interval95(values),
                "n_seeds": len(values),
            }
            if calibration:
                point["spread_error_rho"] = float(np.mean(calibration))
            diffs = [
                by_key[(strategy, r["seed"], n)] - by_key[("random", r["seed"], n)]
                for r in mine
                if ("random", r["seed"], n) in by_key
                and (strategy, r["seed"], n) in by_key
            ]
            if strategy != "random" and diffs:
                point["minus_random"] = float(np.mean(diffs))
                point["minus_random_ci95"] = _interval95(diffs)
            curve.append(point)
        reach = {}
        for target in targets:
            per_seed = [ratings_to_reach(r["points"], target) for r in mine]
            reach[f"{target:g}"] = {
                "mean_curve": ratings_to_reach(curve, target),
                "per_seed": per_seed,
                "median_per_seed": _median_or_none(per_seed),
            }
        summary[strategy] = {"curve": curve, "ratings_to_reach": reach}
    return summary


def _median_or_none(values: Sequence[int | None]) -> float | None:
    """Median where a seed that never got there counts as infinitely many."""
    ordered = sorted(math.inf if v is None else v for v in values)
    if not ordered:
        return None
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return None if math.isinf(median) else float(median)


# --- the pool from a simulated_raters run --------------------------------------


SAMPLE_COLUMNS = frozenset({"path", "set", "prompt", "modality", "seed", "rating"})


def run_from_command_line(
    parser: argparse.ArgumentParser,
    source_dir: Path,
    config: Any,
    run: Callable[[Pool, Any, dict[str, Any]], dict[str, Any]],
    report_markdown: Callable[[dict[str, Any]], str],
) -> dict[str, Any]:
    """Read the pool in ``source_dir`` (a folder that is not one is refused
    by name, before anything is written), ``run`` the experiment and print
    its report."""
    from models_ml.engine import EngineError

    try:
        pool, facts = pool_from_run(source_dir)
    except (ValueError, EngineError, OSError) as exc:
        parser.error(str(exc))
    report = run(pool, config, facts)
    print(report_markdown(report))
    return report


def pool_from_run(
    source_dir: Path, *, buckets: int = 16
) -> tuple[Pool, dict[str, Any]]:
    """Every generated image of a ``simulated_raters`` run, re-rated by its program.

    Reads ``samples.csv`` (written by that run: one row per generated image
    with its set, prompt, modality, seed and rating) and ``real.csv`` for free
    negatives (real images under another modality's prompt, rated 1).
    """
    import csv

    from models_ml.engine import (
        HandcraftedFeatures,
        load_pil,
        make_free_negatives,
        modality_vectors,
        prompt_embedder_from_config,
        read_real_csv,
    )

    source_dir = Path(source_dir)
    samples = source_dir / "samples.csv"
    for needed in (samples, source_dir / "real.csv"):
        if not needed.is_file():
            raise ValueError(
                f"{needed}: not found; --source_dir must be the output folder of "
                "a simulated_raters or active_pool run"
            )
    with samples.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = sorted(SAMPLE_COLUMNS - set(reader.fieldnames or ()))
        if missing:
            raise ValueError(f"{samples}: missing columns {', '.join(missing)}")
        rows = list(reader)
    if not rows:
        raise ValueError(f"{samples}: no samples")
    extractor = HandcraftedFeatures()
    embedder = prompt_embedder_from_config(None)
    image = extractor.extract([Image.open(source_dir / r["path"]) for r in rows])
    prompts = [r["prompt"] for r in rows]
    unique = sorted(set(prompts))
    table = dict(zip(unique, embedder.embed(unique), strict=True))
    real = read_real_csv(source_dir / "real.csv")
    negatives = make_free_negatives(real, per_image=1, weight=0.3, seed=999)
    neg_prompts = sorted({n.prompt for n in negatives} - set(table))
    if neg_prompts:
        table.update(zip(neg_prompts, embedder.embed(neg_prompts), strict=True))
    pool = Pool(
        image=image,
        prompt=np.stack([table[p] for p in prompts]),
        modality=modality_vectors([r["modality"] for r in rows], buckets),
        ratings=np.array([int(r["rating"]) for r in rows]),
        group=np.array([int(r["seed"]) for r in rows]),
        sets=np.array([r["set"] for r in rows]),
        negatives=(
            extractor.extract([load_pil(n.image_path) for n in negatives]),
            np.stack([table[n.prompt] for n in negatives]),
            modality_vectors([n.modality for n in negatives], buckets),
            np.ones(len(negatives), dtype=np.int64),
        ),
    )
    sets = sorted({r["set"] for r in rows})
    facts = {
        "source_dir": str(source_dir),
        "n_images": len(rows),
        "n_seed_groups": len(set(pool.group.tolist())),
        "sets": {s: sum(1 for r in rows if r["set"] == s) for s in sets},
        "rating_counts": {str(v): int((pool.ratings == v).sum()) for v in (1, 2, 3)},
        "n_free_negatives": len(negatives),
    }
    return pool, facts


# --- report ------------------------------------------------------------------


def ceiling_rho(pool: Pool, config: ActiveConfig, seed: int) -> float:
    """Held-out rho with every servable image rated: what the loop can approach."""
    before, pool_idx, held_idx = round_split(pool, config, seed)
    pred, _ = _fit_and_predict(
        pool, np.concatenate([before, pool_idx]), held_idx, config, seed
    )
    return _spearman(pred.reward, pool.ratings[held_idx])


def run_experiment(
    pool: Pool, config: ActiveConfig, facts: dict[str, Any] | None = None
) -> dict[str, Any]:
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    runs = []
    ceiling = []
    for seed in config.seeds:
        for strategy in config.strategies:
            runs.append(run_loop(pool, config, strategy=strategy, seed=seed))
        ceiling.append(ceiling_rho(pool, config, seed))
        print(f"[active_learning] seed {seed} done", flush=True)
    report: dict[str, Any] = {
        "config": json.loads(json.dumps(dataclasses.asdict(config), default=str)),
        "pool": facts or {},
        "summary": summarise_runs(runs, config.targets),
        "ceiling": {
            "per_seed": ceiling,
            "mean": float(np.mean(ceiling)),
            "ci95": _interval95(ceiling),
        },
        "runs": runs,
        "seconds": round(time.perf_counter() - started, 1),
    }
    report["plot"] = str(
        plot_curves(report["summary"], out / "curves.png", report["ceiling"]["mean"])
    )
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown_report(report))
    return report


def curve_table(
    summary: dict[str, Any], extra: Callable[[str, int], str] | None = None
) -> list[str]:
    """Markdown rows: mean rho ± interval per strategy and number of ratings,
    the paired difference from random in brackets, then ``extra(strategy,
    n)`` where given."""
    curves = {s: {p["n_ratings"]: p for p in summary[s]["curve"]} for s in summary}
    counts = sorted({n for c in curves.values() for n in c})
    lines = [
        "| ratings | " + " | ".join(summary) + " |",
        "| --- | " + " | ".join("---" for _ in summary) + " |",
    ]
    for n in counts:
        cells = []
        for s in summary:
            p = curves[s].get(n)
            if not p:
                cells.append("")
                continue
            cell = f"{p['spearman']:.3f} ± {p['ci95']:.3f}"
            if "minus_random" in p:
                cell += f" ({p['minus_random']:+.3f} ± {p['minus_random_ci95']:.3f})"
            cells.append(cell + (extra(s, n) if extra else ""))
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return lines


def reach_table(summary: dict[str, Any], targets: Sequence[float]) -> list[str]:
    """Markdown: ratings each strategy needed to reach each rho target."""
    lines = ["", "Ratings needed to reach rho (mean curve; median over seeds):", ""]
    lines.append("| rho | " + " | ".join(summary) + " |")
    lines.append("| --- | " + " | ".join("---" for _ in summary) + " |")
    for target in targets:
        key = f"{target:g}"
        cells = []
        for s in summary:
            r = summary[s]["ratings_to_reach"][key]
            cells.append(
                f"{_or_never(r['mean_curve'])}; {_or_never(r['median_per_seed'])}"
            )
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return lines


def markdown_report(report: dict[str, Any]) -> str:
    summary = report["summary"]
    pool = report.get("pool", {})
    curves = {s: {p["n_ratings"]: p for p in summary[s]["curve"]} for s in summary}
    counts = sorted({n for c in curves.values() for n in c})
    n_seeds = len(report["config"]["seeds"])
    warm = report["config"].get("warm_sets") or []
    before = report["runs"][0].get("n_rated_before", 0) if report["runs"] else 0
    lines = [
        "# Active learning: uncertainty vs random serving",
        "",
        (
            f"Next round: the reward model starts from {before} ratings of "
            f"{', '.join(warm)}; the round serves the other sets; ratings "
            "below count the round's own."
            if warm
            else "Cold start: a random first batch, then each strategy."
        ),
        "",
        f"Held-out Spearman rho after each batch: mean ± 95 % interval of the "
        f"mean over {n_seeds} seeds; in brackets the mean paired difference from "
        "random (same seed) ± its 95 % interval.",
        "",
    ]
    lines += curve_table(summary)
    if any("spread_error_rho" in p for c in curves.values() for p in c.values()):
        lines += [
            "",
            "Does the spread know where the model errs? Spearman rho between "
            "each held-out image's ensemble spread and its error |expected "
            "rating - rating|, mean over seeds (0: no relation):",
            "",
            "| ratings | " + " | ".join(summary) + " |",
            "| --- | " + " | ".join("---" for _ in summary) + " |",
        ]
        for n in counts:
            cells = [
                f"{curves[s][n]['spread_error_rho']:+.3f}"
                if n in curves[s] and "spread_error_rho" in curves[s][n]
                else ""
                for s in summary
            ]
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += reach_table(summary, report["config"]["targets"])
    held = report["runs"][0]["n_heldout"] if report["runs"] else 0
    ceiling = report.get("ceiling")
    if ceiling:
        lines += [
            "",
            f"Ceiling (every servable image rated): rho {ceiling['mean']:.3f} "
            f"± {ceiling['ci95']:.3f}.",
        ]
    lines += [
        "",
        f"Pool: {pool.get('n_images', '?')} rated images "
        f"({pool.get('rating_counts', {})}), {held} held out per seed "
        f"(whole seed groups); {report['seconds']} s.",
        "",
    ]
    return "\n".join(lines)


def _or_never(value: float | None) -> str:
    return "not reached" if value is None else f"{value:g}"


def plot_curves(
    summary: dict[str, Any], path: Path, ceiling: float | None = None
) -> Path:
    """Mean rho against ratings with its 95 % interval band, one line per strategy."""
    width, height, left, right, top, bottom = 640, 400, 60, 20, 30, 50
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    counts = [p["n_ratings"] for s in summary for p in summary[s]["curve"]]
    values = [
        v
        for s in summary
        for p in summary[s]["curve"]
        for v in (p["spearman"] - p["ci95"], p["spearman"] + p["ci95"])
    ]
    if ceiling is not None:
        values.append(ceiling)
    x0, x1 = min(counts), max(counts)
    y0 = math.floor(min(values) * 10) / 10
    y1 = max(math.ceil(max(values) * 10) / 10, y0 + 0.1)

    def xy(n: float, v: float) -> tuple[float, float]:
        fx = (n - x0) / max(x1 - x0, 1)
        fy = (v - y0) / max(y1 - y0, 1e-9)
        return left + fx * (width - left - right), top + (1 - fy) * (
            height - top - bottom
        )

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    steps = int(round((y1 - y0) / 0.1))
    for i in range(steps + 1):
        v = y0 + i * 0.1
        _, y = xy(x0, v)
        draw.line([left, y, width - right, y], fill=(225, 225, 225))
        draw.text((left - 32, y - 6), f"{v:.1f}", fill="black")
    for n in sorted(set(counts))[:: max(1, len(set(counts)) // 8)]:
        x, _ = xy(n, y0)
        draw.text((x - 8, height - bottom + 6), str(n), fill="black")
    draw.text(
        (width // 2 - 90, height - 22),
        "ratings revealed (band: 95% CI of mean)",
        fill="black",
    )
    if ceiling is not None:
        _, y = xy(x0, ceiling)
        for x in range(left, width - right, 12):
            draw.line([x, y, min(x + 6, width - right), y], fill="gray", width=2)
        draw.text(
            (width - right - 200, y - 14),
            f"every servable image rated: {ceiling:.2f}",
            fill="gray",
        )
    colours = {
        "uncertainty": (200, 40, 40),
        "uncertainty_per_prompt": (230, 140, 0),
        "uncertainty_batch": (20, 150, 60),
        "vote_entropy": (150, 60, 170),
        "vote_entropy_stratified": (120, 90, 40),
        "vote_entropy_mixed": (0, 160, 160),
        "uncertainty_sampled": (200, 0, 120),
        "random": (40, 80, 200),
        "coverage": (20, 150, 60),
        "informative": (200, 40, 40),
        "mixed": (230, 140, 0),
        "warmup": (150, 60, 170),
        "balanced": (0, 150, 150),
    }
    for row, strategy in enumerate(summary):
        colour = colours.get(strategy, (0, 0, 0))
        curve = summary[strategy]["curve"]
        band = [xy(p["n_ratings"], p["spearman"] + p["ci95"]) for p in curve] + [
            xy(p["n_ratings"], p["spearman"] - p["ci95"]) for p in reversed(curve)
        ]
        overlay = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
        ImageDraw.Draw(overlay).polygon(band, fill=(*colour, 40))
        canvas = Image.alpha_composite(canvas.convert("RGBA"), overlay).convert("RGB")
        draw = ImageDraw.Draw(canvas)
        line = [xy(p["n_ratings"], p["spearman"]) for p in curve]
        draw.line(line, fill=colour, width=3)
        for x, y in line:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        draw.text((left + 10, top + 8 + 14 * row), strategy, fill=colour)
    draw.text((left, 8), "Reward-model Spearman rho vs ratings", fill="black")
    canvas.save(path)
    return path


def quick_config(output_dir: Path) -> ActiveConfig:
    return ActiveConfig(
        output_dir=output_dir,
        initial=6,
        batch=6,
        budget=18,
        seeds=(0, 1),
        warmup=12,
        ensemble_size=3,
        epochs=30,
    )


def add_curve_arguments(parser: argparse.ArgumentParser, defaults: Any) -> None:
    """``--budget``, ``--batch`` and ``--targets``, shared by the serving
    experiments; ``defaults`` is the experiment's config as it stands."""
    parser.add_argument(
        "--budget",
        type=int,
        help=f"ratings each curve goes up to (default {defaults.budget})",
    )
    parser.add_argument(
        "--batch",
        type=int,
        help=f"ratings between two retrains (default {defaults.batch})",
    )
    targets = " ".join(f"{t:g}" for t in defaults.targets)
    parser.add_argument(
        "--targets",
        type=float,
        nargs="+",
        help=f"rho levels for the ratings-to-reach table (default: {targets})",
    )


def apply_curve_arguments(
    parser: argparse.ArgumentParser, args: argparse.Namespace, config: Any
) -> None:
    """Copy ``--budget``, ``--batch`` and ``--targets`` onto ``config``; a
    budget or batch below 1 is refused by name."""
    for name in ("budget", "batch"):
        value = getattr(args, name)
        if value is not None:
            if value < 1:
                parser.error(f"--{name} must be at least 1")
            setattr(config, name, value)
    if args.targets:
        config.targets = tuple(args.targets)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m research.active_learning",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--source_dir",
        required=True,
        type=Path,
        help="output folder of a simulated_raters run (its samples.csv and real.csv)",
    )
    parser.add_argument("--output_dir", required=True, type=Path, help="results folder")
    parser.add_argument("--quick", action="store_true", help="test-size run")
    parser.add_argument("--seeds", type=int, help="number of seeds")
    parser.add_argument(
        "--first_seed",
        type=int,
        default=0,
        help="seeds run from here (0: the reported seeds; 100: development)",
    )
    parser.add_argument(
        "--strategies",
        nargs="+",
        choices=STRATEGIES,
        help=f"default: {' '.join(DEFAULT_STRATEGIES)}",
    )
    parser.add_argument(
        "--warm_sets",
        nargs="+",
        metavar="SET",
        help="next-round scenario: these sets (generators, e.g. base_10 base_20) "
        "were rated in an earlier round; the round serves the other sets and rho "
        "is measured on their held-out images (default: a cold start)",
    )
    parser.add_argument(
        "--warm_ratings",
        type=int,
        help="ratings of the warm sets the reward model starts from (default 120)",
    )
    add_curve_arguments(parser, ActiveConfig(output_dir=Path(".")))
    parser.add_argument(
        "--design_ridge",
        type=float,
        help="the design strategy's prior: ratings' worth per feature direction "
        "(default 1)",
    )
    parser.add_argument(
        "--design_linear",
        action="store_true",
        help="the design strategy on the head's inputs as they are, not through "
        "a Gaussian kernel",
    )
    parser.add_argument(
        "--design_length",
        type=float,
        help="the design kernel's length scale (default: the median distance "
        "between the round's images)",
    )
    args = parser.parse_args(argv)
    config = (
        quick_config(args.output_dir)
        if args.quick
        else ActiveConfig(output_dir=args.output_dir)
    )
    if args.seeds or args.first_seed:
        count = args.seeds or len(config.seeds)
        config.seeds = tuple(range(args.first_seed, args.first_seed + count))
    if args.strategies:
        config.strategies = tuple(args.strategies)
    if args.warm_sets:
        config.warm_sets = tuple(args.warm_sets)
    if args.warm_ratings is not None:
        if args.warm_ratings < 1:
            parser.error("--warm_ratings must be at least 1")
        config.warm_ratings = args.warm_ratings
    apply_curve_arguments(parser, args, config)
    if args.batch is not None:
        config.initial = args.batch
    if args.design_ridge is not None:
        if args.design_ridge <= 0:
            parser.error("--design_ridge must be positive")
        config.design_ridge = args.design_ridge
    if args.design_linear:
        config.design_kernel = False
    if args.design_length is not None:
        if args.design_length <= 0:
            parser.error("--design_length must be positive")
        config.design_length = args.design_length
    return run_from_command_line(
        parser, args.source_dir, config, run_experiment, markdown_report
    )


if __name__ == "__main__":
    main()
