"""Celery tasks: one per kind of job. Each takes a job id, and ``run_job``
claims the row and runs the step's ``*_run`` function from
``models_ml/services/`` with a progress callback.

Engine code (torch) is imported inside the run functions only, so the web
process never loads it.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from annotations.errors import DomainError, ImportFailed

from .engine import EngineError
from .models import Job, JobKind, JobStatus
from .services.base_training import train_base_run
from .services.finetune import finetune_run
from .services.generation import generate_run
from .services.jobs import (
    JobCancelled,
    JobLeaseLost,
    job_claim,
    job_fail,
    job_finish_cancelled,
    job_progress,
    job_succeed,
)
from .services.reward import reward_model_train_run
from .services.round_generation import round_generate_run
from .services.round_scoring import round_score_run
from .threads import NON_ML_KINDS, ThreadShare

logger = logging.getLogger(__name__)

# ML jobs may run for hours; the hard limit leaves the soft one time to record
# the failure.
ML_SOFT_TIME_LIMIT: int = getattr(
    settings, "ML_TASK_SOFT_TIME_LIMIT", settings.CELERY_TASK_SOFT_TIME_LIMIT
)
ML_TIME_LIMIT = ML_SOFT_TIME_LIMIT + 300


class _Heartbeat(threading.Thread):
    """Keeps a claimed job's lease fresh while its body sits in one long call
    (loading a model, decoding a dataset) between progress reports, so the
    reaper does not hand a live job to a second worker.  A killed worker takes
    this thread with it, and the job goes stale as it should."""

    def __init__(self, job_id: int, attempt: int, every: float) -> None:
        super().__init__(daemon=True, name=f"job-{job_id}-heartbeat")
        self.job_id = job_id
        self.attempt = attempt
        self.every = every
        self.done = threading.Event()

    def run(self) -> None:
        try:
            while not self.done.wait(self.every):
                try:
                    Job.objects.filter(
                        pk=self.job_id, status=JobStatus.RUNNING, attempts=self.attempt
                    ).update(heartbeat_at=timezone.now())
                except DatabaseError:
                    logger.warning("job %s: heartbeat not written", self.job_id)
        finally:
            connection.close()


def run_job(
    job_id: int,
    body: Callable[[Job, Callable[[float, str], None]], dict[str, Any]],
    *,
    kind: str | None = None,
) -> None:
    """Claim the job, run ``body`` with a progress callback, record the outcome.

    With ``kind``, a job of another kind is left alone (see ``job_claim``)."""
    job = job_claim(job_id=job_id, kind=kind)
    if job is None:
        logger.info(
            "job %s not claimable (running elsewhere, finished, cancelled "
            "or not a %s job)",
            job_id,
            kind or "claimable",
        )
        return

    share = None if job.kind in NON_ML_KINDS else ThreadShare()

    def progress(fraction: float, message: str = "") -> None:
        job_progress(job=job, progress=fraction, message=message)
        if share is not None:
            share()

    heartbeat = _Heartbeat(
        job.pk, job.attempts, settings.JOB_STALE_AFTER.total_seconds() / 3
    )
    heartbeat.start()
    try:
        result = body(job, progress)
    except JobCancelled:
        job_finish_cancelled(job=job)
    except JobLeaseLost as exc:
        logger.warning("%s; this attempt stops without recording anything", exc)
    except SoftTimeLimitExceeded:
        job_fail(
            job=job,
            error="the task's time limit was reached; "
            "checkpoints written so far are kept",
        )
    except ImportFailed as exc:
        job_fail(job=job, error=str(exc), result={"report": exc.report})
    except (DomainError, EngineError) as exc:
        job_fail(job=job, error=str(exc))
    except Exception as exc:
        logger.exception("job %s failed", job_id)
        job_fail(job=job, error=f"{exc}\n\n{traceback.format_exc(limit=8)}")
    else:
        job_succeed(job=job, result=result)
    finally:
        heartbeat.done.set()
        heartbeat.join()


@shared_task(name="models_ml.tasks.run_import", acks_late=True)
def run_import(job_id: int) -> None:
    from annotations.services.imports import dataset_import
    from annotations.services.uploads import upload_discard

    def body(job: Job, progress: Callable[[float, str], None]) -> dict[str, Any]:
        p = job.params
        try:
            dataset, report = dataset_import(
                name=p["name"],
                source=Path(p["source"]),
                created_by=job.created_by,
                on_error=p.get("on_error", "reject"),
                modality=p.get("modality"),
                nifti_axis=p.get("nifti_axis", 2),
                description=p.get("description", ""),
                progress=progress,
            )
        finally:
            # An uploaded archive's originals (PHI included) never outlive
            # the import: only de-identified images are kept.
            upload_discard(p["source"])
        return {"dataset_id": dataset.pk, "report": report.as_dict()}

    run_job(job_id, body, kind=JobKind.IMPORT)


def _ml_task(name: str) -> Callable[[Callable[[int], None]], Any]:
    """A task on the ``ml`` queue (routed there by its ``ml_`` name)."""
    return shared_task(
        name=f"models_ml.tasks.{name}",
        acks_late=True,
        soft_time_limit=ML_SOFT_TIME_LIMIT,
        time_limit=ML_TIME_LIMIT,
    )


@_ml_task("ml_train_base")
def ml_train_base(job_id: int) -> None:
    """Train a base diffusion model on a dataset's real images."""
    run_job(job_id, train_base_run, kind=JobKind.TRAIN_BASE)


@_ml_task("ml_generate_round")
def ml_generate_round(job_id: int) -> None:
    """Draw a generating round's images and open it."""
    run_job(job_id, round_generate_run, kind=JobKind.GENERATE_ROUND)


@_ml_task("ml_train_reward")
def ml_train_reward(job_id: int) -> None:
    """Train the reward model on every live rating so far."""
    run_job(job_id, reward_model_train_run, kind=JobKind.TRAIN_REWARD)


@_ml_task("ml_finetune")
def ml_finetune(job_id: int) -> None:
    """Fine-tune a version from the physicians' judgements, or its control."""
    run_job(job_id, finetune_run, kind=JobKind.FINETUNE)


@_ml_task("ml_generate")
def ml_generate(job_id: int) -> None:
    """Generate images filtered by the reward model."""
    run_job(job_id, generate_run, kind=JobKind.GENERATE)


@_ml_task("ml_score_round")
def ml_score_round(job_id: int) -> None:
    """Score a round's images with a reward model."""
    run_job(job_id, round_score_run, kind=JobKind.SCORE)


@shared_task(
    name="models_ml.tasks.ml_version_samples",
    acks_late=True,
    soft_time_limit=ML_SOFT_TIME_LIMIT,
    time_limit=ML_TIME_LIMIT,
)
def ml_version_samples(version_id: int) -> int:
    """Draw a registered version's sample grid (``samples``), on the ml queue."""
    from .models import ModelVersion
    from .samples import version_samples_make

    version = ModelVersion.objects.filter(pk=version_id).first()
    return 0 if version is None else version_samples_make(version)


@shared_task(name="models_ml.tasks.reap_stale_jobs")
def reap_stale_jobs() -> dict[str, int]:
    from annotations.services.rounds import assignments_expire

    from .services.jobs import jobs_reap_stale

    reaped = jobs_reap_stale()
    expired = assignments_expire(older_than=timezone.now() - settings.ASSIGNMENT_LEASE)
    return {"requeued": reaped.requeued, "failed": reaped.failed, "expired": expired}
