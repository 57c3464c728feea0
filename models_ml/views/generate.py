"""The generate page: reward-filtered generation for every logged-in role.

A job's images are shown to its creator and to admins only; they are served
here rather than by the rating image view, which knows nothing of jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import (
    require_GET,
    require_http_methods,
    require_POST,
)

from annotations.errors import DomainError
from annotations.models import Image, ImageSource
from annotations.users import AuthedRequest
from annotations.views.access import HtmxRequest

from ..forms import GenerateForm
from ..generate_files import generate_zip_response
from ..models import Job, JobKind, JobStatus, ModelVersion
from ..services.generation import generate_start
from ..services.jobs import job_cancel
from .access import STOP_POLLING, job_for_viewer

TEMPLATE = "models_ml/generate.html"


@dataclass(frozen=True)
class GalleryItem:
    image: Image
    kept: bool
    seed: Any
    steps: Any
    guidance: Any
    sampler: Any
    attempt: Any
    uncertainty: Any


def _gallery(job: Job) -> tuple[list[GalleryItem], list[GalleryItem]]:
    """Kept and rejected images of a generate job, best reward first."""
    images = Image.objects.filter(
        source=ImageSource.GENERATED, generation__job_id=job.pk
    ).select_related("model_version")
    items = [
        GalleryItem(
            image=im,
            kept=bool(im.generation.get("kept")),
            seed=im.generation.get("seed"),
            steps=im.generation.get("steps"),
            guidance=im.generation.get("guidance"),
            sampler=im.generation.get("scheduler"),
            attempt=im.generation.get("attempt"),
            uncertainty=im.generation.get("uncertainty"),
        )
        for im in images
    ]
    items.sort(key=lambda it: -(it.image.reward_score or 0.0))
    return [it for it in items if it.kept], [it for it in items if not it.kept]


def _job_context(job: Job) -> dict[str, Any]:
    kept, rejected = _gallery(job) if job.status == JobStatus.SUCCEEDED else ([], [])
    versions = ModelVersion.objects.in_bulk(
        [job.params.get("model_version_id"), job.params.get("reward_version_id")]
    )
    return {
        "job": job,
        "kept": kept,
        "rejected": rejected,
        "stats": (job.result or {}).get("stats") or {},
        "model_version": versions.get(job.params.get("model_version_id")),
        "reward_version": versions.get(job.params.get("reward_version_id")),
    }


def _recent_jobs(request: AuthedRequest) -> QuerySet[Job]:
    return Job.objects.filter(kind=JobKind.GENERATE, created_by=request.user)[:8]


@require_http_methods(["GET", "POST"])
@login_required
def generate_page(request: AuthedRequest) -> HttpResponse:
    form = GenerateForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                job = generate_start(
                    model_version=data["model_version"],
                    reward_version=data["reward_version"],
                    prompt=data["prompt"],
                    modality=data["modality"],
                    count=data["count"],
                    mode=data["mode"],
                    n=data["n"],
                    threshold=data["threshold"],
                    created_by=request.user,
                )
            except DomainError as exc:
                form.add_error(None, str(exc))
                status = exc.status_code
            else:
                return redirect("ml-generate-job", job_id=job.pk)
        else:
            status = 400
    context = {"form": form, "recent": _recent_jobs(request)}
    return render(request, TEMPLATE, context, status=status)


@require_GET
@login_required
def generate_job(request: AuthedRequest, job_id: int) -> HttpResponse:
    job = job_for_viewer(job_id=job_id, user=request.user, kinds=(JobKind.GENERATE,))
    return render(request, "models_ml/generate_job.html", _job_context(job))


@require_GET
@login_required
def generate_job_status(request: HtmxRequest, job_id: int) -> HttpResponse:
    """The progress panel, then the gallery; 286 tells htmx to stop polling."""
    job = job_for_viewer(job_id=job_id, user=request.user, kinds=(JobKind.GENERATE,))
    status = STOP_POLLING if job.is_finished and request.htmx else 200
    return render(
        request, "models_ml/generate_job.html#result", _job_context(job), status=status
    )


@require_POST
@login_required
def generate_job_cancel(request: HtmxRequest, job_id: int) -> HttpResponse:
    """Stop one's own generate job (an admin: anyone's)."""
    job = job_for_viewer(job_id=job_id, user=request.user, kinds=(JobKind.GENERATE,))
    job = job_cancel(job=job, actor=request.user)
    if request.htmx:
        status = STOP_POLLING if job.is_finished else 200
        return render(
            request,
            "models_ml/generate_job.html#result",
            _job_context(job),
            status=status,
        )
    return redirect("ml-generate-job", job_id=job.pk)


@require_GET
@login_required
def generated_image(request: AuthedRequest, uid: UUID) -> FileResponse:
    """A generated image's preview, for the creator of the job that made it."""
    image = get_object_or_404(Image, uid=uid, source=ImageSource.GENERATED)
    job_id = image.generation.get("job_id")
    if not isinstance(job_id, int):
        raise Http404
    job_for_viewer(job_id=job_id, user=request.user, kinds=(JobKind.GENERATE,))
    try:
        handle = image.preview.open("rb")
    except (FileNotFoundError, ValueError) as exc:
        raise Http404 from exc
    response = FileResponse(handle, content_type="image/png", filename=f"{uid.hex}.png")
    response["Cache-Control"] = "private, max-age=600"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_GET
@login_required
def generate_download(
    request: AuthedRequest, job_id: int
) -> FileResponse | HttpResponse:
    """The job's images as a zip (layout in ``generate_files.generate_zip``);
    ``?include=kept`` leaves the rejected ones out."""
    job = job_for_viewer(job_id=job_id, user=request.user, kinds=(JobKind.GENERATE,))
    try:
        return generate_zip_response(job, include=request.GET.get("include", "all"))
    except DomainError as exc:
        return HttpResponse(str(exc), status=exc.status_code, content_type="text/plain")
