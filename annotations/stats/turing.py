"""The visual Turing test: do physicians rate synthetic images like real ones?

For one group of ratings (one physician, or one modality across physicians)
the real controls and the synthetic images are summarised separately: counts
per score, mean with a t interval.  The headline figure is

    P(synthetic >= real) = P(S > R) + 0.5 * P(S = R)

for a synthetic rating S and a real rating R drawn at random from the group,
ties counted half (the common-language effect size, equal to the Mann-Whitney
AUC).  0.5 means synthetic images are rated as well as real ones; 0 means every
synthetic image was rated below every real one.  Its interval is a percentile
bootstrap that resamples the real and the synthetic ratings separately.

Pooling a modality across physicians mixes their personal leniency into both
arms alike when they rate both kinds; the per-physician figures do not.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from scipy import stats

from .agreement import (
    DEFAULT_N_BOOT,
    SCALE,
    Estimate,
    category_index,
    percentile_ci,
    score_code,
)

GroupT = TypeVar("GroupT", bound=Hashable)  # a group: a physician, a modality


@dataclass(frozen=True)
class ScoreSummary:
    """Scores of one arm: counts per score and the mean with a t interval."""

    counts: dict[int, int]
    mean: Estimate

    @property
    def n(self) -> int:
        return self.mean.n

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "counts": {str(k): v for k, v in self.counts.items()},
            "mean": self.mean.as_dict(),
        }


@dataclass(frozen=True)
class TuringResult:
    real: ScoreSummary
    synthetic: ScoreSummary
    p_synthetic_at_least_real: Estimate

    def as_dict(self) -> dict[str, Any]:
        return {
            "real": self.real.as_dict(),
            "synthetic": self.synthetic.as_dict(),
            "p_synthetic_at_least_real": self.p_synthetic_at_least_real.as_dict(),
        }


def mean_estimate(values: Sequence[float], *, level: float = 0.95) -> Estimate:
    """The mean with a Student-t interval; no interval below two values."""
    n = len(values)
    if n == 0:
        return Estimate(None, 0, level=level, note="no ratings")
    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    if n < 2:
        return Estimate(mean, n, level=level)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * arr.std(ddof=1) / np.sqrt(n))
    return Estimate(mean, n, mean - half, mean + half, level=level)


def score_summary(
    scores: Sequence[int], *, categories: Sequence[int] = SCALE, level: float = 0.95
) -> ScoreSummary:
    index = category_index(categories)
    counts = dict.fromkeys(categories, 0)
    for i, score in enumerate(scores):
        score_code(index, "-", i, score)
        counts[score] += 1
    return ScoreSummary(counts, mean_estimate(scores, level=level))


def _p_at_least(synthetic: np.ndarray, real: np.ndarray) -> np.ndarray:
    """P(S > R) + P(S = R) / 2 from category counts ``(..., K)``; NaN if empty."""
    k = synthetic.shape[-1]
    # win[s, r] = 1 if s > r, 0.5 if equal, 0 otherwise (categories in order).
    win = np.tril(np.ones((k, k)), -1) + 0.5 * np.eye(k)
    ns = synthetic.sum(axis=-1)
    nr = real.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.einsum("...s,sr,...r->...", synthetic, win, real) / (ns * nr)


def visual_turing_test(
    real: Sequence[int],
    synthetic: Sequence[int],
    *,
    categories: Sequence[int] = SCALE,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> TuringResult:
    """Real against synthetic ratings of one group; see the module docstring."""
    real_s = score_summary(real, categories=categories, level=level)
    synth_s = score_summary(synthetic, categories=categories, level=level)
    r = np.array([real_s.counts[c] for c in categories], dtype=float)
    s = np.array([synth_s.counts[c] for c in categories], dtype=float)
    n = len(real) + len(synthetic)
    if not len(real) or not len(synthetic):
        missing = "real" if not len(real) else "synthetic"
        p = Estimate(None, n, level=level, note=f"no {missing} images rated")
    else:
        value = float(_p_at_least(s, r))
        low = high = None
        if n_boot > 0:
            # Resampling ratings with replacement draws category counts from a
            # multinomial at the observed shares; the two arms independently.
            rng = np.random.default_rng(seed)
            ss = rng.multinomial(len(synthetic), s / s.sum(), size=n_boot)
            rr = rng.multinomial(len(real), r / r.sum(), size=n_boot)
            low, high = percentile_ci(_p_at_least(ss, rr), level)
        p = Estimate(value, n, low, high, level=level, n_boot=max(n_boot, 0))
    return TuringResult(real_s, synth_s, p)


def turing_by_group(
    records: Iterable[tuple[GroupT, bool, int]],
    *,
    categories: Sequence[int] = SCALE,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> dict[GroupT, TuringResult]:
    """``(group, is_synthetic, score)`` records to one result per group."""
    arms: dict[GroupT, tuple[list[int], list[int]]] = {}
    for group, is_synthetic, score in records:
        real, synthetic = arms.setdefault(group, ([], []))
        (synthetic if is_synthetic else real).append(score)
    return {
        group: visual_turing_test(
            real,
            synthetic,
            categories=categories,
            n_boot=n_boot,
            seed=seed,
            level=level,
        )
        for group, (real, synthetic) in arms.items()
    }
