from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from annotations.models import AuditEvent
from models_ml.models import Job, JobKind, JobStatus
from models_ml.services.jobs import (
    JobCancelled,
    JobLeaseLost,
    job_cancel,
    job_claim,
    job_create,
    job_progress,
    jobs_reap_stale,
)

pytestmark = pytest.mark.django_db


def _job(**kw) -> Job:
    return job_create(kind=JobKind.IMPORT, params={}, enqueue=False, **kw)


def test_a_job_is_claimed_once_even_if_its_message_arrives_twice():
    job = _job()
    assert job_claim(job_id=job.pk).status == JobStatus.RUNNING
    assert job_claim(job_id=job.pk) is None
    assert Job.objects.get(pk=job.pk).attempts == 1


def test_job_creation_enqueues_only_after_commit(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        job_create(kind=JobKind.IMPORT, params={})
    assert len(callbacks) == 1


def test_progress_is_clamped_and_heartbeats():
    job = job_claim(job_id=_job().pk)
    before = job.heartbeat_at
    job_progress(job=job, progress=1.7, message="almost")
    job.refresh_from_db()
    assert job.progress == 1.0 and job.message == "almost"
    assert job.heartbeat_at >= before


def test_cancel_of_running_job_stops_it_at_next_progress(admin_user):
    job = job_claim(job_id=_job().pk)
    job_cancel(job=job, actor=admin_user)
    with pytest.raises(JobCancelled):
        job_progress(job=job, progress=0.5)


def test_cancel_of_queued_job_is_immediate(admin_user):
    job = job_cancel(job=_job(), actor=admin_user)
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job_claim(job_id=job.pk) is None


def test_reaper_requeues_a_job_whose_worker_died_then_fails_it_at_the_limit(
    django_capture_on_commit_callbacks,
):
    job = _job(max_attempts=2)
    stale = timezone.now() - timedelta(hours=1)
    for expected in (JobStatus.QUEUED, JobStatus.FAILED):
        claimed = job_claim(job_id=job.pk)
        assert claimed is not None
        Job.objects.filter(pk=job.pk).update(heartbeat_at=stale)
        with django_capture_on_commit_callbacks():
            jobs_reap_stale(stale_after=timedelta(minutes=5))
        job.refresh_from_db()
        assert job.status == expected
    assert "giving up" in job.error
    assert job_claim(job_id=job.pk) is None


def test_a_live_job_is_not_reaped():
    job = job_claim(job_id=_job().pk)
    result = jobs_reap_stale(stale_after=timedelta(minutes=5))
    assert (result.requeued, result.failed) == (0, 0)
    assert Job.objects.get(pk=job.pk).status == JobStatus.RUNNING


def test_job_lifecycle_is_audited():
    job = _job()
    assert AuditEvent.objects.filter(
        action="job_create", object_id=str(job.pk)
    ).exists()


def test_a_task_leaves_alone_a_job_of_another_kind_its_message_names():
    # A message outliving its database (a kept broker queue after a reset)
    # names an id that now belongs to an import.
    from models_ml import tasks

    job = _job()
    assert job_claim(job_id=job.pk, kind=JobKind.TRAIN_BASE) is None
    tasks.ml_train_base(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.attempts == 0
    assert job_claim(job_id=job.pk, kind=JobKind.IMPORT).status == JobStatus.RUNNING


def _reaped_and_claimed_again(job: Job) -> Job:
    """The reaper takes a job back from a late worker and another claims it."""
    Job.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    assert jobs_reap_stale(stale_after=timedelta(minutes=5)).requeued == 1
    return job_claim(job_id=job.pk)


def test_an_attempt_the_reaper_took_back_stops_at_its_next_progress():
    first = job_claim(job_id=_job().pk)
    second = _reaped_and_claimed_again(first)
    assert second.attempts == 2
    with pytest.raises(JobLeaseLost):
        job_progress(job=first, progress=0.9, message="late")
    job_progress(job=second, progress=0.2, message="on time")
    row = Job.objects.get(pk=first.pk)
    assert (row.progress, row.message) == (0.2, "on time")


def test_an_attempt_that_lost_its_lease_records_no_outcome():
    from models_ml import tasks

    job = _job()

    def body(job: Job, progress: Any) -> dict[str, Any]:
        _reaped_and_claimed_again(job)
        progress(0.5, "still going")
        return {"done": True}

    tasks.run_job(job.pk, body)
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.attempts == 2
    assert job.result in ({}, None) and job.finished_at is None
