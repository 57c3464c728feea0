"""Statistics of comparisons between generators: intervals, paired tests, power.

Torch-free (numpy only), so the web process uses the same functions as the
experiments: the promotion gate's verdict and the retraining form's
proposal come from here.

A comparison round draws every arm (parent, new version, control, ...) on
the same prompts and seeds. For one seed ``s`` let ``x_s`` and ``y_s`` be the
shares of two arms' ratings of that seed's image that are 3. The paired test
of "arm x is rated 3 more often than arm y" is the exact sign-flip
(permutation) test of the mean of ``d_s = x_s - y_s``: under the null each
difference is as likely to have either sign. With one rating per image this
is exactly McNemar's exact test (only discordant seeds count).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

Z95 = 1.959964


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95 % by default)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison of arm x against arm y over shared seeds."""

    n_pairs: int
    # Seeds where x did better / worse than y (for binary outcomes: the
    # discordant pairs McNemar counts).
    better: int
    worse: int
    mean_difference: float
    p_value: float

    def beats(self, alpha: float) -> bool:
        """x is significantly better than y at two-sided level ``alpha``."""
        return self.mean_difference > 0 and self.p_value < alpha


# Beyond this many integer steps in the difference sum the exact
# distribution is replaced by its normal approximation.
_EXACT_LIMIT = 2_000_000


def paired_sign_flip_test(differences: Sequence[Fraction | int]) -> PairedTest:
    """Exact two-sided sign-flip test of ``mean(differences) == 0``.

    Differences are exact fractions (shares of ratings), so the null
    distribution of their sum is computed exactly, by convolution over a
    common denominator; the p-value is ``P(|S| >= |s_observed|)``.
    """
    values = [Fraction(d) for d in differences]
    n = len(values)
    better = sum(1 for d in values if d > 0)
    worse = sum(1 for d in values if d < 0)
    if n == 0:
        return PairedTest(0, 0, 0, 0.0, 1.0)
    mean = float(sum(values, Fraction(0)) / n)
    nonzero = [abs(d) for d in values if d != 0]
    if not nonzero:
        return PairedTest(n, 0, 0, 0.0, 1.0)
    scale = math.lcm(*(d.denominator for d in nonzero))
    steps = [int(d * scale) for d in nonzero]
    observed = abs(int(sum(values, Fraction(0)) * scale))
    total = sum(steps)
    if total * len(steps) > _EXACT_LIMIT:
        sd = math.sqrt(sum(s * s for s in steps))
        z = (observed - 0.5) / sd if observed > 0 else 0.0
        p = math.erfc(z / math.sqrt(2))
        return PairedTest(n, better, worse, mean, min(1.0, p))
    # dist[k] = P(S = k - total) under random signs.
    dist = np.zeros(2 * total + 1)
    dist[total] = 1.0
    for step in steps:
        shifted = np.zeros_like(dist)
        shifted[step:] += dist[:-step] * 0.5
        shifted[:-step] += dist[step:] * 0.5
        dist = shifted
    offsets = np.abs(np.arange(-total, total + 1))
    p = float(dist[offsets >= observed].sum())
    return PairedTest(n, better, worse, mean, min(1.0, p))


def mcnemar_exact(before: Sequence[bool], after: Sequence[bool]) -> dict[str, float]:
    """McNemar's exact test of paired yes/no outcomes (same seeds, two models):
    ``gained`` went from no to yes, ``lost`` from yes to no."""
    if len(before) != len(after):
        raise ValueError("paired outcomes differ in length")
    pairs = zip(before, after, strict=True)
    test = paired_sign_flip_test([int(a) - int(b) for b, a in pairs])
    return {"gained": test.better, "lost": test.worse, "p_value": test.p_value}


def _critical_gains(max_pairs: int, alpha: float) -> np.ndarray:
    """For each number of discordant pairs D, the fewest gains that make the
    exact two-sided McNemar test significant (D + 1 when none does)."""
    from scipy.stats import binom

    critical = np.full(max_pairs + 1, 0, dtype=np.int64)
    for d in range(max_pairs + 1):
        critical[d] = d + 1
        if d == 0:
            continue
        gains = np.arange(d + 1)
        # Two-sided p of g gains is 2 * P(X >= max(g, d - g)), capped at 1.
        upper = binom.sf(np.maximum(gains, d - gains) - 1, d, 0.5)
        p = np.minimum(1.0, 2 * upper)
        significant = np.nonzero((p < alpha) & (gains * 2 > d))[0]
        if len(significant):
            critical[d] = int(significant[0])
    return critical


def _joint(p_base: float, p_new: float, correlation: float) -> float:
    """P(both rated 3) for two arms with these shares and phi correlation."""
    spread = math.sqrt(p_base * (1 - p_base) * p_new * (1 - p_new))
    both = p_base * p_new + correlation * spread
    return min(max(both, max(0.0, p_base + p_new - 1)), min(p_base, p_new))


def gate_power(
    *,
    n_pairs: int,
    p_base: float,
    gain: float,
    correlation: float = 0.5,
    alpha: float = 0.05,
    against: int = 2,
    simulations: int = 4000,
    seed: int = 0,
) -> float:
    """How often a new version ``gain`` better than its parent (and than the
    control, which is assumed as good as the parent) passes the gate.

    Simulates ``simulations`` comparison rounds of ``n_pairs`` seeds with one
    rating per image: the new arm rated 3 with probability ``p_base + gain``,
    each of the ``against`` other arms with ``p_base``, each correlated with
    the new arm's outcome on the same seed (``correlation``, phi). The gate
    passes when McNemar's exact test beats every other arm at ``alpha``.
    Seeded, so the same question gets the same answer.
    """
    if n_pairs < 1:
        return 0.0
    p_new = min(max(p_base + gain, 0.0), 1.0)
    p_base = min(max(p_base, 0.0), 1.0)
    rng = np.random.default_rng(seed)
    both = _joint(p_base, p_new, correlation)
    given_yes = both / p_new if p_new > 0 else 0.0
    given_no = (p_base - both) / (1 - p_new) if p_new < 1 else 0.0
    critical = _critical_gains(n_pairs, alpha)
    new = rng.random((simulations, n_pairs)) < p_new
    passed = np.ones(simulations, dtype=bool)
    for _ in range(against):
        chance = np.where(new, given_yes, given_no)
        other = rng.random((simulations, n_pairs)) < chance
        gains = (new & ~other).sum(axis=1)
        losses = (~new & other).sum(axis=1)
        passed &= gains >= critical[gains + losses]
    return float(passed.mean())


def images_per_prompt_for_power(
    *,
    prompts: int,
    p_base: float,
    gain: float,
    target: float = 0.8,
    correlation: float = 0.5,
    alpha: float = 0.05,
    against: int = 2,
    candidates: Sequence[int] = (2, 4, 6, 8, 12, 16, 24, 32, 48, 64),
) -> list[tuple[int, float]]:
    """Gate power at each candidate number of images per prompt and arm, up
    to the first that reaches ``target`` (or all of them)."""
    rows = []
    for per_prompt in candidates:
        power = gate_power(
            n_pairs=prompts * per_prompt,
            p_base=p_base,
            gain=gain,
            correlation=correlation,
            alpha=alpha,
            against=against,
        )
        rows.append((per_prompt, power))
        if power >= target:
            break
    return rows
