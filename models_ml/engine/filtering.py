"""Reward-filtered generation: best-of-N per request, or a reward threshold.

Works with any generator whose ``generate(requests, **kw)`` returns objects
with ``image``, ``prompt``, ``modality`` and ``seed`` (the diffusion backends'
``GeneratedImage``), and any scorer with ``predict(images, prompts,
modalities)`` (a ``RewardModel``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
from PIL import Image

from .errors import EngineError

PROVENANCE_FIELDS = ("steps", "guidance", "scheduler", "model_version")


class FilterError(EngineError):
    """Filtering was asked for something impossible (bad mode, no threshold)."""


class GenerationRequestLike(Protocol):
    prompt: str
    modality: str
    seed: int


class GeneratedLike(Protocol):
    image: Image.Image
    prompt: str
    modality: str
    seed: int


class ImageGenerator(Protocol):
    def generate(self, requests: list[Any], **kw: Any) -> list[Any]: ...


class Scorer(Protocol):
    def predict(
        self,
        images: list[Image.Image],
        prompts: Sequence[str],
        modalities: Sequence[str],
    ) -> Any: ...


@dataclass(frozen=True)
class ThresholdCalibration:
    threshold: float | None  # None when the target precision is unreachable
    achieved_precision: float | None
    recall: float | None
    n: int
    target_precision: float
    reachable: bool
    message: str


@dataclass
class ScoredImage:
    image: Image.Image
    prompt: str
    modality: str
    seed: int
    reward: float
    probs: tuple[float, float, float]
    uncertainty: float
    request_index: int
    attempt: int
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass
class FilterResult:
    kept: list[ScoredImage]
    rejected: list[ScoredImage]
    stats: dict[str, Any]


def calibrate_threshold(
    rewards_heldout: Sequence[float] | np.ndarray,
    ratings_heldout: Sequence[int] | np.ndarray,
    target_precision: float = 0.8,
) -> ThresholdCalibration:
    """Lowest reward threshold whose held-out precision for "rated 3" meets the target.

    Precision at threshold t is the share of held-out images with reward >= t
    that were rated 3; recall is the share of rated-3 images kept.
    """
    rewards = np.asarray(rewards_heldout, dtype=np.float64)
    top = np.asarray(ratings_heldout) == 3
    n = len(rewards)
    if n != len(top):
        raise FilterError(f"{n} rewards but {len(top)} ratings")
    if n == 0 or not top.any():
        return ThresholdCalibration(
            None,
            None,
            None,
            n,
            target_precision,
            False,
            "no held-out image rated 3: precision cannot be calibrated",
        )
    best: tuple[float, float, float] | None = None
    # Candidate thresholds are the observed rewards, scanned from high to low so
    # the last one that still meets the target is the lowest.
    for t in np.unique(rewards)[::-1]:
        kept = rewards >= t
        precision = float(top[kept].mean())
        if precision >= target_precision:
            best = (float(t), precision, float(top[kept].sum() / top.sum()))
    if best is None:
        top_precision = float(top[rewards >= rewards.max()].mean())
        return ThresholdCalibration(
            None,
            None,
            None,
            n,
            target_precision,
            False,
            f"target precision {target_precision:.2f} is unreachable on {n} held-out "
            f"ratings (best precision {top_precision:.2f} at the highest reward)",
        )
    threshold, precision, recall = best
    return ThresholdCalibration(
        threshold,
        precision,
        recall,
        n,
        target_precision,
        True,
        f"reward >= {threshold:.3f} gives precision {precision:.2f} and recall "
        f"{recall:.2f} for rated 3 on {n} held-out ratings",
    )


def _candidate_seed(seed: int, attempt: int) -> int:
    """Attempt 0 keeps the requested seed; later ones derive distinct seeds."""
    if attempt == 0:
        return int(seed)
    return int((int(seed) * 1_000_003 + attempt * 7_919) % 2**31)


def _with_seed(request: Any, seed: int) -> Any:
    if dataclasses.is_dataclass(request) and not isinstance(request, type):
        return dataclasses.replace(request, seed=seed)
    return type(request)(prompt=request.prompt, modality=request.modality, seed=seed)


def _score(
    scorer: Scorer, generated: list[Any], index: list[tuple[int, int]]
) -> list[ScoredImage]:
    prediction = scorer.predict(
        [g.image for g in generated],
        [g.prompt for g in generated],
        [g.modality for g in generated],
    )
    out = []
    for i, (g, (request_index, attempt)) in enumerate(
        zip(generated, index, strict=True)
    ):
        provenance = {k: getattr(g, k) for k in PROVENANCE_FIELDS if hasattr(g, k)}
        p1, p2, p3 = (float(p) for p in prediction.probs[i])
        out.append(
            ScoredImage(
                image=g.image,
                prompt=g.prompt,
                modality=g.modality,
                seed=int(g.seed),
                reward=float(prediction.reward[i]),
                probs=(p1, p2, p3),
                uncertainty=float(prediction.uncertainty[i]),
                request_index=request_index,
                attempt=attempt,
                provenance=provenance,
            )
        )
    return out


def filter_generate(
    generator: ImageGenerator,
    reward_model: Scorer,
    requests: Sequence[Any],
    *,
    mode: Literal["best_of_n", "threshold"] = "best_of_n",
    n: int = 4,
    threshold: float | None = None,
    max_attempts: int = 8,
    **gen_kwargs: Any,
) -> FilterResult:
    """Generate and keep images by reward.

    ``best_of_n``: n candidates per request, the highest reward is kept (and,
    when ``threshold`` is given, only if it reaches it). ``threshold``: up to
    ``max_attempts`` candidates per request, generated one round at a time,
    until one reaches ``threshold``; requests that never do keep nothing.
    """
    if mode not in ("best_of_n", "threshold"):
        raise FilterError(
            f"unknown filtering mode {mode!r}: use best_of_n or threshold"
        )
    if mode == "threshold" and threshold is None:
        raise FilterError("threshold mode needs a threshold (see calibrate_threshold)")
    if n < 1 or max_attempts < 1:
        raise FilterError(f"n ({n}) and max_attempts ({max_attempts}) must be >= 1")
    if mode == "best_of_n":
        kept, rejected, generated = _best_of_n(
            generator, reward_model, requests, n, threshold, gen_kwargs
        )
    else:
        assert threshold is not None  # threshold mode without one is refused above
        kept, rejected, generated = _until_threshold(
            generator, reward_model, requests, max_attempts, threshold, gen_kwargs
        )
    kept.sort(key=lambda s: s.request_index)
    filled = {s.request_index for s in kept}
    all_rewards = [s.reward for s in kept + rejected]
    stats = {
        "mode": mode,
        "n": n if mode == "best_of_n" else None,
        "threshold": threshold,
        "max_attempts": max_attempts if mode == "threshold" else None,
        "n_requests": len(requests),
        "n_generated": generated,
        "n_kept": len(kept),
        "n_rejected": len(rejected),
        "n_unfilled": len(requests) - len(filled),
        "acceptance_rate": len(kept) / generated if generated else None,
        "mean_reward_kept": float(np.mean([s.reward for s in kept])) if kept else None,
        "mean_reward_all": float(np.mean(all_rewards)) if all_rewards else None,
    }
    return FilterResult(kept=kept, rejected=rejected, stats=stats)


_Filtered = tuple[list[ScoredImage], list[ScoredImage], int]


def _best_of_n(
    generator: ImageGenerator,
    reward_model: Scorer,
    requests: Sequence[Any],
    n: int,
    threshold: float | None,
    gen_kwargs: dict[str, Any],
) -> _Filtered:
    """n candidates per request in one batch; the best of each is kept when
    it reaches ``threshold`` (if one is given). Returns kept, rejected and the
    number generated."""
    kept: list[ScoredImage] = []
    rejected: list[ScoredImage] = []
    batch = [(i, a) for i in range(len(requests)) for a in range(n)]
    outputs = generator.generate(
        [
            _with_seed(requests[i], _candidate_seed(requests[i].seed, a))
            for i, a in batch
        ],
        **gen_kwargs,
    )
    scored = _score(reward_model, outputs, batch)
    for i in range(len(requests)):
        candidates = [s for s in scored if s.request_index == i]
        best = max(candidates, key=lambda s: s.reward)
        passes = threshold is None or best.reward >= threshold
        kept.extend([best] if passes else [])
        rejected.extend(s for s in candidates if s is not best or not passes)
    return kept, rejected, len(outputs)


def _until_threshold(
    generator: ImageGenerator,
    reward_model: Scorer,
    requests: Sequence[Any],
    max_attempts: int,
    threshold: float,
    gen_kwargs: dict[str, Any],
) -> _Filtered:
    """One candidate per unfilled request per attempt, until each has one
    that reaches ``threshold`` or the attempts run out."""
    kept: list[ScoredImage] = []
    rejected: list[ScoredImage] = []
    generated = 0
    pending = list(range(len(requests)))
    for attempt in range(max_attempts):
        if not pending:
            break
        batch = [(i, attempt) for i in pending]
        outputs = generator.generate(
            [
                _with_seed(requests[i], _candidate_seed(requests[i].seed, attempt))
                for i in pending
            ],
            **gen_kwargs,
        )
        generated += len(outputs)
        for s in _score(reward_model, outputs, batch):
            if s.reward >= threshold:
                kept.append(s)
                pending.remove(s.request_index)
            else:
                rejected.append(s)
    return kept, rejected, generated
