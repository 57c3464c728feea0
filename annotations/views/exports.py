"""Researcher export: pick a round (or all), download a streamed CSV."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from ..exports import ratings_export_start
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


# A long download must not hold one transaction open for its whole duration.
@transaction.non_atomic_requests
@require_GET
@role_required(can_export)
def export_download(request: HttpRequest) -> HttpResponse:
    form = ExportForm(request.GET)
    if not form.is_valid():
        return HttpResponse(
            "Unknown round: choose a round from the list or all rounds.",
            status=404,
            content_type="text/plain; charset=utf-8",
        )
    rnd = form.cleaned_data["round"]
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    scope = f"round-{rnd.pk}" if rnd else "all"
    response = StreamingHttpResponse(
        ratings_export_start(
            actor=request.user,
            round_id=rnd.pk if rnd else None,
            via="page",
            request=request,
        ),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = (
        f'attachment; filename="medrlhf-ratings-{scope}-{stamp}.csv"'
    )
    response["Cache-Control"] = "no-store"
    return response
