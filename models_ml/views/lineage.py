"""The lineage page: every model version as a tree under its parent."""

from __future__ import annotations

from typing import Any

from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from annotations.roles import is_admin, is_researcher
from annotations.users import AuthedRequest
from annotations.views.access import role_required

from ..gate import comparison_grid, comparison_verdict
from ..models import Comparison, ModelKind, ModelVersion, VersionSample
from ..selectors import LineageNode, model_version_tree

DIFFUSION_METRICS = (
    ("steps", "steps"),
    ("final_loss", "final loss"),
    ("resumed_from_step", "resumed from step"),
)
REWARD_METRICS = (
    ("spearman", "Spearman"),
    ("kappa_quadratic", "κ (quadratic)"),
    ("auc_rated_3", "AUC rated 3"),
    ("accuracy", "accuracy"),
    ("threshold", "threshold"),
)


def key_metrics(version: ModelVersion) -> list[tuple[str, Any]]:
    """The few numbers worth showing next to a version, in a fixed order."""
    metrics = dict(version.metrics or {})
    losses = metrics.get("losses")
    if isinstance(losses, list) and losses:
        metrics["final_loss"] = losses[-1]
    wanted = REWARD_METRICS if version.kind == ModelKind.REWARD else DIFFUSION_METRICS
    shown = []
    for key, label in wanted:
        value = metrics.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, float):
            value = f"{value:.3f}"
        shown.append((label, value))
    drift = metrics.get("drift")
    if isinstance(drift, dict) and drift.get("stopped"):
        shown.append(("drift", "stopped early"))
    baseline = metrics.get("drift_baseline")
    if isinstance(drift, list) and drift and isinstance(baseline, dict):
        last = drift[-1]
        for key, label in (
            ("distance", "distance to real"),
            ("diversity", "diversity"),
        ):
            if isinstance(last.get(key), (int, float)) and baseline.get(key):
                ratio = last[key] / baseline[key]
                shown.append((label, f"×{ratio:.2f} of parent's"))
    return shown


def _decorate(nodes: list[LineageNode]) -> list[dict[str, Any]]:
    return [
        {
            "version": node.version,
            "metrics": key_metrics(node.version),
            "rounds": list(node.version.trained_on_rounds.all()),
            "samples": list(node.version.samples.all()),
            "children": _decorate(node.children),
        }
        for node in nodes
    ]


@require_GET
@role_required(is_admin)
def lineage_page(request: AuthedRequest) -> HttpResponse:
    context = {
        "diffusion": _decorate(model_version_tree(kind=ModelKind.DIFFUSION)),
        "reward": _decorate(model_version_tree(kind=ModelKind.REWARD)),
    }
    return render(request, "models_ml/lineage.html", context)


@require_GET
@role_required(is_admin)
def version_page(request: AuthedRequest, version_id: int) -> HttpResponse:
    """One version: its facts, metrics, sample grid and comparison rounds."""
    version = get_object_or_404(
        ModelVersion.objects.select_related("parent", "dataset", "job"), pk=version_id
    )
    comparisons = [
        (c, comparison_verdict(c), comparison_grid(c))
        for c in Comparison.objects.filter(candidate=version).select_related(
            "round", "candidate", "parent", "control"
        )
    ]
    return render(
        request,
        "models_ml/version.html",
        {
            "version": version,
            "metrics": key_metrics(version),
            "samples": list(version.samples.all()),
            "children": list(version.children.order_by("created_at")),
            "rounds": list(version.trained_on_rounds.all()),
            "comparisons": comparisons,
        },
    )


@require_GET
@role_required(lambda user: is_admin(user) or is_researcher(user))
def version_sample(request: AuthedRequest, sample_id: int) -> FileResponse:
    """A sample grid's PNG (generated images only: no patient data)."""
    sample = get_object_or_404(VersionSample, pk=sample_id)
    try:
        handle = sample.file.open("rb")
    except FileNotFoundError as exc:
        raise Http404 from exc
    response = FileResponse(handle, content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response
