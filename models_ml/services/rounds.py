"""Rounds whose generation went wrong: abandon them, or run the generation again.

An abandoned round is closed with ``settings["abandoned"]`` saying why, when,
by whom and which job it was waiting for.  Nothing else is removed: the images
a failed job did store and the job row itself stay for inspection.  A round
somebody already rated is never abandoned (its ratings would vanish from
sight); it is closed instead, which keeps them.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from annotations.audit import audit_record
from annotations.errors import DomainError
from annotations.models import (
    Assignment,
    Rating,
    Round,
    RoundStatus,
)
from annotations.users import User

from ..models import (
    FINISHED_STATUSES,
    GateStatus,
    Job,
    JobKind,
    JobStatus,
    ModelVersion,
)
from .jobs import job_cancel, job_create

MAX_REASON = 500
RETRYABLE = (JobStatus.FAILED, JobStatus.CANCELLED)


class RoundConflict(DomainError):
    status_code = 409


def round_generation_job(*, round: Round) -> Job | None:
    """The generate_round job a round is (or was last) waiting for."""
    job_id = (round.settings or {}).get("job_id")
    if not isinstance(job_id, int):
        return None
    return Job.objects.filter(pk=job_id, kind=JobKind.GENERATE_ROUND).first()


def round_is_abandoned(*, round: Round) -> bool:
    return bool((round.settings or {}).get("abandoned"))


@transaction.atomic
def round_abandon(*, round: Round, reason: str, actor: User | None) -> Round:
    """Close a round nobody has rated, recording why; its job, if still going,
    is asked to stop.  Abandoning an abandoned round changes nothing."""
    reason = (reason or "").strip()
    if not reason:
        raise DomainError("give a reason for abandoning the round")
    if len(reason) > MAX_REASON:
        raise DomainError(f"the reason is longer than {MAX_REASON} characters")
    rnd = Round.objects.select_for_update().get(pk=round.pk)
    if round_is_abandoned(round=rnd):
        return rnd
    if rnd.status == RoundStatus.CLOSED:
        raise RoundConflict(f"round “{rnd.name}” is already closed")
    ratings = Rating.objects.filter(round=rnd).count()
    if ratings:
        raise RoundConflict(
            f"round “{rnd.name}” has {ratings} rating{'s' if ratings != 1 else ''}; "
            "a rated round is not abandoned: close it instead, which keeps them"
        )
    job = round_generation_job(round=rnd)
    if job is not None and job.status not in FINISHED_STATUSES:
        job_cancel(job=job, actor=actor)
    now = timezone.now()
    previous = rnd.status
    rnd.status = RoundStatus.CLOSED
    rnd.closed_at = now
    rnd.settings = {
        **rnd.settings,
        "abandoned": {
            "reason": reason,
            "at": now.isoformat(),
            "by": actor.get_username() if actor is not None else "",
            "status_before": previous,
            "job_id": getattr(job, "pk", None),
            "job_status": getattr(job, "status", None),
        },
    }
    rnd.save(update_fields=["status", "closed_at", "settings", "updated_at"])
    Assignment.objects.filter(
        round=rnd, completed_at=None, skipped_at=None, expired_at=None
    ).update(expired_at=now)
    # An abandoned comparison decides nothing: its new version is untested.
    ModelVersion.objects.filter(
        comparisons__round=rnd, comparisons__decided_at=None, gate=GateStatus.PENDING
    ).update(gate=GateStatus.UNTESTED)
    audit_record(
        action="round_abandon",
        actor=actor,
        obj=rnd,
        detail={
            "reason": reason,
            "status_before": previous,
            "job_id": getattr(job, "pk", None),
            "job_status": getattr(job, "status", None),
        },
    )
    return rnd


@transaction.atomic
def round_generation_retry(*, round: Round, actor: User | None) -> Job:
    """Queue the generation of a round again after its job failed or was
    cancelled.  The new job has the same prompts, seeds and versions, and keeps
    the images the failed attempt stored, so only the missing ones are made."""
    rnd = Round.objects.select_for_update().get(pk=round.pk)
    if round_is_abandoned(round=rnd):
        raise RoundConflict(f"round “{rnd.name}” was abandoned")
    if rnd.status != RoundStatus.GENERATING:
        raise RoundConflict(
            f"round “{rnd.name}” is {rnd.get_status_display().lower()}, "
            "not waiting for its images"
        )
    job = round_generation_job(round=rnd)
    if job is None:
        raise RoundConflict(f"round “{rnd.name}” has no generation job to retry")
    if job.status not in RETRYABLE:
        raise RoundConflict(
            f"generation job {job.pk} is {job.status}; only a failed or "
            "cancelled generation is retried"
        )
    # The retry stands alone: a retraining run keeps its record of the failure.
    params = {k: v for k, v in job.params.items() if k != "chain"}
    params["retry_of"] = job.pk
    new_job = job_create(kind=JobKind.GENERATE_ROUND, params=params, created_by=actor)
    tried = [*rnd.settings.get("previous_job_ids", []), job.pk]
    rnd.settings = {**rnd.settings, "job_id": new_job.pk, "previous_job_ids": tried}
    rnd.save(update_fields=["settings", "updated_at"])
    audit_record(
        action="round_generation_retry",
        actor=actor,
        obj=rnd,
        detail={"failed_job_id": job.pk, "job_id": new_job.pk},
    )
    return new_job
