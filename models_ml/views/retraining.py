"""Retraining: one form runs reward model → fine-tune → next round, and a
second opens a round that generates.  A job page follows every step."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotations.errors import DomainError
from annotations.models import Round
from annotations.roles import is_admin
from annotations.users import AuthedRequest
from annotations.views.access import HtmxRequest, role_required
from medrlhf.converters import IdConverter

from ..forms import RetrainingForm, RoundGenerateForm
from ..gate import comparison_grid, comparison_verdict
from ..models import Comparison, Job, JobKind, JobStatus, ModelVersion
from ..selectors import (
    control_pool,
    default_diffusion_version,
    job_chain,
)
from ..services.chains import (
    DEFAULT_PROMPT_COUNT,
    STEP_CONTROL,
    STEP_ROUND,
    chain_steps,
    default_round_prompts,
    retraining_round_start,
    step_title,
)
from ..services.prompts import prompts_sample
from ..services.round_generation import round_generate_start
from ..sizing import DEFAULT_EXPECTED_GAIN, SizeProposal, comparison_size_proposal
from .access import STOP_POLLING
from .lineage import key_metrics

TEMPLATE = "models_ml/retraining.html"
JOB_TEMPLATE = "models_ml/job.html"


def size_proposal(
    version: ModelVersion | None, *, gain_points: int | None, with_control: bool
) -> SizeProposal | None:
    """How many images per prompt and arm the comparison round needs."""
    if version is None:
        return None
    try:
        prompts = len(default_round_prompts(version))
    except DomainError:
        prompts = DEFAULT_PROMPT_COUNT
    return comparison_size_proposal(
        version=version,
        prompts=prompts,
        gain=(gain_points or round(DEFAULT_EXPECTED_GAIN * 100)) / 100,
        with_control=with_control,
    )


def _page(
    request: HttpRequest,
    *,
    retrain_form: RetrainingForm | None = None,
    round_form: RoundGenerateForm | None = None,
    status: int = 200,
) -> HttpResponse:
    chosen = request.GET.get("model_version", "")
    # The link from a version's page; anything but a plain id is ignored.
    chosen = chosen if IdConverter.regex_match(chosen) else ""
    initial: dict[str, Any] = (
        {"model_version": chosen, "diffusion_version": chosen} if chosen else {}
    )
    if retrain_form is None:
        version = ModelVersion.objects.filter(pk=chosen).first() if chosen else None
        proposal = size_proposal(
            version or default_diffusion_version(), gain_points=None, with_control=True
        )
        sized = dict(initial)
        if proposal is not None:
            sized["images_per_prompt"] = proposal.images_per_prompt
        retrain_form = RetrainingForm(initial=sized)
    else:
        proposal = _form_proposal(retrain_form)
    recent = Job.objects.filter(
        kind__in=[JobKind.TRAIN_REWARD, JobKind.GENERATE_ROUND]
    ).select_related("created_by")[:10]
    context = {
        "retrain_form": retrain_form,
        "proposal": proposal,
        "round_form": round_form or RoundGenerateForm(initial=initial, prefix="round"),
        "recent": recent,
    }
    return render(request, TEMPLATE, context, status=status)


def _small_int(value: Any, low: int, high: int) -> int | None:
    """``value`` as an int in [low, high], else None (never an overflow)."""
    text = str(value or "").strip()
    if not text.isdigit() or len(text) > 12:
        return None
    number = int(text)
    return number if low <= number <= high else None


def _form_proposal(form: RetrainingForm) -> SizeProposal | None:
    """The proposal for what a (bound, possibly invalid) form says."""
    data = form.data
    version_id = _small_int(data.get("diffusion_version"), 1, 2**62)
    version = ModelVersion.objects.filter(pk=version_id).first() if version_id else None
    return size_proposal(
        version,
        gain_points=_small_int(data.get("expected_gain"), 1, 50),
        with_control=bool(data.get("train_control")),
    )


@require_GET
@role_required(is_admin)
def retraining_proposal(request: AuthedRequest) -> HttpResponse:
    """The comparison round's proposed size for the form's current choices;
    the page swaps it in (htmx) when the version, the gain or the control
    changes."""
    form = RetrainingForm(request.GET)
    proposal = _form_proposal(form)
    if proposal is not None:
        form = RetrainingForm(
            initial={"images_per_prompt": proposal.images_per_prompt},
        )
    return render(
        request,
        f"{TEMPLATE}#proposal",
        {"retrain_form": form, "proposal": proposal},
    )


@require_GET
@role_required(is_admin)
def retraining_page(request: AuthedRequest) -> HttpResponse:
    return _page(request)


@require_POST
@role_required(is_admin)
def retraining_start(request: AuthedRequest) -> HttpResponse:
    form = RetrainingForm(request.POST)
    if not form.is_valid():
        return _page(request, retrain_form=form, status=400)
    try:
        job = retraining_round_start(
            created_by=request.user,
            diffusion_version=form.cleaned_data["diffusion_version"],
            params=form.service_params(),
            open_next_round=form.cleaned_data["open_next_round"],
            train_control=form.cleaned_data["train_control"],
        )
    except DomainError as exc:
        form.add_error(None, str(exc))
        return _page(request, retrain_form=form, status=exc.status_code)
    messages.success(request, "Retraining started.")
    return redirect("ml-job", job_id=job.pk)


@require_POST
@role_required(is_admin)
def round_generate(request: AuthedRequest) -> HttpResponse:
    form = RoundGenerateForm(request.POST, prefix="round")
    if not form.is_valid():
        return _page(request, round_form=form, status=400)
    data = form.cleaned_data
    version: ModelVersion = data["model_version"]
    try:
        prompts = data["prompts"] or prompts_sample(
            dataset=data["dataset"],
            per_modality=data["sample_count"],
            modalities=[data["sample_modality"]] if data["sample_modality"] else [],
            seed=None,
        )
        pool = control_pool(
            model_version=version,
            dataset=data["dataset"],
            modalities=[m for _, m in prompts],
        )
        job = round_generate_start(
            model_version=version,
            compare_model_version=data["compare_model_version"],
            prompts=prompts,
            images_per_prompt=data["images_per_prompt"],
            created_by=request.user,
            name=data["name"],
            raters_per_image=data["raters_per_image"],
            control_share=data["control_percent"] / 100,
            control_pool=pool,
            serving=form.serving_design(),
        )
    except DomainError as exc:
        form.add_error(None, str(exc))
        return _page(request, round_form=form, status=exc.status_code)
    messages.success(request, f"Round “{data['name']}” is generating.")
    return redirect("ml-job", job_id=job.pk)


def _step(job: Job) -> dict[str, Any]:
    result = job.result if isinstance(job.result, dict) else {}
    version = None
    if job.status == JobStatus.SUCCEEDED and result.get("model_version_id"):
        version = ModelVersion.objects.filter(pk=result["model_version_id"]).first()
    rnd = comparison = None
    if job.kind == JobKind.GENERATE_ROUND:
        rnd = Round.objects.filter(pk=job.params.get("round_id")).first()
        comparison = Comparison.objects.filter(round=rnd).first() if rnd else None
    return {
        "job": job,
        "version": version,
        "metrics": key_metrics(version) if version else [],
        "round": rnd,
        "comparison": comparison,
        "verdict": comparison_verdict(comparison) if comparison else None,
        "grid": comparison_grid(comparison) if comparison else [],
        "result": result,
    }


def _starts_when(step: str, chain: dict[str, Any]) -> str:
    if step == STEP_CONTROL:
        return "Starts with the new version's fine-tune, once the reward model has."
    if step == STEP_ROUND and chain.get("control"):
        return "Starts when the new version and its control have both succeeded."
    return "Starts when the step before it succeeds."


def _chain_context(job: Job) -> dict[str, Any]:
    jobs = job_chain(job=job)
    last = jobs[-1]
    chain = (job.params or {}).get("chain") or {}
    planned: list[dict[str, str]] = []
    if chain:
        done = {(j.params.get("chain") or {}).get("step") for j in jobs}
        if last.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            planned = [
                {"title": step_title(step, chain), "when": _starts_when(step, chain)}
                for step in chain_steps(chain)
                if step not in done
            ]
    finished = last.is_finished and not planned
    if chain.get("rescore_round_id"):
        name = (
            Round.objects.filter(pk=chain["rescore_round_id"])
            .values_list("name", flat=True)
            .first()
        )
        heading = f"Re-scoring of {name or 'a deleted round'}"
    else:
        heading = "Retraining round" if chain else job.title
    return {
        "heading": heading,
        "is_rescore": bool(chain.get("rescore_round_id")),
        "job": job,
        "steps": [_step(j) for j in jobs],
        "planned": planned,
        "finished": finished,
    }


@require_GET
@role_required(is_admin)
def ml_job(request: AuthedRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=job_id)
    return render(request, JOB_TEMPLATE, _chain_context(job))


@require_GET
@role_required(is_admin)
def ml_job_status(request: HtmxRequest, job_id: int) -> HttpResponse:
    """Every step of the run; 286 once the last step has finished."""
    context = _chain_context(get_object_or_404(Job, pk=job_id))
    status = STOP_POLLING if context["finished"] and request.htmx else 200
    return render(request, f"{JOB_TEMPLATE}#steps", context, status=status)
