"""Job lifecycle: create, enqueue after commit, claim, report progress, finish.

A job's truth is its database row.  Celery only carries the job id; a task
that finds its job already claimed by a live worker, finished or cancelled
does nothing, so redelivered messages are harmless.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from annotations.audit import audit_record
from annotations.users import User

from ..models import (
    FINISHED_STATUSES,
    Job,
    JobKind,
    JobStatus,
)
from ..signals import job_stopped

logger = logging.getLogger(__name__)

# Which Celery task runs each kind of job.
TASK_FOR_KIND: dict[str, str] = {
    JobKind.IMPORT: "models_ml.tasks.run_import",
    JobKind.TRAIN_BASE: "models_ml.tasks.ml_train_base",
    JobKind.GENERATE_ROUND: "models_ml.tasks.ml_generate_round",
    JobKind.TRAIN_REWARD: "models_ml.tasks.ml_train_reward",
    JobKind.FINETUNE: "models_ml.tasks.ml_finetune",
    JobKind.GENERATE: "models_ml.tasks.ml_generate",
    JobKind.SCORE: "models_ml.tasks.ml_score_round",
}


class JobCancelled(Exception):
    """Raised inside a job's body when an admin asked to cancel it."""


class JobLeaseLost(Exception):
    """Raised inside a job's body when its row no longer belongs to this
    attempt: the reaper took it back (the heartbeat came too late) and it may
    be running elsewhere.  The attempt stops and records nothing."""


@transaction.atomic
def job_create(
    *,
    kind: str,
    params: dict[str, Any],
    created_by: User | None = None,
    max_attempts: int | None = None,
    enqueue: bool = True,
) -> Job:
    """Create a job row and enqueue its task once the transaction commits.

    Refused with ``QuotaExceeded`` (429) when ``created_by`` already has as
    many ML jobs in flight, or started in the last 24 hours, as their role
    allows (``settings.JOB_QUOTAS``).
    """
    if kind not in (JobKind.IMPORT, JobKind.EXPORT):
        _quota_check(created_by)
    job = Job.objects.create(
        kind=kind,
        params=params,
        created_by=created_by
        if getattr(created_by, "is_authenticated", False)
        else None,
        max_attempts=max_attempts or settings.JOB_MAX_ATTEMPTS,
    )
    audit_record(action="job_create", actor=created_by, obj=job, detail={"kind": kind})
    if enqueue:
        job_enqueue(job=job)
    return job


def _quota_for(user: User) -> tuple[int, int] | None:
    from annotations.roles import is_admin, is_physician, is_researcher

    quotas: dict[str, tuple[int, int] | None] = settings.JOB_QUOTAS
    held = [
        role
        for role, has in (
            ("admin", is_admin),
            ("researcher", is_researcher),
            ("physician", is_physician),
        )
        if has(user)
    ]
    if not held or any(quotas.get(role) is None for role in held):
        return None if held else (0, 0)
    limits = [q for role in held if (q := quotas[role]) is not None]
    return max(c for c, _ in limits), max(d for _, d in limits)


@transaction.atomic
def _quota_check(user: User | None) -> None:
    """Refuse a new ML job beyond the user's quota."""
    from django.contrib.auth import get_user_model

    from annotations.errors import QuotaExceeded

    if user is None or not user.is_authenticated:
        return  # the system's own jobs (commands, chains started without a user)
    quota = _quota_for(user)
    if quota is None:
        return
    concurrent, daily = quota
    # One request at a time per user, so two at once cannot both slip in.
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    mine = Job.objects.filter(created_by=user).exclude(
        kind__in=(JobKind.IMPORT, JobKind.EXPORT)
    )
    running = mine.exclude(status__in=FINISHED_STATUSES).count()
    if running >= concurrent:
        raise QuotaExceeded(
            f"you have {running} ML jobs queued or running, the most your role "
            f"allows at once ({concurrent}); wait for one or cancel it"
        )
    today = mine.filter(created_at__gte=timezone.now() - timedelta(days=1)).count()
    if today >= daily:
        raise QuotaExceeded(
            f"you started {today} ML jobs in the last 24 hours, the most your "
            f"role allows ({daily}); try again later"
        )


def job_enqueue(*, job: Job) -> None:
    from medrlhf.celery import app

    task_name = TASK_FOR_KIND[job.kind]
    queue = "ml" if job.kind not in (JobKind.IMPORT, JobKind.EXPORT) else "default"

    def send() -> None:
        result = app.send_task(task_name, args=[job.pk], queue=queue)
        Job.objects.filter(pk=job.pk).update(celery_id=result.id)

    transaction.on_commit(send)


def job_claim(*, job_id: int, kind: str | None = None) -> Job | None:
    """Atomically move a queued (or stale running) job to RUNNING for this worker.

    Returns None when another worker holds it, or it is finished or cancelled,
    or it is not of ``kind``: a message outliving its database (a broker queue
    kept across a database reset, a redelivery after a restore) may name the
    id of some other job, which its task must not run.
    """
    now = timezone.now()
    stale_before = now - settings.JOB_STALE_AFTER
    claimable = Q(status=JobStatus.QUEUED) | Q(
        status=JobStatus.RUNNING, heartbeat_at__lt=stale_before
    )
    if kind is not None:
        claimable &= Q(kind=kind)
    with transaction.atomic():
        job = (
            Job.objects.select_for_update()
            .filter(claimable, pk=job_id, cancel_requested=False)
            .first()
        )
        if job is None:
            return None
        if job.attempts >= job.max_attempts:
            _finish(
                job,
                JobStatus.FAILED,
                error=job.error or f"gave up after {job.attempts} attempts",
            )
            return None
        job.status = JobStatus.RUNNING
        job.attempts += 1
        job.started_at = job.started_at or now
        job.heartbeat_at = now
        job.worker = socket.gethostname()[:200]
        job.save(
            update_fields=[
                "status",
                "attempts",
                "started_at",
                "heartbeat_at",
                "worker",
                "updated_at",
            ]
        )
    return job


def job_progress(*, job: Job, progress: float, message: str = "") -> None:
    """Write progress and a heartbeat; raise JobCancelled if cancel was asked,
    JobLeaseLost if the job is no longer this attempt's to run."""
    progress = min(max(float(progress), 0.0), 1.0)
    now = timezone.now()
    written = Job.objects.filter(
        pk=job.pk, status=JobStatus.RUNNING, attempts=job.attempts
    ).update(progress=progress, message=message[:300], heartbeat_at=now, updated_at=now)
    if not written:
        raise JobLeaseLost(f"job {job.pk}: attempt {job.attempts} lost its lease")
    job.progress, job.message, job.heartbeat_at = progress, message[:300], now
    if Job.objects.filter(pk=job.pk, cancel_requested=True).exists():
        raise JobCancelled(f"job {job.pk} was cancelled")


def _finish(
    job: Job, status: str, *, error: str = "", result: dict[str, Any] | None = None
) -> Job:
    job.status = status
    job.finished_at = timezone.now()
    job.error = error[:10000]
    if result is not None:
        job.result = result
    if status == JobStatus.SUCCEEDED:
        job.progress = 1.0
    job.save(
        update_fields=[
            "status",
            "finished_at",
            "error",
            "result",
            "progress",
            "updated_at",
        ]
    )
    audit_record(
        action=f"job_{status}", actor=job.created_by, obj=job, detail={"kind": job.kind}
    )
    if status in (JobStatus.FAILED, JobStatus.CANCELLED):
        transaction.on_commit(lambda: job_stopped.send(sender=Job, job=job))
    if job.kind == JobKind.IMPORT and job.params.get("source"):
        # However an import ends (done, failed, cancelled, its worker gone),
        # an uploaded archive's originals go with it: PHI is kept only in
        # de-identified form.
        from annotations.services.uploads import upload_discard

        source = job.params["source"]
        transaction.on_commit(lambda: upload_discard(source))
    return job


@transaction.atomic
def job_succeed(*, job: Job, result: dict[str, Any]) -> Job:
    return _finish(job, JobStatus.SUCCEEDED, result=result)


@transaction.atomic
def job_fail(*, job: Job, error: str, result: dict[str, Any] | None = None) -> Job:
    return _finish(job, JobStatus.FAILED, error=error, result=result)


@transaction.atomic
def job_finish_cancelled(*, job: Job) -> Job:
    # The reason job_cancel recorded, if it gave one.
    reason = Job.objects.filter(pk=job.pk).values_list("error", flat=True).first()
    return _finish(job, JobStatus.CANCELLED, error=reason or "cancelled by an admin")


@transaction.atomic
def job_cancel(*, job: Job, actor: User | None, reason: str = "") -> Job:
    """Ask a job to stop. A queued job is cancelled at once; a running one at
    its next progress report. ``reason`` (the system's, when no one asked)
    is what the job page shows."""
    job = Job.objects.select_for_update().get(pk=job.pk)
    if job.status in FINISHED_STATUSES:
        return job
    job.cancel_requested = True
    job.error = reason
    job.save(update_fields=["cancel_requested", "error", "updated_at"])
    audit_record(
        action="job_cancel",
        actor=actor,
        obj=job,
        detail={"reason": reason} if reason else None,
    )
    if job.status == JobStatus.QUEUED:
        _finish(job, JobStatus.CANCELLED, error=reason or "cancelled before it started")
    return job


@dataclass(frozen=True)
class ReapResult:
    requeued: int
    failed: int


def jobs_reap_stale(*, stale_after: timedelta | None = None) -> ReapResult:
    """Running jobs whose worker stopped heart-beating are retried or failed."""
    stale_after = stale_after or settings.JOB_STALE_AFTER
    cutoff = timezone.now() - stale_after
    requeued = failed = 0
    stale = Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=cutoff)
    for job_id in stale.values_list("pk", flat=True):
        with transaction.atomic():
            job = (
                Job.objects.select_for_update()
                .filter(pk=job_id, status=JobStatus.RUNNING, heartbeat_at__lt=cutoff)
                .first()
            )
            if job is None:
                continue
            if job.cancel_requested:
                _finish(job, JobStatus.CANCELLED, error="cancelled; worker stopped")
                failed += 1
            elif job.attempts >= job.max_attempts:
                _finish(
                    job,
                    JobStatus.FAILED,
                    error=f"worker stopped responding {job.attempts} times; giving up",
                )
                failed += 1
            else:
                job.status = JobStatus.QUEUED
                job.message = "worker stopped responding; queued again"
                job.save(update_fields=["status", "message", "updated_at"])
                job_enqueue(job=job)
                requeued += 1
    if requeued or failed:
        logger.warning("reaper: %d jobs requeued, %d failed", requeued, failed)
    return ReapResult(requeued=requeued, failed=failed)


def job_dir(*, job: Job) -> Path:
    """Where a job keeps its checkpoints and outputs: MODELS_DIR/<job id>."""
    return Path(settings.MODELS_DIR) / str(job.pk)
