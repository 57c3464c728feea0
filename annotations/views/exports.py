"""Researcher exports: pick a round (or all), download the ratings CSV, the
preference pairs CSV or the dataset zip, each streamed."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Count, Q
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from ..export_kinds import DATASET, PAIRS, RATINGS, ExportKind, export_response
from ..forms import ExportForm
from ..models import Round
from ..roles import can_export
from ..users import AuthedRequest
from .access import role_required


@require_GET
@role_required(can_export)
def export_page(request: AuthedRequest) -> HttpResponse:
    rounds = Round.objects.annotate(
        n_ratings=Count("ratings", filter=Q(ratings__retracted_at=None))
    )
    return render(
        request, "annotations/export.html", {"form": ExportForm(), "rounds": rounds}
    )


def _download(
    request: AuthedRequest, kind: ExportKind
) -> HttpResponse | StreamingHttpResponse:
    form = ExportForm(request.GET)
    if not form.is_valid():
        return HttpResponse(
            "Unknown round: choose a round from the list or all rounds.",
            status=404,
            content_type="text/plain; charset=utf-8",
        )
    rnd = form.cleaned_data["round"]
    round_id = rnd.pk if rnd else None
    return export_response(
        kind, actor=request.user, round_id=round_id, via="page", request=request
    )


# A long download must not hold one transaction open for its whole duration.
@transaction.non_atomic_requests
@require_GET
@role_required(can_export)
def export_download(request: AuthedRequest) -> HttpResponse | StreamingHttpResponse:
    return _download(request, RATINGS)


@transaction.non_atomic_requests
@require_GET
@role_required(can_export)
def export_pairs(request: AuthedRequest) -> HttpResponse | StreamingHttpResponse:
    return _download(request, PAIRS)


@transaction.non_atomic_requests
@require_GET
@role_required(can_export)
def export_dataset(request: AuthedRequest) -> HttpResponse | StreamingHttpResponse:
    return _download(request, DATASET)
