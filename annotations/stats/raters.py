"""Agreement of many raters on the 1-3 scale, built on ``agreement``'s kappa:
every pair's kappa, one reliability per physician, and each physician's
first ratings against their unannounced repeats (test-retest). The data
shape and the rules for undefined values are ``agreement``'s."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal

import numpy as np
from scipy.stats import binomtest

from .agreement import (
    DEFAULT_N_BOOT,
    SCALE,
    Estimate,
    ItemT,
    RaterT,
    Ratings,
    category_index,
    coded_ratings,
    common_items,
    kappa_estimate,
    kappa_of_codes,
)


@dataclass(frozen=True)
class KappaMatrix(Generic[RaterT]):
    """Quadratic kappa for each pair of raters; ``n[i][j]`` common items.

    The diagonal holds ``None`` for kappa and the rater's item count for ``n``.
    """

    raters: list[RaterT]
    kappa: list[list[float | None]]
    n: list[list[int]]

    def as_dict(self) -> dict[str, Any]:
        return {"raters": list(self.raters), "kappa": self.kappa, "n": self.n}


@dataclass(frozen=True)
class Retest:
    """One rater's first ratings against their repeats of the same items."""

    n: int
    kappa: Estimate
    exact_agreement: Estimate
    mean_abs_difference: float | None = None
    changes: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "kappa": self.kappa.as_dict(),
            "exact_agreement": self.exact_agreement.as_dict(),
            "mean_abs_difference": self.mean_abs_difference,
            "changes": dict(self.changes),
        }


def pairwise_kappa(
    ratings: Ratings[RaterT, ItemT], *, categories: Sequence[int] = SCALE
) -> KappaMatrix[RaterT]:
    """Quadratic kappa of every pair of raters on their common items."""
    index = category_index(categories)
    raters = list(ratings)
    coded = [coded_ratings(ratings[r], index, r) for r in raters]
    size = len(raters)
    kappa: list[list[float | None]] = [[None] * size for _ in range(size)]
    counts = [[0] * size for _ in range(size)]
    for i in range(size):
        counts[i][i] = len(coded[i])
        for j in range(i + 1, size):
            ca, cb = common_items(coded[i], coded[j])
            est = kappa_of_codes(ca, cb, categories, n_boot=0, seed=0, level=0.95)
            kappa[i][j] = kappa[j][i] = est.value
            counts[i][j] = counts[j][i] = est.n
    return KappaMatrix(raters, kappa, counts)


def rater_reliability(
    ratings: Ratings[RaterT, ItemT],
    *,
    repeats: Ratings[RaterT, ItemT] | None = None,
    method: Literal["between", "retest"] = "between",
    min_overlap: int = 5,
    categories: Sequence[int] = SCALE,
) -> dict[RaterT, float]:
    """One reliability figure per rater, in kappa units (1 perfect, 0 chance).

    ``method="between"`` (default): the mean of the rater's quadratic kappa
    with every other rater, each pair weighted by its number of common items;
    pairs with fewer than ``min_overlap`` common items or an undefined kappa
    are left out.  It measures agreement with colleagues, so a rater who
    disagrees with a consistent majority scores low.

    ``method="retest"``: the quadratic kappa between the rater's first rating
    and their unannounced repeat (``repeats``, same shape as ``ratings``) on at
    least ``min_overlap`` repeated items.  It measures self-consistency only.

    Raters with no qualifying pair or too few repeats are absent from the
    result (unknown, not zero).  Values may be negative; clip before using
    them as weights.
    """
    if method == "retest":
        if repeats is None:
            raise ValueError("method='retest' needs repeats")
        out: dict[RaterT, float] = {}
        for rater, first in ratings.items():
            est = kappa_estimate(
                first, repeats.get(rater, {}), categories=categories, n_boot=0
            )
            if est.value is not None and est.n >= min_overlap:
                out[rater] = est.value
        return out
    if method != "between":
        raise ValueError(f"method {method!r} is not 'between' or 'retest'")
    matrix = pairwise_kappa(ratings, categories=categories)
    out = {}
    for i, rater in enumerate(matrix.raters):
        pairs = [
            (matrix.kappa[i][j], matrix.n[i][j])
            for j in range(len(matrix.raters))
            if j != i
            and matrix.kappa[i][j] is not None
            and matrix.n[i][j] >= min_overlap
        ]
        weight = sum(n for _, n in pairs)
        if weight:
            out[rater] = sum(k * n for k, n in pairs if k is not None) / weight
    return out


def wilson_estimate(successes: int, n: int, *, level: float = 0.95) -> Estimate:
    """A proportion with its Wilson score interval."""
    if n == 0:
        return Estimate(None, 0, level=level, note="no observations")
    ci = binomtest(successes, n).proportion_ci(confidence_level=level, method="wilson")
    return Estimate(successes / n, n, float(ci.low), float(ci.high), level=level)


def retest_agreement(
    first: Ratings[RaterT, ItemT],
    repeats: Ratings[RaterT, ItemT],
    *,
    categories: Sequence[int] = SCALE,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> dict[RaterT, Retest]:
    """Per rater with at least one repeat: first rating against the repeat.

    ``kappa`` is quadratic kappa with a bootstrap interval over the repeated
    items; ``exact_agreement`` the share of repeats given the same score, with
    a Wilson interval; ``changes`` counts ``"2→3"``-style transitions.
    """
    index = category_index(categories)
    out: dict[RaterT, Retest] = {}
    for rater, again in repeats.items():
        before = first.get(rater, {})
        ca, cb = common_items(
            coded_ratings(before, index, rater), coded_ratings(again, index, rater)
        )
        n = len(ca)
        if n == 0:
            continue
        same = int((ca == cb).sum())
        values = np.asarray(categories)
        changes: dict[str, int] = {}
        for x, y in zip(values[ca], values[cb], strict=True):
            if x != y:
                key = f"{x}→{y}"
                changes[key] = changes.get(key, 0) + 1
        out[rater] = Retest(
            n=n,
            kappa=kappa_estimate(
                before,
                again,
                categories=categories,
                n_boot=n_boot,
                seed=seed,
                level=level,
            ),
            exact_agreement=wilson_estimate(same, n, level=level),
            mean_abs_difference=float(np.abs(values[ca] - values[cb]).mean()),
            changes=dict(sorted(changes.items())),
        )
    return out
