"""Background job pages: status polled by htmx every 2 s, and cancel."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotations.roles import is_admin
from annotations.users import AuthedRequest
from annotations.views.access import HtmxRequest, role_required

from ..models import Job
from ..services.jobs import job_cancel

TEMPLATE = "jobs/job.html"
# htmx stops polling when it receives this status.
STOP_POLLING = 286


def _context(job: Job) -> dict[str, object]:
    result = job.result if isinstance(job.result, dict) else {}
    report = result.get("report") if isinstance(result.get("report"), dict) else None
    return {"job": job, "report": report, "dataset_id": result.get("dataset_id")}


@require_GET
@role_required(is_admin)
def job_detail(request: AuthedRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=job_id)
    return render(request, TEMPLATE, _context(job))


@require_GET
@role_required(is_admin)
def job_status(request: HtmxRequest, job_id: int) -> HttpResponse:
    """The status panel; once the job has finished, tell htmx to stop polling."""
    job = get_object_or_404(Job, pk=job_id)
    status = STOP_POLLING if job.is_finished and request.htmx else 200
    return render(request, f"{TEMPLATE}#status", _context(job), status=status)


@require_POST
@role_required(is_admin)
def job_cancel_view(request: HtmxRequest, job_id: int) -> HttpResponse:
    job = job_cancel(job=get_object_or_404(Job, pk=job_id), actor=request.user)
    if request.htmx:
        status = STOP_POLLING if job.is_finished else 200
        return render(request, f"{TEMPLATE}#status", _context(job), status=status)
    return redirect("job", job_id=job.pk)
