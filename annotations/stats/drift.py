"""Drift across a rating session: score and time per item against position.

A *session* is a run of one physician's ratings in one round with no pause
longer than ``gap_seconds`` (default 30 minutes, the idle log-out);
``session_positions`` numbers the ratings 1, 2, … within each session.
``drift`` fits an ordinary least-squares line of a value (score, or seconds
per item) on position and reports the slope per item with its t interval, plus
per-position-bin means for a chart.

Seconds per item are skewed by interruptions, so callers clip them
(``MAX_SECONDS_PER_ITEM``) before fitting; the page says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from .agreement import Estimate

SESSION_GAP_SECONDS = 30 * 60
MAX_SECONDS_PER_ITEM = 300.0
MAX_BINS = 20


@dataclass(frozen=True)
class DriftBin:
    first: int
    last: int
    n: int
    mean: float


@dataclass(frozen=True)
class Drift:
    """Slope per item with its interval, the intercept and binned means."""

    n: int
    slope: Estimate
    intercept: float | None
    bins: list[DriftBin] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "slope_per_item": self.slope.as_dict(),
            "intercept": self.intercept,
            "bins": [vars(b) for b in self.bins],
        }


def session_positions(
    times: Sequence[float], *, gap_seconds: float = SESSION_GAP_SECONDS
) -> list[int]:
    """1-based position of each rating in its session; ``times`` ascending, seconds."""
    positions: list[int] = []
    previous: float | None = None
    for t in times:
        if previous is not None and t < previous:
            raise ValueError("times must be in ascending order")
        if previous is None or t - previous > gap_seconds:
            positions.append(1)
        else:
            positions.append(positions[-1] + 1)
        previous = t
    return positions


def _bins(x: np.ndarray, y: np.ndarray, max_bins: int) -> list[DriftBin]:
    top = int(x.max())
    width = max(1, math.ceil(top / max_bins))
    out = []
    for start in range(1, top + 1, width):
        mask = (x >= start) & (x < start + width)
        if mask.any():
            out.append(
                DriftBin(
                    start, start + width - 1, int(mask.sum()), float(y[mask].mean())
                )
            )
    return out


def drift(
    positions: Sequence[int],
    values: Sequence[float],
    *,
    level: float = 0.95,
    max_bins: int = MAX_BINS,
) -> Drift:
    """OLS slope of ``values`` on ``positions``; undefined below 3 points or
    when every position is the same."""
    if len(positions) != len(values):
        raise ValueError("positions and values differ in length")
    n = len(positions)
    if n == 0:
        return Drift(0, Estimate(None, 0, level=level, note="no ratings"), None)
    x = np.asarray(positions, dtype=float)
    y = np.asarray(values, dtype=float)
    bins = _bins(x, y, max_bins)
    if n < 3 or np.ptp(x) == 0:
        note = "fewer than three ratings" if n < 3 else "every rating at one position"
        return Drift(n, Estimate(None, n, level=level, note=note), None, bins)
    if np.ptp(y) == 0:
        # A constant series fits exactly: slope 0 with no uncertainty
        # (scipy reports a NaN standard error here).
        return Drift(n, Estimate(0.0, n, 0.0, 0.0, level=level), float(y[0]), bins)
    fit = stats.linregress(x, y)
    half = float(stats.t.ppf(0.5 + level / 2, n - 2) * fit.stderr)
    slope = Estimate(
        float(fit.slope),
        n,
        float(fit.slope - half),
        float(fit.slope + half),
        level=level,
    )
    return Drift(n, slope, float(fit.intercept), bins)
