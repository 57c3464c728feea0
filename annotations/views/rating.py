"""The physician's rating page: one image at a time, swapped in by htmx.

Blinded: the page shows the prompt, modality and image (by uid) only, never
the source, model or make-up of the round.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotations.rating.access import rater_may_rate
from annotations.rating.serving import (
    assignment_next,
    assignment_skip,
    assignment_upcoming,
)
from annotations.rating.submit import rating_submit, rating_undo

from ..errors import DomainError, NotServed
from ..forms import RatingForm, SkipForm, ViewerKeysForm
from ..models import Flag, Image, Round, RoundStatus
from ..presentation import round_presentation
from ..roles import is_physician
from ..selectors import round_progress
from ..services.users import viewer_keys_update
from ..users import AuthedRequest
from ..viewer_keys import ACTIONS, keys_for
from .access import HtmxRequest, role_required

TEMPLATE = "annotations/rate.html"


def _round_for_rater(request: HtmxRequest, round_id: int) -> Round:
    """The round, or 404 when this physician may not see it."""
    rnd = get_object_or_404(Round, pk=round_id)
    if rnd.status in (RoundStatus.DRAFT, RoundStatus.GENERATING):
        raise Http404
    if not rater_may_rate(round=rnd, rater=request.user):
        raise Http404
    return rnd


def _served_image(rnd: Round, uid: Any) -> Image:
    image = Image.objects.filter(uid=uid, round_items__round=rnd).first()
    if image is None:
        raise NotServed("this image is not part of this round")
    return image


def _render(
    request: HtmxRequest,
    rnd: Round,
    *,
    error: str = "",
    notice: str = "",
    status: int = 200,
) -> HttpResponse:
    """Render the rater panel with the physician's current image (or the end)."""
    assignment = upcoming = None
    closed = False
    try:
        assignment = assignment_next(round=rnd, rater=request.user)
        if assignment is not None:
            upcoming = assignment_upcoming(round=rnd, rater=request.user)
    except DomainError as exc:
        closed = True
        if not error:
            error, status = str(exc), exc.status_code
    image = assignment.round_image.image if assignment else None
    keys, auto_advance = keys_for(request.user)
    context = {
        "round": rnd,
        "image": image,
        "display": round_presentation(rnd, image.modality) if image else None,
        "upcoming": upcoming.round_image.image if upcoming else None,
        "upcoming_display": round_presentation(rnd, upcoming.round_image.image.modality)
        if upcoming
        else None,
        "keys": keys,
        "auto_advance": auto_advance,
        "closed": closed,
        "progress": round_progress(round=rnd, user=request.user),
        "flag_choices": Flag.choices,
        "error": error,
        "notice": notice,
    }
    template = f"{TEMPLATE}#rater" if request.htmx else TEMPLATE
    return render(request, template, context, status=status)


def _after_post(
    request: HtmxRequest,
    rnd: Round,
    *,
    error: str = "",
    notice: str = "",
    status: int = 200,
) -> HttpResponse:
    # Without htmx a successful post redirects, so a reload never posts twice.
    if not request.htmx and not error:
        if notice:
            messages.info(request, notice)
        return redirect("rate", round_id=rnd.pk)
    return _render(request, rnd, error=error, notice=notice, status=status)


@require_GET
@role_required(is_physician)
def rate(request: HtmxRequest, round_id: int) -> HttpResponse:
    return _render(request, _round_for_rater(request, round_id))


@require_POST
@role_required(is_physician)
def rate_submit(request: HtmxRequest, round_id: int) -> HttpResponse:
    rnd = _round_for_rater(request, round_id)
    form = RatingForm(request.POST)
    if not form.is_valid():
        message = "; ".join(str(e) for errs in form.errors.values() for e in errs)
        return _after_post(request, rnd, error=message, status=400)
    data = form.cleaned_data
    try:
        image = _served_image(rnd, data["image"])
        rating_submit(
            round=rnd,
            rater=request.user,
            image=image,
            score=data["score"],
            flags=data["flags"],
            comment=data["comment"],
            time_taken_ms=data["time_taken_ms"],
        )
    except DomainError as exc:
        return _after_post(request, rnd, error=str(exc), status=exc.status_code)
    return _after_post(request, rnd)


@require_POST
@role_required(is_physician)
def rate_skip(request: HtmxRequest, round_id: int) -> HttpResponse:
    rnd = _round_for_rater(request, round_id)
    form = SkipForm(request.POST)
    if not form.is_valid():
        return _after_post(request, rnd, error="no image to skip", status=400)
    try:
        image = _served_image(rnd, form.cleaned_data["image"])
        assignment_skip(round=rnd, rater=request.user, image=image)
    except DomainError as exc:
        return _after_post(request, rnd, error=str(exc), status=exc.status_code)
    return _after_post(request, rnd, notice="Image skipped.")


@require_POST
@role_required(is_physician)
def rate_undo(request: HtmxRequest, round_id: int) -> HttpResponse:
    rnd = _round_for_rater(request, round_id)
    try:
        undone = rating_undo(round=rnd, rater=request.user)
    except DomainError as exc:
        return _after_post(request, rnd, error=str(exc), status=exc.status_code)
    return _after_post(
        request,
        rnd,
        notice=f"Your rating of {undone.score} was withdrawn. Rate this image again.",
    )


@require_http_methods(["GET", "POST"])
@role_required(is_physician)
def rate_keys(request: AuthedRequest) -> HttpResponse:
    """The physician's own keys for the rating page, and auto-advance."""
    keys, auto_advance = keys_for(request.user)
    form = ViewerKeysForm(
        request.POST or None, keys=keys, initial={"auto_advance": auto_advance}
    )
    if request.method == "POST" and form.is_valid():
        viewer_keys_update(
            user=request.user,
            key_map=form.cleaned_data["key_map"],
            auto_advance=form.cleaned_data["auto_advance"],
        )
        messages.success(request, "Your keys are saved.")
        back = request.GET.get("next", "")
        if back.startswith("/rate/") and url_has_allowed_host_and_scheme(
            back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return redirect(back)
        return redirect("rate-keys")
    rows = [(form[f"key_{action}"], label) for action, (label, _) in ACTIONS.items()]
    return render(
        request,
        "annotations/viewer_keys.html",
        {"form": form, "rows": rows},
        status=400 if form.is_bound else 200,
    )
