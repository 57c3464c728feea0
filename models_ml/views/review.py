"""Review: an admin browses a version's reward-scored generations at a
threshold, checks some (or takes every kept one) and sends them to
physicians as a new rating round."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotations.errors import DomainError
from annotations.roles import is_admin
from annotations.views.access import HtmxRequest, role_required

from ..forms import ReviewFilterForm, ReviewRoundForm
from ..models import ModelKind, ModelVersion
from ..selectors import (
    ReviewFilter,
    review_counts,
    review_default_threshold,
    review_images,
    review_modalities,
    review_page_images,
    review_rounds_of,
    review_shown_count,
    review_versions,
)
from ..services.review import review_round_create

TEMPLATE = "models_ml/review.html"
PER_PAGE = 48


def _default_version() -> ModelVersion | None:
    return (
        review_versions().order_by("-created_at", "-id").first()
        or ModelVersion.objects.filter(kind=ModelKind.DIFFUSION).first()
    )


def _filter_form(data: QueryDict) -> ReviewFilterForm:
    """The filter as asked, with the newest scored version and the calibrated
    threshold filled in where the request names none."""
    values = data.copy()
    if not values.get("model_version"):
        version = _default_version()
        if version is not None:
            values["model_version"] = str(version.pk)
    if not values.get("threshold"):
        values["threshold"] = f"{review_default_threshold():.2f}"
    modalities: list[str] = []
    version_id = values.get("model_version", "")
    if version_id.isdigit():
        version = ModelVersion.objects.filter(pk=int(version_id)).first()
        if version is not None:
            modalities = review_modalities(model_version=version)
    return ReviewFilterForm(values, modalities=modalities)


def _review(form: ReviewFilterForm) -> ReviewFilter:
    data = form.cleaned_data
    return ReviewFilter(
        model_version=data["model_version"],
        threshold=data["threshold"],
        show=data["show"],
        modality=data["modality"],
        unused_only=data["unused_only"],
    )


def _query(review: ReviewFilter) -> str:
    """The filter as a query string, for the pager's links."""
    params = {
        "model_version": review.model_version.pk,
        "threshold": review.threshold,
        "show": review.show,
        "modality": review.modality,
    }
    if review.unused_only:
        params["unused_only"] = "on"
    return urlencode(params)


def _tiles(
    review: ReviewFilter, counts: dict[str, int], page_number: Any
) -> tuple[Any, list[dict[str, Any]]]:
    paginator = Paginator(
        review_images(review=review).values_list("id", flat=True), PER_PAGE
    )
    # The counts are already made; the paginator need not count again.
    paginator.count = review_shown_count(review=review, counts=counts)
    page = paginator.get_page(page_number)
    images = review_page_images(review=review, ids=page.object_list)
    in_rounds = review_rounds_of(image_ids=[im.pk for im in images])
    # Every review image carries a score (``review_scored_images``).
    tiles = [
        {
            "image": im,
            "kept": cast(float, im.reward_score) >= review.threshold,
            "g": im.generation,
            "rounds": in_rounds.get(im.pk, []),
        }
        for im in images
    ]
    return page, tiles


def _render(
    request: HtmxRequest,
    *,
    filter_form: ReviewFilterForm,
    round_form: ReviewRoundForm | None = None,
    checked: frozenset[str] = frozenset(),
    status: int = 200,
) -> HttpResponse:
    context: dict[str, Any] = {
        "filter_form": filter_form,
        "round_form": round_form or ReviewRoundForm(),
        "checked": checked,
        "has_versions": review_versions().exists(),
    }
    if filter_form.is_valid():
        review = _review(filter_form)
        counts = review_counts(review=review)
        page, tiles = _tiles(review, counts, request.GET.get("page"))
        context.update(
            review=review,
            filter_query=_query(review),
            counts=counts,
            page=page,
            tiles=tiles,
        )
    elif status == 200:
        status = 400
    template = f"{TEMPLATE}#results" if request.htmx else TEMPLATE
    return render(request, template, context, status=status)


@require_GET
@role_required(is_admin)
def review_page(request: HtmxRequest) -> HttpResponse:
    return _render(request, filter_form=_filter_form(request.GET))


@require_POST
@role_required(is_admin)
def review_round(request: HtmxRequest) -> HttpResponse:
    """Create the round; on a refusal the page comes back with the filter,
    the checked images and the reason."""
    filter_form = _filter_form(request.POST)
    round_form = ReviewRoundForm(request.POST)
    checked = frozenset(request.POST.getlist("image"))
    if not (filter_form.is_valid() and round_form.is_valid()):
        return _render(
            request,
            filter_form=filter_form,
            round_form=round_form,
            checked=checked,
            status=400,
        )
    data = round_form.cleaned_data
    all_kept = data["selection"] == "all_kept"
    try:
        rnd = review_round_create(
            name=data["name"],
            review=_review(filter_form),
            created_by=request.user,
            image_uids=None if all_kept else data["image"],
            all_kept=all_kept,
            raters_per_image=data["raters_per_image"],
            control_share=data["control_percent"] / 100,
            open_now=data["open_now"],
        )
    except DomainError as exc:
        round_form.add_error(None, str(exc))
        return _render(
            request,
            filter_form=filter_form,
            round_form=round_form,
            checked=checked,
            status=exc.status_code,
        )
    n_images = rnd.items.filter(is_control=False).count()
    state = "and opened for rating" if rnd.is_open else "as a draft"
    messages.success(
        request, f"Round “{rnd.name}” created {state} with {n_images} images."
    )
    return redirect("rounds")
