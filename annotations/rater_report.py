"""The figures of the agreement page and API, assembled from selectors and stats.

Two reports, both plain data with ``as_dict`` for JSON:

- ``agreement_report``: agreement between physicians (Krippendorff's alpha
  overall and per modality, pairwise kappa, per-physician reliability),
  test-retest per physician, the visual Turing test per physician and per
  modality, and drift of score and time across rating sessions.
- ``reward_ceiling_report``: a reward model's agreement with each physician
  beside the physicians' agreement with each other (the human ceiling).

Between-physician figures use the round's *agreement set* (images every
physician rates) when it has rated items, otherwise every image rated by two
or more physicians; ``scope`` says which.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from statistics import median
from typing import Any

import numpy as np
from scipy import stats

from models_ml.models import ModelVersion

from .models import Round
from .rater_selectors import (
    Matrix,
    RatingRecord,
    first_rating_matrix,
    image_scores,
    rating_records,
    repeat_matrices,
    reward_models_for,
)
from .stats.agreement import DEFAULT_N_BOOT, Estimate, alpha_estimate, kappa_estimate
from .stats.drift import MAX_SECONDS_PER_ITEM, Drift, drift, session_positions
from .stats.raters import KappaMatrix, Retest, pairwise_kappa, retest_agreement
from .stats.turing import TuringResult, turing_by_group

SCOPE_AGREEMENT_SET = "agreement set"
SCOPE_MULTI_RATED = "images rated by two or more physicians"
SCORE_JOB_HINT = (
    "To get them, run the “score round” job for this round with the reward "
    "model (one score per image, stored as ImageScore rows), then reload."
)


def _version_ref(version: ModelVersion | None) -> dict[str, Any] | None:
    return None if version is None else {"id": version.pk, "name": version.name}


def _scope_matrix(records: list[RatingRecord]) -> tuple[str, Matrix]:
    in_set = first_rating_matrix(records, agreement_set_only=True)
    if any(len(v) for v in in_set.values()) and _pairable(in_set):
        return SCOPE_AGREEMENT_SET, in_set
    return SCOPE_MULTI_RATED, _multi_rated(first_rating_matrix(records))


def _multi_rated(matrix: Matrix) -> Matrix:
    """``matrix`` without the images only one physician rated: they pair
    with no one, so between-physician figures cannot use them."""
    raters_of: dict[int, int] = defaultdict(int)
    for scores in matrix.values():
        for image_id in scores:
            raters_of[image_id] += 1
    return {
        rater: {i: s for i, s in scores.items() if raters_of[i] >= 2}
        for rater, scores in matrix.items()
    }


def _pairable(matrix: Matrix) -> bool:
    seen: set[int] = set()
    for scores in matrix.values():
        if seen & scores.keys():
            return True
        seen |= scores.keys()
    return False


@dataclass(frozen=True)
class Reliability:
    rater: str
    kappa: float | None
    n_pairs: int
    n_items: int


@dataclass(frozen=True)
class RaterPace:
    """One physician's time and drift figures."""

    rater: str
    n: int
    median_seconds: float | None
    score_drift: Drift
    time_drift: Drift


@dataclass
class AgreementReport:
    round_id: int
    round_name: str
    modality: str | None
    model_version: dict[str, Any] | None
    scope: str
    counts: dict[str, int]
    alpha: Estimate
    alpha_by_modality: list[tuple[str, Estimate]]
    kappa: KappaMatrix[str]
    reliability: list[Reliability]
    retest: list[tuple[str, Retest]]
    turing_by_physician: list[tuple[str, TuringResult]]
    turing_by_modality: list[tuple[str, TuringResult]]
    score_drift: Drift
    time_drift: Drift
    pace: list[RaterPace] = field(default_factory=list)
    n_boot: int = DEFAULT_N_BOOT
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "round": {"id": self.round_id, "name": self.round_name},
            "filters": {"modality": self.modality, "model_version": self.model_version},
            "scope": self.scope,
            "counts": self.counts,
            "bootstrap": {"n_boot": self.n_boot, "seed": self.seed},
            "alpha": self.alpha.as_dict(),
            "alpha_by_modality": [
                {"modality": m, **e.as_dict()} for m, e in self.alpha_by_modality
            ],
            "kappa_matrix": self.kappa.as_dict(),
            "reliability": [vars(r) for r in self.reliability],
            "retest": [{"rater": r, **t.as_dict()} for r, t in self.retest],
            "turing_by_physician": [
                {"group": g, **t.as_dict()} for g, t in self.turing_by_physician
            ],
            "turing_by_modality": [
                {"group": g, **t.as_dict()} for g, t in self.turing_by_modality
            ],
            "score_drift": self.score_drift.as_dict(),
            "time_drift": self.time_drift.as_dict(),
            "pace": [
                {
                    "rater": p.rater,
                    "n": p.n,
                    "median_seconds": p.median_seconds,
                    "score_slope_per_item": p.score_drift.slope.as_dict(),
                    "seconds_slope_per_item": p.time_drift.slope.as_dict(),
                }
                for p in self.pace
            ],
        }


def _reliability(matrix: KappaMatrix[str]) -> list[Reliability]:
    out: list[Reliability] = []
    for i, rater in enumerate(matrix.raters):
        pairs = [
            (matrix.kappa[i][j], matrix.n[i][j])
            for j in range(len(matrix.raters))
            if j != i and matrix.kappa[i][j] is not None
        ]
        weight = sum(n for _, n in pairs)
        value = (
            sum(k * n for k, n in pairs if k is not None) / weight if weight else None
        )
        out.append(Reliability(str(rater), value, len(pairs), matrix.n[i][i]))
    return out


def _positions(records: list[RatingRecord]) -> list[tuple[RatingRecord, int]]:
    by_rater: dict[str, list[RatingRecord]] = defaultdict(list)
    for r in records:
        by_rater[r.rater].append(r)
    out: list[tuple[RatingRecord, int]] = []
    for rows in by_rater.values():
        times = [r.created_at.timestamp() for r in rows]
        out.extend(zip(rows, session_positions(times), strict=True))
    return out


def _drifts(placed: list[tuple[RatingRecord, int]]) -> tuple[Drift, Drift]:
    timed = [(p, r.time_taken_ms) for r, p in placed if r.time_taken_ms is not None]
    return (
        drift([p for _, p in placed], [r.score for r, _ in placed]),
        drift(
            [p for p, _ in timed],
            [min(ms / 1000, MAX_SECONDS_PER_ITEM) for _, ms in timed],
        ),
    )


def _pace(placed: list[tuple[RatingRecord, int]]) -> list[RaterPace]:
    by_rater: dict[str, list[tuple[RatingRecord, int]]] = defaultdict(list)
    for r, p in placed:
        by_rater[r.rater].append((r, p))
    out = []
    for rater in sorted(by_rater):
        rows = by_rater[rater]
        seconds = [
            r.time_taken_ms / 1000 for r, _ in rows if r.time_taken_ms is not None
        ]
        score_d, time_d = _drifts(rows)
        out.append(
            RaterPace(
                rater, len(rows), median(seconds) if seconds else None, score_d, time_d
            )
        )
    return out


def agreement_report(
    *,
    round: Round,
    modality: str | None = None,
    model_version: ModelVersion | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    records: list[RatingRecord] | None = None,
) -> AgreementReport:
    """Every between-physician, test-retest, Turing and drift figure of a round.

    ``records`` may be passed in when the caller already read them with the
    same filters."""
    if records is None:
        records = rating_records(
            round=round, modality=modality, model_version=model_version
        )
    firsts = [r for r in records if not r.is_repeat]
    scope, matrix = _scope_matrix(records)

    modality_of = {r.image_id: r.modality for r in firsts}
    by_modality: dict[str, Matrix] = defaultdict(lambda: defaultdict(dict))
    for rater, scores in matrix.items():
        for image_id, score in scores.items():
            by_modality[modality_of[image_id]][rater][image_id] = score

    kappa = pairwise_kappa(matrix)
    first_rep, repeats = repeat_matrices(records)
    retest = [
        (str(rater), result)
        for rater, result in retest_agreement(
            first_rep, repeats, n_boot=n_boot, seed=seed
        ).items()
    ]
    placed = _positions(records)
    score_drift, time_drift = _drifts(placed)
    return AgreementReport(
        round_id=round.pk,
        round_name=round.name,
        modality=modality,
        model_version=_version_ref(model_version),
        scope=scope,
        counts={
            "ratings": len(records),
            "first_ratings": len(firsts),
            "repeats": len(records) - len(firsts),
            "physicians": len({r.rater for r in records}),
            "images": len({r.image_id for r in firsts}),
            "real_controls": len({r.image_id for r in firsts if r.is_control}),
            "images_in_scope": len({i for s in matrix.values() for i in s}),
        },
        alpha=alpha_estimate(matrix, n_boot=n_boot, seed=seed),
        alpha_by_modality=[
            (m, alpha_estimate(by_modality[m], n_boot=n_boot, seed=seed))
            for m in sorted(by_modality)
        ],
        kappa=kappa,
        reliability=_reliability(kappa),
        retest=retest,
        turing_by_physician=sorted(
            turing_by_group(
                ((r.rater, r.is_synthetic, r.score) for r in firsts),
                n_boot=n_boot,
                seed=seed,
            ).items()
        ),
        turing_by_modality=sorted(
            turing_by_group(
                ((r.modality, r.is_synthetic, r.score) for r in firsts),
                n_boot=n_boot,
                seed=seed,
            ).items()
        ),
        score_drift=score_drift,
        time_drift=time_drift,
        pace=_pace(placed),
        n_boot=n_boot,
        seed=seed,
    )


# --- reward model against the human ceiling ------------------------------------


def spearman_estimate(
    x: list[float], y: list[float], *, level: float = 0.95
) -> Estimate:
    """Spearman's rho with a Fisher-z interval (standard error 1.03 / sqrt(n - 3),
    Fieller, Hartley and Pearson 1957); undefined for constant input."""
    n = len(x)
    if n < 3:
        return Estimate(None, n, level=level, note="fewer than three items")
    if len(set(x)) < 2 or len(set(y)) < 2:
        return Estimate(None, n, level=level, note="undefined: one side is constant")
    # Pearson correlation of average ranks: spearmanr's value, without its
    # per-call overhead (the ceiling needs one per pair of physicians).
    rho = float(np.corrcoef(stats.rankdata(x), stats.rankdata(y))[0, 1])
    if n < 4 or abs(rho) >= 1:
        return Estimate(rho, n, level=level)
    z = math.atanh(rho)
    half = float(stats.norm.ppf(0.5 + level / 2)) * 1.03 / math.sqrt(n - 3)
    return Estimate(rho, n, math.tanh(z - half), math.tanh(z + half), level=level)


@dataclass(frozen=True)
class CeilingRow:
    rater: str
    model_kappa: Estimate
    model_spearman: Estimate
    human_kappa: float | None
    human_spearman: float | None
    n_colleagues: int


@dataclass
class RewardCeilingReport:
    round_id: int
    reward_model: dict[str, Any] | None
    reward_models: list[dict[str, Any]]
    scope: str
    n_items: int
    n_scored: int
    note: str
    rows: list[CeilingRow]
    model_mean_kappa: float | None
    human_mean_kappa: float | None

    @property
    def n_missing(self) -> int:
        return self.n_items - self.n_scored

    def as_dict(self) -> dict[str, Any]:
        return {
            "round": {"id": self.round_id},
            "reward_model": self.reward_model,
            "reward_models": self.reward_models,
            "scope": self.scope,
            "n_items": self.n_items,
            "n_scored": self.n_scored,
            "n_missing": self.n_missing,
            "note": self.note,
            "model_mean_kappa": self.model_mean_kappa,
            "human_mean_kappa": self.human_mean_kappa,
            "rows": [
                {
                    "rater": r.rater,
                    "model_kappa": r.model_kappa.as_dict(),
                    "model_spearman": r.model_spearman.as_dict(),
                    "human_kappa": r.human_kappa,
                    "human_spearman": r.human_spearman,
                    "n_colleagues": r.n_colleagues,
                }
                for r in self.rows
            ],
        }


def _weighted_mean(pairs: list[tuple[float | None, int]]) -> float | None:
    kept = [(v, n) for v, n in pairs if v is not None and n > 0]
    total = sum(n for _, n in kept)
    return sum(v * n for v, n in kept) / total if total else None


def _model_score(expected: float) -> int:
    return int(min(3, max(1, math.floor(expected + 0.5))))


def _ceiling_note(
    reward_model: ModelVersion | None, *, n_items: int, n_scored: int
) -> str:
    if reward_model is None:
        return "No reward model has scored this round yet. " + SCORE_JOB_HINT
    if n_scored < n_items:
        return (
            f"{n_items - n_scored} of {n_items} images in scope have no "
            f"score from {reward_model.name}; they are left out. " + SCORE_JOB_HINT
        )
    return ""


def _pairwise_spearman(
    scored: dict[str, dict[int, int]],
) -> dict[tuple[int, int], Estimate]:
    """Spearman's rho of every two physicians on the items both rated, by
    their positions in ``scored``."""
    raters = list(scored)
    rhos: dict[tuple[int, int], Estimate] = {}
    for a in range(len(raters)):
        for b in range(a + 1, len(raters)):
            first, second = scored[raters[a]], scored[raters[b]]
            shared = [i for i in first if i in second]
            rhos[a, b] = rhos[b, a] = spearman_estimate(
                [float(first[i]) for i in shared], [float(second[i]) for i in shared]
            )
    return rhos


def reward_ceiling_report(
    *,
    round: Round,
    reward_model: ModelVersion | None = None,
    modality: str | None = None,
    model_version: ModelVersion | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    records: list[RatingRecord] | None = None,
) -> RewardCeilingReport:
    """The reward model against each physician and the physicians against
    each other, on the same items (the scope of the agreement report).

    The model's rating is its expected score rounded half up to 1, 2 or 3 for
    kappa, and the unrounded expected score for Spearman.  The human ceiling
    of a physician is their item-weighted mean kappa (and Spearman) with the
    other physicians on those items.  ``records`` may be passed in when the
    caller already read them with the same filters.
    """
    available = reward_models_for(round=round)
    reward_model = (
        reward_model or round.reward_model_version or next(iter(available), None)
    )
    if records is None:
        records = rating_records(
            round=round, modality=modality, model_version=model_version
        )
    scope, matrix = _scope_matrix(records)
    items = sorted({i for s in matrix.values() for i in s})
    scores = (
        image_scores(model_version=reward_model, image_ids=items)
        if reward_model
        else {}
    )
    note = _ceiling_note(reward_model, n_items=len(items), n_scored=len(scores))
    rows: list[CeilingRow] = []
    human_pairs: list[tuple[float | None, int]] = []
    model_pairs: list[tuple[float | None, int]] = []
    scored = {
        rater: {i: s for i, s in given.items() if i in scores}
        for rater, given in matrix.items()
    }
    raters = list(scored)
    kappas = pairwise_kappa(scored)
    rhos = _pairwise_spearman(scored)
    for a, rater in enumerate(raters):
        mine = scored[rater]
        model = {i: _model_score(scores[i][0]) for i in mine}
        m_kappa = kappa_estimate(mine, model, n_boot=n_boot, seed=seed)
        m_rho = spearman_estimate(
            [float(s) for s in mine.values()], [scores[i][0] for i in mine]
        )
        others = [b for b in range(len(raters)) if b != a and kappas.n[a][b]]
        colleague_k = [(kappas.kappa[a][b], kappas.n[a][b]) for b in others]
        rows.append(
            CeilingRow(
                rater=str(rater),
                model_kappa=m_kappa,
                model_spearman=m_rho,
                human_kappa=_weighted_mean(colleague_k),
                human_spearman=_weighted_mean(
                    [(rhos[a, b].value, rhos[a, b].n) for b in others]
                ),
                n_colleagues=len(others),
            )
        )
        model_pairs.append((m_kappa.value, m_kappa.n))
        human_pairs.extend(colleague_k)
    return RewardCeilingReport(
        round_id=round.pk,
        reward_model=_version_ref(reward_model),
        reward_models=[_version_ref(v) for v in available],  # type: ignore[misc]
        scope=scope,
        n_items=len(items),
        n_scored=len(scores),
        note=note,
        rows=rows,
        model_mean_kappa=_weighted_mean(model_pairs),
        human_mean_kappa=_weighted_mean(human_pairs),
    )
