"""Admin pages for rounds: list, create, open and close.

Scoring a round, abandoning one whose generation failed and retrying that
generation are the learning loop's actions: their views are in
``models_ml/views/rounds.py`` and answer through ``round_action_respond``.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from models_ml.models import Job, ModelKind, ModelVersion

from ..errors import DomainError
from ..forms import RoundCreateForm
from ..models import Round
from ..roles import is_admin
from ..services.rounds import round_close, round_create, round_open
from ..users import AuthedRequest
from .access import HtmxRequest, role_required

LIST_TEMPLATE = "annotations/rounds.html"


def _rounds() -> QuerySet[Round]:
    """Rounds with their counts and the status of the job generating them."""
    job_id = Cast(KeyTextTransform("job_id", "settings"), IntegerField())
    job_status = Job.objects.filter(pk=OuterRef("generation_job_id")).values("status")
    return (
        Round.objects.select_related("reward_model_version")
        .alias(generation_job_id=job_id)
        .annotate(
            n_images=Count("items", distinct=True),
            n_controls=Count("items", filter=Q(items__is_control=True), distinct=True),
            n_agreement=Count(
                "items", filter=Q(items__in_agreement_set=True), distinct=True
            ),
            n_ratings=Count(
                "ratings",
                filter=Q(ratings__retracted_at=None, ratings__is_repeat=False),
                distinct=True,
            ),
            job_status=Subquery(job_status[:1]),
        )
        .prefetch_related("raters")
    )


def _reward_versions() -> list[ModelVersion]:
    return list(ModelVersion.objects.filter(kind=ModelKind.REWARD))


@require_GET
@role_required(is_admin)
def rounds_list(request: AuthedRequest) -> HttpResponse:
    return render(
        request,
        LIST_TEMPLATE,
        {"rounds": _rounds(), "reward_versions": _reward_versions()},
    )


@require_http_methods(["GET", "POST"])
@role_required(is_admin)
def rounds_create(request: AuthedRequest) -> HttpResponse:
    form = RoundCreateForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                rnd = round_create(
                    name=data["name"],
                    description=data["description"],
                    images=form.images(),
                    control_pool=form.control_pool(),
                    created_by=request.user,
                    raters_per_image=data["raters_per_image"],
                    control_share=data["control_percent"] / 100,
                    raters=data["raters"],
                    open_now=data["open_now"],
                    display_size=data["display_size"],
                    serving=form.serving_design(),
                )
            except DomainError as exc:
                form.add_error(None, str(exc))
                status = exc.status_code
            else:
                state = "and opened for rating" if data["open_now"] else "as a draft"
                messages.success(request, f"Round “{rnd.name}” created {state}.")
                return redirect("rounds")
        else:
            status = 400
    return render(request, "annotations/round_form.html", {"form": form}, status=status)


def round_action_respond(
    request: HtmxRequest, round_id: int, action: Callable[[Round], object]
) -> HttpResponse:
    """Run ``action`` on the round and answer with its refreshed row (htmx)
    or a redirect to the list; a ``DomainError`` is shown on the row."""
    rnd = get_object_or_404(Round, pk=round_id)
    error = ""
    status = 200
    try:
        action(rnd)
    except DomainError as exc:
        error, status = str(exc), exc.status_code
    if request.htmx:
        row = _rounds().get(pk=rnd.pk)
        return render(
            request,
            f"{LIST_TEMPLATE}#round-row",
            {"rnd": row, "row_error": error, "reward_versions": _reward_versions()},
            status=status,
        )
    if error:
        messages.error(request, error)
    return redirect("rounds")


@require_POST
@role_required(is_admin)
def rounds_open(request: HtmxRequest, round_id: int) -> HttpResponse:
    return round_action_respond(
        request, round_id, lambda rnd: round_open(round=rnd, actor=request.user)
    )


@require_POST
@role_required(is_admin)
def rounds_close(request: HtmxRequest, round_id: int) -> HttpResponse:
    return round_action_respond(
        request, round_id, lambda rnd: round_close(round=rnd, actor=request.user)
    )
