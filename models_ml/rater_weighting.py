"""Per-physician weights for reward-model training.

``rater_weighting`` (a reward training option) chooses how much each
physician's ratings count:

- ``none`` (default): every rating weighs 1.
- ``expertise``: by the physician's expert level, ``EXPERTISE_WEIGHTS``:
  trainee 0.5, specialist 1.0, senior expert 1.5.  A physician with no level
  on record weighs as a specialist (1.0).
- ``reliability``: by agreement with colleagues, the quadratic-kappa
  ``rater_reliability`` of ``annotations.stats.agreement`` (mean kappa with
  every other physician over at least ``MIN_OVERLAP`` commonly rated images of
  a round), clipped to [``MIN_RELIABILITY_WEIGHT``, 1]: a physician at chance
  or below still counts a little, never negatively.  A physician whose
  reliability cannot be measured (too few images in common with anyone) gets
  the median weight of those who could be measured, i.e. is treated as a
  typical colleague; when nobody can be measured, everyone weighs 1.

Whatever the scheme, the weights are then scaled so that the mean weight over
the training ratings is 1: the balance against the reward model's down-weighted
negatives and its regularisation stays as without weighting, and only the
physicians' relative say changes.

Plain Python, no Django: the rows come from the ratings CSV that the training
job writes, so the weights describe exactly the ratings trained on.
"""

from __future__ import annotations

import statistics
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

RATER_WEIGHTINGS = ("none", "reliability", "expertise")
EXPERTISE_WEIGHTS = {"trainee": 0.5, "specialist": 1.0, "expert": 1.5}
DEFAULT_EXPERTISE_WEIGHT = EXPERTISE_WEIGHTS["specialist"]
MIN_RELIABILITY_WEIGHT = 0.1
MIN_OVERLAP = 5


@dataclass(frozen=True)
class RatedRow:
    """One training rating as the weighting sees it."""

    rater: str
    item: Hashable
    score: int
    expert_level: str = ""


@dataclass
class RaterWeighting:
    scheme: str
    weights: dict[str, float]
    raw: dict[str, float] = field(default_factory=dict)
    reliability: dict[str, float | None] | None = None
    default_weight: float | None = None

    def row_weights(self, rows: Sequence[RatedRow]) -> list[float]:
        return [self.weights[row.rater] for row in rows]

    def as_params(self) -> dict[str, Any]:
        """What the reward ModelVersion records in its params."""
        out: dict[str, Any] = {
            "rater_weighting": self.scheme,
            "rater_weights": {k: round(v, 6) for k, v in self.weights.items()},
        }
        if self.scheme != "none":
            out["rater_weights_raw"] = {k: round(v, 6) for k, v in self.raw.items()}
        if self.reliability is not None:
            out["rater_reliability"] = {
                k: None if v is None else round(v, 6)
                for k, v in self.reliability.items()
            }
            out["rater_weight_default"] = self.default_weight
        return out


def _expertise(rows: Sequence[RatedRow]) -> dict[str, float]:
    levels: dict[str, str] = {}
    for row in rows:
        levels.setdefault(row.rater, row.expert_level)
    return {
        rater: EXPERTISE_WEIGHTS.get(level, DEFAULT_EXPERTISE_WEIGHT)
        for rater, level in levels.items()
    }


def _reliability(
    rows: Sequence[RatedRow],
) -> tuple[dict[str, float], dict[str, float | None], float]:
    from annotations.stats.raters import rater_reliability

    table: dict[str, dict[Hashable, int]] = {}
    for row in rows:
        table.setdefault(row.rater, {}).setdefault(row.item, row.score)
    measured = rater_reliability(table, min_overlap=MIN_OVERLAP)
    clipped = {
        str(r): min(1.0, max(MIN_RELIABILITY_WEIGHT, float(k)))
        for r, k in measured.items()
    }
    default = statistics.median(clipped.values()) if clipped else 1.0
    raw = {rater: clipped.get(rater, default) for rater in table}
    kappas: dict[str, float | None] = {
        rater: (float(measured[rater]) if rater in measured else None)
        for rater in table
    }
    return raw, kappas, default


def rater_weighting(*, rows: Sequence[RatedRow], scheme: str) -> RaterWeighting:
    """Weights per physician under ``scheme``, scaled to mean 1 over ``rows``."""
    if scheme not in RATER_WEIGHTINGS:
        raise ValueError(
            f"rater_weighting {scheme!r} is not one of {', '.join(RATER_WEIGHTINGS)}"
        )
    reliability: dict[str, float | None] | None = None
    default: float | None = None
    if scheme == "expertise":
        raw = _expertise(rows)
    elif scheme == "reliability":
        raw, reliability, default = _reliability(rows)
    else:
        raw = {row.rater: 1.0 for row in rows}
    total = sum(raw[row.rater] for row in rows)
    scale = len(rows) / total if total > 0 else 1.0
    weights = {rater: w * scale for rater, w in raw.items()}
    return RaterWeighting(
        scheme=scheme,
        weights=weights,
        raw=raw,
        reliability=reliability,
        default_weight=default,
    )
