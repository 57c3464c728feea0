"""The loop's actions on a round, from the admin's rounds list: score its
images with a reward model, abandon a round whose generation failed, or
retry that generation. The list itself is ``annotations``' page."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from annotations.errors import DomainError
from annotations.models import Round
from annotations.roles import is_admin
from annotations.users import AuthedRequest
from annotations.views.access import HtmxRequest, role_required
from annotations.views.rounds import round_action_respond

from ..models import ModelKind, ModelVersion
from ..services.round_scoring import round_score_start
from ..services.rounds import round_abandon, round_generation_retry


@require_POST
@role_required(is_admin)
def rounds_score(request: AuthedRequest, round_id: int) -> HttpResponse:
    """Queue scoring of the round's images with the chosen reward model."""
    rnd = get_object_or_404(Round, pk=round_id)
    version = None
    raw = request.POST.get("reward_model_version", "")
    if raw:
        version = ModelVersion.objects.filter(
            pk=int(raw) if raw.isdigit() else 0, kind=ModelKind.REWARD
        ).first()
        if version is None:
            messages.error(request, f"No reward model version {raw!r}.")
            return redirect("rounds")
    try:
        job = round_score_start(
            round=rnd, created_by=request.user, reward_model_version=version
        )
    except DomainError as exc:
        messages.error(request, f"{rnd.name}: {exc}")
        return redirect("rounds")
    messages.success(request, f"Scoring the images of “{rnd.name}”.")
    return redirect("ml-job", job_id=job.pk)


@require_POST
@role_required(is_admin)
def rounds_abandon(request: HtmxRequest, round_id: int) -> HttpResponse:
    """Close a round nobody rated, with the reason given in the form."""
    reason = request.POST.get("reason", "")
    return round_action_respond(
        request,
        round_id,
        lambda rnd: round_abandon(round=rnd, reason=reason, actor=request.user),
    )


@require_POST
@role_required(is_admin)
def rounds_retry_generation(request: HtmxRequest, round_id: int) -> HttpResponse:
    """Queue a failed or cancelled generation of the round again."""
    return round_action_respond(
        request,
        round_id,
        lambda rnd: round_generation_retry(round=rnd, actor=request.user),
    )
