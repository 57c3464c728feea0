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
from annotations.views.access import role_required

from ..forms import RetrainingForm, RoundGenerateForm
from ..ml_services import retraining_round_start, round_generate_start
from ..models import Job, JobKind, JobStatus, ModelVersion, job_title
from ..selectors import control_pool, job_chain, real_images_for_training
from .access import STOP_POLLING
from .lineage import key_metrics

TEMPLATE = "models_ml/retraining.html"
JOB_TEMPLATE = "models_ml/job.html"
CHAIN_STEPS = (JobKind.TRAIN_REWARD, JobKind.FINETUNE, JobKind.GENERATE_ROUND)
# A most-informative-first round's re-scoring: reward model, then scoring.
RESCORE_STEPS = (JobKind.TRAIN_REWARD, JobKind.SCORE)


def _page(
    request: HttpRequest,
    *,
    retrain_form: RetrainingForm | None = None,
    round_form: RoundGenerateForm | None = None,
    status: int = 200,
) -> HttpResponse:
    chosen = request.GET.get("model_version")
    initial = {"model_version": chosen, "diffusion_version": chosen} if chosen else {}
    recent = Job.objects.filter(
        kind__in=[JobKind.TRAIN_REWARD, JobKind.GENERATE_ROUND]
    ).select_related("created_by")[:10]
    context = {
        "retrain_form": retrain_form or RetrainingForm(initial=initial),
        "round_form": round_form or RoundGenerateForm(initial=initial, prefix="round"),
        "recent": recent,
    }
    return render(request, TEMPLATE, context, status=status)


@require_GET
@role_required(is_admin)
def retraining_page(request: HttpRequest) -> HttpResponse:
    return _page(request)


@require_POST
@role_required(is_admin)
def retraining_start(request: HttpRequest) -> HttpResponse:
    form = RetrainingForm(request.POST)
    if not form.is_valid():
        return _page(request, retrain_form=form, status=400)
    try:
        job = retraining_round_start(
            created_by=request.user,
            diffusion_version=form.cleaned_data["diffusion_version"],
            params=form.service_params(),
            open_next_round=form.cleaned_data["open_next_round"],
        )
    except DomainError as exc:
        form.add_error(None, str(exc))
        return _page(request, retrain_form=form, status=exc.status_code)
    messages.success(request, "Retraining started.")
    return redirect("ml-job", job_id=job.pk)


def _sampled_prompts(
    *, dataset: Any, modality: str, count: int
) -> list[tuple[str, str]]:
    """Distinct prompts of a dataset's real images, spread evenly over it."""
    images = real_images_for_training(dataset_ids=[dataset.pk])
    if modality:
        images = images.filter(modality=modality)
    pairs = list(dict.fromkeys(images.values_list("prompt", "modality")))
    if len(pairs) <= count:
        return pairs
    stride = len(pairs) / count
    return [pairs[int(i * stride)] for i in range(count)]


@require_POST
@role_required(is_admin)
def round_generate(request: HttpRequest) -> HttpResponse:
    form = RoundGenerateForm(request.POST, prefix="round")
    if not form.is_valid():
        return _page(request, round_form=form, status=400)
    data = form.cleaned_data
    prompts = data["prompts"] or _sampled_prompts(
        dataset=data["dataset"],
        modality=data["sample_modality"],
        count=data["sample_count"],
    )
    version: ModelVersion = data["model_version"]
    pool = control_pool(
        model_version=version,
        dataset=data["dataset"],
        modalities=[m for _, m in prompts],
    )
    try:
        if not prompts:
            raise DomainError("the dataset has no prompts for that modality")
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
            **form.serving_settings(),
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
    rnd = None
    if job.kind == JobKind.GENERATE_ROUND:
        rnd = Round.objects.filter(pk=job.params.get("round_id")).first()
    return {
        "job": job,
        "version": version,
        "metrics": key_metrics(version) if version else [],
        "round": rnd,
        "result": result,
    }


def _chain_context(job: Job) -> dict[str, Any]:
    jobs = job_chain(job=job)
    last = jobs[-1]
    chain = (job.params or {}).get("chain") or {}
    planned: list[str] = []
    if chain:
        if chain.get("rescore_round_id"):
            wanted = list(RESCORE_STEPS)
        else:
            wanted = list(CHAIN_STEPS if chain.get("round") else CHAIN_STEPS[:2])
        done_kinds = {j.kind for j in jobs}
        if last.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            planned = [
                job_title(k, chain.get("finetune") if k == JobKind.FINETUNE else None)
                for k in wanted
                if k not in done_kinds
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
def ml_job(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=job_id)
    return render(request, JOB_TEMPLATE, _chain_context(job))


@require_GET
@role_required(is_admin)
def ml_job_status(request: HttpRequest, job_id: int) -> HttpResponse:
    """Every step of the run; 286 once the last step has finished."""
    context = _chain_context(get_object_or_404(Job, pk=job_id))
    status = STOP_POLLING if context["finished"] and request.htmx else 200
    return render(request, f"{JOB_TEMPLATE}#steps", context, status=status)
