"""The agreement page: rater science for one round, for researchers and admins."""

from __future__ import annotations

from typing import Any, TypedDict

from django.db.models import Count, Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from annotations.views.charts import ScoreRow, stacked_scores
from models_ml.models import ModelVersion

from ..models import Round
from ..rater_forms import AgreementFilterForm
from ..rater_report import (
    AgreementReport,
    RewardCeilingReport,
    agreement_report,
    reward_ceiling_report,
)
from ..rater_selectors import rating_records
from ..roles import is_admin, is_researcher
from ..stats.agreement import Estimate
from ..stats.drift import MAX_SECONDS_PER_ITEM
from ..users import AnyUser, AuthedRequest
from .access import role_required
from .agreement_charts import ForestRow, forest, kappa_heatmap, nice_ceiling, trend

N_BOOT = 1000
ALPHA_RELIABLE = 0.8


class _Filters(TypedDict):
    """The filters of the agreement form, as the reports take them."""

    modality: str | None
    model_version: ModelVersion | None


def may_read_agreement(user: AnyUser) -> bool:
    return is_admin(user) or is_researcher(user)


@require_GET
@role_required(may_read_agreement)
def agreement_index(request: AuthedRequest) -> HttpResponse:
    rounds = Round.objects.annotate(
        n_ratings=Count("ratings", filter=Q(ratings__retracted_at=None), distinct=True),
        n_raters=Count(
            "ratings__rater", filter=Q(ratings__retracted_at=None), distinct=True
        ),
        n_agreement=Count(
            "items", filter=Q(items__in_agreement_set=True), distinct=True
        ),
    )
    return render(request, "annotations/agreement_index.html", {"rounds": rounds})


def _turing_charts(report: AgreementReport) -> dict[str, Any]:
    """The visual Turing test's charts: per physician, per modality, and the
    scores each gave real and synthetic images."""
    charts: dict[str, Any] = {}
    turing_rows = [
        ForestRow(g, [("P", t.p_synthetic_at_least_real)])
        for g, t in report.turing_by_physician
    ]
    if turing_rows:
        charts["turing_physician"] = forest(
            turing_rows,
            title="P(synthetic ≥ real) per physician",
            reference=0.5,
            reference_label="0.5 = indistinguishable",
        )
        charts["turing_modality"] = forest(
            [
                ForestRow(g, [("P", t.p_synthetic_at_least_real)])
                for g, t in report.turing_by_modality
            ],
            title="P(synthetic ≥ real) per modality",
            reference=0.5,
            reference_label="0.5 = indistinguishable",
        )
        for arm in ("real", "synthetic"):
            charts[f"turing_{arm}"] = stacked_scores(
                [
                    ScoreRow(g, getattr(t, arm).counts)
                    for g, t in report.turing_by_physician
                ],
                title=f"Ratings of {arm} images per physician",
            )
    return charts


def _charts(report: AgreementReport, ceiling: RewardCeilingReport) -> dict[str, Any]:
    charts: dict[str, Any] = {}
    alpha_rows = [ForestRow("all modalities", [("α", report.alpha)])] + [
        ForestRow(m, [("α", e)]) for m, e in report.alpha_by_modality
    ]
    charts["alpha"] = forest(
        alpha_rows,
        title="Krippendorff's alpha per modality",
        low=-0.2,
        reference=ALPHA_RELIABLE,
        reference_label="0.80",
    )
    if len(report.kappa.raters) > 1:
        charts["kappa"] = kappa_heatmap(report.kappa, title="Pairwise quadratic kappa")
    if report.retest:
        charts["retest"] = forest(
            [
                ForestRow(r, [("κ", t.kappa), ("same score", t.exact_agreement)])
                for r, t in report.retest
            ],
            title="Test-retest per physician",
            low=-0.2,
        )
    charts.update(_turing_charts(report))
    if report.score_drift.bins:
        charts["drift_score"] = trend(
            report.score_drift,
            title="Mean score against position in session",
            y_label="mean score",
            y_low=1,
            y_high=3,
        )
    if report.time_drift.bins:
        top = max(b.mean for b in report.time_drift.bins)
        charts["drift_time"] = trend(
            report.time_drift,
            title="Seconds per image against position in session",
            y_label="seconds",
            y_low=0,
            y_high=nice_ceiling(max(5.0, top * 1.1)),
            unit=" s",
        )
    ceiling_rows = [
        ForestRow(
            r.rater,
            [
                ("reward model", r.model_kappa),
                (
                    "colleagues",
                    Estimate(r.human_kappa, r.n_colleagues),
                    f"{r.n_colleagues} colleagues",
                ),
            ],
        )
        for r in ceiling.rows
        if ceiling.reward_model is not None
    ]
    if ceiling_rows and ceiling.n_scored:
        charts["ceiling"] = forest(
            ceiling_rows,
            title="Reward model against the human ceiling (quadratic kappa)",
            low=-0.2,
        )
    return charts


@require_GET
@role_required(may_read_agreement)
def round_agreement(request: AuthedRequest, round_id: int) -> HttpResponse:
    rnd = get_object_or_404(Round, pk=round_id)
    form = AgreementFilterForm(request.GET or None, round=rnd)
    if request.GET and not form.is_valid():
        return render(
            request,
            "annotations/agreement.html",
            {"round": rnd, "form": form},
            status=400,
        )
    data = form.cleaned_data if request.GET else {}
    filters: _Filters = {
        "modality": data.get("modality") or None,
        "model_version": data.get("model_version"),
    }
    records = rating_records(round=rnd, **filters)
    report = agreement_report(round=rnd, n_boot=N_BOOT, records=records, **filters)
    ceiling = reward_ceiling_report(
        round=rnd,
        reward_model=data.get("reward_model"),
        n_boot=N_BOOT,
        records=records,
        **filters,
    )
    context = {
        "round": rnd,
        "form": form,
        "report": report,
        "ceiling": ceiling,
        "charts": _charts(report, ceiling),
        "n_boot": N_BOOT,
        "max_seconds": int(MAX_SECONDS_PER_ITEM),
        "query": request.GET.urlencode(),
    }
    return render(request, "annotations/agreement.html", context)
