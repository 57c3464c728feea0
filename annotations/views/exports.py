"""Researcher exports: pick a round (or all), download the ratings CSV, the
preference pairs CSV or the dataset zip, each streamed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from django.db import transaction
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from ..export_dataset import dataset_export_start
from ..export_pairs import pairs_export_start
from ..exports import export_attachment, ratings_export_start
from ..forms import ExportForm
from ..models import Round
from ..roles import can_export
from .access import role_required


@require_GET
@role_required(can_export)
def export_page(request: HttpRequest) -> HttpResponse:
    rounds = Round.objects.annotate(
        n_ratings=Count("ratings", filter=Q(ratings__retracted_at=None))
    )
    return render(
        request, "annotations/export.html", {"form": ExportForm(), "rounds": rounds}
    )


def _download(
    request: HttpRequest,
    *,
    start: Callable[..., Iterator[Any]],
    stem: str,
    ext: str,
    content_type: str,
) -> HttpResponse:
    form = ExportForm(request.GET)
    if not form.is_valid():
        return HttpResponse(
            "Unknown round: choose a round from the list or all rounds.",
            status=404,
            content_type="text/plain; charset=utf-8",
        )
    rnd = form.cleaned_data["round"]
    round_id = rnd.pk if rnd else None
    return export_attachment(
        start(actor=request.user, round_id=round_id, via="page", request=request),
        stem=stem,
        round_id=round_id,
        ext=ext,
        content_type=content_type,
    )


# A long download must not hold one transaction open for its whole duration.
@transaction.non_atomic_requests
@require_GET
@role_required(can_export)
def export_download(request: HttpRequest) -> HttpResponse:
    return _download(
        request,
        start=ratings_export_start,
        stem="ratings",
        ext="csv",
        content_type="text/csv; charset=utf-8",
    )


@transaction.non_atomic_requests
@require_GET
@role_required(can_export)
def export_pairs(request: HttpRequest) -> HttpResponse:
    return _download(
        request,
        start=pairs_export_start,
        stem="pairs",
        ext="csv",
        content_type="text/csv; charset=utf-8",
    )


@transaction.non_atomic_requests
@require_GET
@role_required(can_export)
def export_dataset(request: HttpRequest) -> HttpResponse:
    return _download(
        request,
        start=dataset_export_start,
        stem="dataset",
        ext="zip",
        content_type="application/zip",
    )
