"""The round dashboard: did the last round help?  Plots are inline SVG."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from django.db.models import Avg, Count, Q
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from annotations.models import Image, ImageSource, Rating, Round
from annotations.roles import is_admin
from annotations.users import AuthedRequest
from annotations.views.access import role_required
from annotations.views.charts import (
    ScoreRow,
    ShareRow,
    metric_lines,
    reward_scatter,
    share_intervals,
    stacked_scores,
)

from ..gate import comparison_grid, comparison_verdict
from ..models import Comparison, Job, ModelKind, ModelVersion

REAL = "real images"
MAX_SCATTER = 400
MAX_ROUND_ROWS = 24
MAX_GATES = 5
REWARD_SERIES = (
    ("spearman", "Spearman"),
    ("kappa_quadratic", "κ quadratic"),
    ("auc_rated_3", "AUC rated 3"),
)


def _live() -> Any:
    """Live first ratings: a repeat is a second look, not a second vote."""
    return Rating.objects.filter(retracted_at=None, is_repeat=False)


def _version_names() -> dict[int | None, str]:
    # Keyed by id; looked up with a round's or a rating's version, which may
    # be None (real images).
    return dict(ModelVersion.objects.values_list("pk", "name"))


def _source_label(version_id: int | None, names: dict[int | None, str]) -> str:
    return names.get(version_id, f"#{version_id}") if version_id else REAL


def score_rows() -> list[ScoreRow]:
    """Rating counts 1/2/3 per diffusion version, real images last."""
    names = _version_names()
    counts: dict[int | None, dict[int, int]] = defaultdict(dict)
    rows = _live().values("image__model_version", "score").annotate(n=Count("id"))
    for row in rows:
        counts[row["image__model_version"]][row["score"]] = row["n"]
    ordered = sorted(counts, key=lambda v: (v is None, v or 0))
    return [ScoreRow(_source_label(v, names), counts[v]) for v in ordered]


@dataclass(frozen=True)
class Verdict:
    text: str
    tone: str


def round_rows() -> tuple[list[ShareRow], Verdict | None]:
    """Share rated 3 per round and model version, and what the last round says."""
    names = _version_names()
    rows = list(
        _live()
        .values("round", "round__name", "image__model_version")
        .annotate(n=Count("id"), k=Count("id", filter=Q(score=3)))
        .order_by("round", "image__model_version")
    )
    if not rows:
        return [], None
    last_round = max(r["round"] for r in rows)
    shares = [
        ShareRow(
            label=f"{r['round__name']} · "
            f"{_source_label(r['image__model_version'], names)}",
            k=r["k"],
            n=r["n"],
            highlight=r["round"] == last_round,
        )
        for r in rows
    ][-MAX_ROUND_ROWS:]
    return shares, _verdict(last_round, rows, names)


def _verdict(
    last_round: int, rows: list[dict[str, Any]], names: dict[int | None, str]
) -> Verdict | None:
    rnd = Round.objects.get(pk=last_round)
    by_version = {
        r["image__model_version"]: ShareRow("", r["k"], r["n"])
        for r in rows
        if r["round"] == last_round
    }
    new_id, old_id = rnd.model_version_id, rnd.compare_model_version_id
    new = by_version.get(new_id)
    old = by_version.get(old_id) if old_id else None
    if new is None:
        return None
    if old is None:
        # A round without a comparison is held against earlier rounds of the
        # same version or of its parent.
        parent_id = getattr(rnd.model_version, "parent_id", None)
        earlier = [
            r
            for r in rows
            if r["round"] < last_round
            and r["image__model_version"] in (new_id, parent_id)
        ]
        if not earlier:
            return Verdict(
                f"{rnd.name}: {_describe(names.get(new_id, '?'), new)}. "
                "Nothing earlier to compare with yet.",
                "neutral",
            )
        old = ShareRow("", sum(r["k"] for r in earlier), sum(r["n"] for r in earlier))
        old_name = "earlier rounds"
    else:
        old_name = names.get(old_id, "?")
    new_name = names.get(new_id, "?")
    (new_lo, new_hi), (old_lo, old_hi) = new.interval, old.interval
    if new_lo > old_hi:
        head, tone = "The last round helped", "good"
    elif new_hi < old_lo:
        head, tone = "The last round made things worse", "bad"
    else:
        head, tone = "No clear difference yet: the 95% intervals overlap", "neutral"
    return Verdict(
        f"{head}. {rnd.name}: {_describe(new_name, new)} vs "
        f"{_describe(old_name, old)}.",
        tone,
    )


def _last_rated_round() -> int | None:
    return _live().order_by("-round").values_list("round", flat=True).first()


def _describe(name: str, row: ShareRow) -> str:
    lo, hi = row.interval
    return f"{name} {row.share:.0%} rated 3 ({row.k}/{row.n}, 95% CI {lo:.0%}–{hi:.0%})"


def reward_series() -> tuple[list[str], dict[str, Sequence[float | None]]]:
    versions = list(
        ModelVersion.objects.filter(kind=ModelKind.REWARD).order_by("created_at", "id")
    )
    labels = [f"#{v.pk}" for v in versions]
    series: dict[str, Sequence[float | None]] = {
        label: [_number(v.metrics.get(key)) for v in versions]
        for key, label in REWARD_SERIES
    }
    return labels, series


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def scatter_points() -> list[tuple[float, float, str]]:
    images = (
        Image.objects.filter(
            source=ImageSource.GENERATED,
            reward_score__isnull=False,
            ratings__retracted_at=None,
            ratings__is_repeat=False,
        )
        .annotate(mean=Avg("ratings__score"))
        .filter(mean__isnull=False)
        .order_by("-id")
        .values_list("uid", "mean", "reward_score")[:MAX_SCATTER]
    )
    # reward_score__isnull=False: every reward is a number.
    return [
        (float(mean), float(cast(float, reward)), uid.hex[:8])
        for uid, mean, reward in images
    ]


@require_GET
@role_required(is_admin)
def dashboard_page(request: AuthedRequest) -> HttpResponse:
    scores = score_rows()
    shares, verdict = round_rows()
    gates = [
        (c, comparison_verdict(c), comparison_grid(c))
        for c in Comparison.objects.select_related(
            "round", "candidate", "parent", "control"
        )[:MAX_GATES]
    ]
    if gates and verdict is not None and gates[0][0].round_id == _last_rated_round():
        # The gate says more of a comparison round than the intervals do.
        verdict = None
    labels, series = reward_series()
    points = scatter_points()
    context = {
        "verdict": verdict,
        "scores_svg": stacked_scores(scores, title="Rating distribution per model")
        if scores
        else None,
        "shares_svg": share_intervals(shares, title="Share rated 3 per round")
        if shares
        else None,
        "reward_svg": metric_lines(labels, series, title="Reward model metrics")
        if labels
        else None,
        "scatter_svg": reward_scatter(points, title="Reward against rating")
        if points
        else None,
        "jobs": Job.objects.select_related("created_by")[:25],
        "gates": gates,
    }
    return render(request, "models_ml/dashboard.html", context)
