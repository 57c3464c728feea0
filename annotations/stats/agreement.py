"""Agreement between raters on an ordinal scale (1–3 in the app).

Data shape
----------
``Ratings`` maps a rater to the scores they gave, ``{rater: {item: score}}``.
Raters and items are any hashable values (user ids and image ids in the app).
A missing rating is a missing key.  Scores must be members of ``categories``
(default ``SCALE = (1, 2, 3)``); anything else raises ``ValueError`` naming the
rater, the item and the value.

Statistics
----------
- ``quadratic_kappa``: Cohen's kappa with quadratic weights
  ``w_ij = (v_i - v_j)**2`` for two raters on the items both rated.  Equal to
  ``sklearn.metrics.cohen_kappa_score(weights="quadratic")`` on the 1–3 scale.
- ``krippendorff_alpha``: Krippendorff's alpha for any number of raters with
  missing ratings, from the coincidence matrix; metric ``ordinal`` (default),
  ``interval`` or ``nominal``.  Items with fewer than two ratings are not
  pairable and drop out, as in Krippendorff (2011), "Computing Krippendorff's
  alpha-reliability".
- ``kappa_estimate`` / ``alpha_estimate``: the value with a percentile
  bootstrap interval from resampling *items* with replacement (seeded; set
  ``n_boot=0`` for no interval).  Resampling items keeps each item's ratings
  together, so the interval reflects which images happened to be rated.
- Many raters (``annotations.stats.raters``): ``pairwise_kappa``, the kappa
  matrix of every pair of raters; ``rater_reliability``, one number per
  rater; ``retest_agreement``, each rater's first ratings against their
  unannounced repeats.

Undefined values
----------------
A statistic that is undefined is ``None`` (never NaN), and every
:class:`Estimate` says why in ``note``:

- *No overlap*: two raters with no common item have no kappa; data with no
  item rated twice has no alpha.
- *No variation*: kappa is ``1 - D_o / D_e`` and ``D_e`` (expected
  disagreement) is zero when both raters used one and the same category for
  every common item; alpha likewise when every pairable rating is the same
  value.  0/0 is reported as undefined, with the raw exact agreement beside it
  where a caller wants it.  (sklearn returns NaN here.)
- *One constant rater*: when only one of the two raters always gives the same
  score, ``D_e`` equals ``D_o`` exactly (a point-mass marginal makes the
  chance table the observed one), so kappa is **0**: a constant rater carries
  no information about which items are better.  This matches sklearn.
- *One rater*: alpha needs two ratings of an item, so one rater gives
  ``None``; ``pairwise_kappa`` gives an empty matrix off the diagonal and
  ``rater_reliability`` gives no entry for that rater.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeVar

import numpy as np

SCALE: tuple[int, ...] = (1, 2, 3)
DEFAULT_N_BOOT = 1000
BOOT_CHUNK = 250

RaterT = TypeVar("RaterT", bound=Hashable)  # a rater
ItemT = TypeVar("ItemT", bound=Hashable)  # an item
Ratings = Mapping[RaterT, Mapping[ItemT, int]]
Metric = Literal["ordinal", "interval", "nominal"]

NOTE_NO_OVERLAP = "no overlap: no item rated by both"
NOTE_NO_PAIRABLE = "no item rated by two or more raters"
NOTE_NO_VARIATION = (
    "undefined: every rating is the same score, so chance disagreement is zero"
)


@dataclass(frozen=True)
class Estimate:
    """A statistic with its sample size and (optional) confidence interval.

    ``n`` counts the items the value rests on; ``n_boot`` the bootstrap
    resamples behind the interval (0 when the interval is analytic or absent).
    """

    value: float | None
    n: int
    ci_low: float | None = None
    ci_high: float | None = None
    level: float = 0.95
    n_boot: int = 0
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- helpers -----------------------------------------------------------------


def category_index(categories: Sequence[int]) -> dict[int, int]:
    if len(set(categories)) != len(categories) or len(categories) < 2:
        raise ValueError("categories must hold at least two distinct values")
    return {c: i for i, c in enumerate(categories)}


def score_code(
    index: Mapping[int, int], rater: Hashable, item: Hashable, score: int
) -> int:
    try:
        return index[score]
    except (KeyError, TypeError):
        raise ValueError(
            f"rater {rater!r}, item {item!r}: score {score!r} is not one of "
            f"{sorted(index)}"
        ) from None


def percentile_ci(
    samples: np.ndarray, level: float
) -> tuple[float | None, float | None]:
    defined = samples[np.isfinite(samples)]
    if defined.size == 0:
        return None, None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(defined, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_counts(n_items: int, n_boot: int, seed: int) -> Iterable[np.ndarray]:
    """Item multiplicities ``(chunk, n_items)`` of ``n_boot`` resamples with
    replacement, in chunks, from one seeded generator."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_boot:
        size = min(BOOT_CHUNK, n_boot - done)
        picks = rng.integers(0, n_items, size=(size, n_items))
        picks += np.arange(size)[:, None] * n_items
        counts = np.bincount(picks.ravel(), minlength=size * n_items)
        yield counts.reshape(size, n_items).astype(float)
        done += size


def _finite_or_none(value: float | np.ndarray) -> float | None:
    """A finite scalar (a float or a 0-d array) as a float, else ``None``."""
    return float(value) if np.isfinite(value) else None


# --- Cohen's kappa -----------------------------------------------------------


def _kappa_from_confusion(conf: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted kappa of confusion tables ``(..., K, K)``; NaN where undefined."""
    n = conf.sum(axis=(-2, -1))
    rows = conf.sum(axis=-1)
    cols = conf.sum(axis=-2)
    observed = (conf * weights).sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.einsum("...i,...j,ij->...", rows, cols, weights) / n
        kappa = 1.0 - observed / expected
    return np.where(expected > 1e-12 * np.maximum(n, 1), kappa, np.nan)


def coded_ratings(
    scores: Mapping[ItemT, int], index: Mapping[int, int], rater: Hashable
) -> dict[ItemT, int]:
    """``{item: category position}``, refusing a score outside the scale."""
    try:
        return {item: index[score] for item, score in scores.items()}
    except (KeyError, TypeError):
        for item, score in scores.items():
            score_code(index, rater, item, score)
        raise


def common_items(
    ca: Mapping[ItemT, int], cb: Mapping[ItemT, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the items both rated, in the first rater's order (so that a
    seeded bootstrap gives the same interval in every process)."""
    common = [item for item in ca if item in cb]
    return (
        np.fromiter((ca[i] for i in common), int, len(common)),
        np.fromiter((cb[i] for i in common), int, len(common)),
    )


def _quadratic_weights(categories: Sequence[int]) -> np.ndarray:
    values = np.asarray(categories, dtype=float)
    return (values[:, None] - values[None, :]) ** 2


def quadratic_kappa(
    a: Mapping[ItemT, int],
    b: Mapping[ItemT, int],
    *,
    categories: Sequence[int] = SCALE,
) -> float | None:
    """Quadratic-weighted Cohen's kappa of two raters on their common items."""
    return kappa_estimate(a, b, categories=categories, n_boot=0).value


def kappa_estimate(
    a: Mapping[ItemT, int],
    b: Mapping[ItemT, int],
    *,
    categories: Sequence[int] = SCALE,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> Estimate:
    """Quadratic kappa on the common items, with a bootstrap interval over items."""
    index = category_index(categories)
    ca, cb = common_items(coded_ratings(a, index, "a"), coded_ratings(b, index, "b"))
    return kappa_of_codes(ca, cb, categories, n_boot=n_boot, seed=seed, level=level)


def kappa_of_codes(
    ca: np.ndarray,
    cb: np.ndarray,
    categories: Sequence[int],
    *,
    n_boot: int,
    seed: int,
    level: float,
) -> Estimate:
    n = len(ca)
    if n == 0:
        return Estimate(None, 0, level=level, note=NOTE_NO_OVERLAP)
    k = len(categories)
    weights = _quadratic_weights(categories)
    cells = ca * k + cb
    conf = np.bincount(cells, minlength=k * k).reshape(k, k).astype(float)
    value = _finite_or_none(_kappa_from_confusion(conf, weights))
    if value is None:
        return Estimate(None, n, level=level, note=NOTE_NO_VARIATION)
    if n_boot <= 0 or n < 2:
        return Estimate(value, n, level=level)
    onehot = np.zeros((n, k * k))
    onehot[np.arange(n), cells] = 1.0
    samples = np.concatenate(
        [
            _kappa_from_confusion((counts @ onehot).reshape(-1, k, k), weights)
            for counts in bootstrap_counts(n, n_boot, seed)
        ]
    )
    low, high = percentile_ci(samples, level)
    return Estimate(value, n, low, high, level=level, n_boot=n_boot)


# --- Krippendorff's alpha ----------------------------------------------------


def _unit_coincidences(
    ratings: Ratings[RaterT, ItemT], categories: Sequence[int]
) -> np.ndarray:
    """Each pairable item's contribution to the coincidence matrix, ``(U, K, K)``.

    An item with ``m`` ratings whose category counts are ``c`` adds
    ``(c c^T - diag(c)) / (m - 1)``: every ordered pair of its ratings from
    different raters, weighted so that each item adds ``m`` in total.
    """
    index = category_index(categories)
    k = len(categories)
    per_item: dict[ItemT, np.ndarray] = {}
    for rater, scores in ratings.items():
        for item, score in scores.items():
            counts = per_item.get(item)
            if counts is None:
                counts = per_item[item] = np.zeros(k)
            counts[score_code(index, rater, item, score)] += 1
    units = [c for c in per_item.values() if c.sum() >= 2]
    if not units:
        return np.zeros((0, k, k))
    c = np.stack(units)
    m = c.sum(axis=1)
    outer = c[:, :, None] * c[:, None, :]
    diag = np.einsum("ui,ij->uij", c, np.eye(k))
    return (outer - diag) / (m - 1)[:, None, None]


def _alpha_from_coincidence(
    o: np.ndarray, metric: Metric, categories: Sequence[int]
) -> np.ndarray:
    """Alpha from coincidence matrices ``(..., K, K)``; NaN where undefined.

    ``alpha = 1 - (n - 1) * sum(o * d2) / sum(n_c n_k d2)``.  The ordinal
    metric ``d2_ck = (sum_{g=c..k} n_g - (n_c + n_k) / 2) ** 2`` equals the
    squared distance between the categories' mid-ranks ``cumsum(n) - n / 2``.
    """
    n_c = o.sum(axis=-1)
    n = n_c.sum(axis=-1)
    if metric == "ordinal":
        mid = np.cumsum(n_c, axis=-1) - n_c / 2
        d2 = (mid[..., :, None] - mid[..., None, :]) ** 2
    elif metric == "interval":
        d2 = _quadratic_weights(categories)
    elif metric == "nominal":
        d2 = 1.0 - np.eye(len(categories))
    else:
        raise ValueError(f"metric {metric!r} is not ordinal, interval or nominal")
    observed = (o * d2).sum(axis=(-2, -1))
    expected = (n_c[..., :, None] * n_c[..., None, :] * d2).sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = 1.0 - (n - 1) * observed / expected
    return np.where(expected > 1e-12, alpha, np.nan)


def krippendorff_alpha(
    ratings: Ratings[RaterT, ItemT],
    *,
    metric: Metric = "ordinal",
    categories: Sequence[int] = SCALE,
) -> float | None:
    """Krippendorff's alpha over every rater, missing ratings allowed."""
    return alpha_estimate(ratings, metric=metric, categories=categories, n_boot=0).value


def alpha_estimate(
    ratings: Ratings[RaterT, ItemT],
    *,
    metric: Metric = "ordinal",
    categories: Sequence[int] = SCALE,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> Estimate:
    """Krippendorff's alpha with a bootstrap interval from resampling items.

    ``n`` is the number of pairable items (rated at least twice).
    """
    units = _unit_coincidences(ratings, categories)
    n_units = units.shape[0]
    if n_units == 0:
        return Estimate(None, 0, level=level, note=NOTE_NO_PAIRABLE)
    value = _finite_or_none(
        _alpha_from_coincidence(units.sum(axis=0), metric, categories)
    )
    if value is None:
        return Estimate(None, n_units, level=level, note=NOTE_NO_VARIATION)
    if n_boot <= 0 or n_units < 2:
        return Estimate(value, n_units, level=level)
    k = len(categories)
    flat = units.reshape(n_units, k * k)
    samples = np.concatenate(
        [
            _alpha_from_coincidence(
                (counts @ flat).reshape(-1, k, k), metric, categories
            )
            for counts in bootstrap_counts(n_units, n_boot, seed)
        ]
    )
    low, high = percentile_ci(samples, level)
    return Estimate(value, n_units, low, high, level=level, n_boot=n_boot)
