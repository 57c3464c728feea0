"""A retraining run's fine-tune and control are queued together on a pool of
images fixed then; a fine-tune that stops takes its control with it
(chains.chain_after_stop)."""

from __future__ import annotations

import json

import pytest

from models_ml.models import Job, JobKind, JobStatus
from models_ml.services.finetune import POOL_FILE, finetune_pool
from models_ml.services.jobs import (
    job_cancel,
    job_claim,
    job_dir,
    job_fail,
    job_finish_cancelled,
)
from tests.factories import ImageFactory

pytestmark = pytest.mark.django_db


def run_jobs(*, control: bool = True) -> tuple[Job, Job | None]:
    chain = {"id": "c0ffee", "control": control, "round": None}
    finetune = Job.objects.create(
        kind=JobKind.FINETUNE, params={"chain": {**chain, "step": "finetune"}}
    )
    other = (
        Job.objects.create(
            kind=JobKind.FINETUNE,
            params={
                "chain": {**chain, "step": "control"},
                "control": True,
                "pool_from_job": finetune.pk,
            },
        )
        if control
        else None
    )
    return finetune, other


def fail_for_good(job: Job, error: str, capture) -> None:
    """A worker claims the job and records its failure; the signal's
    receivers run once that commits."""
    with capture(execute=True):
        job_fail(job=job_claim(job_id=job.pk), error=error)


def test_a_failed_fine_tune_cancels_its_queued_control_and_says_why(
    django_capture_on_commit_callbacks,
):
    finetune, control = run_jobs()
    fail_for_good(finetune, "drift guard", django_capture_on_commit_callbacks)
    control.refresh_from_db()
    assert control.status == JobStatus.CANCELLED
    assert control.error == (
        f"stopped with the new version's fine-tune (job #{finetune.pk}), which failed"
    )


def test_a_running_control_stops_at_its_next_report_with_the_reason(
    django_capture_on_commit_callbacks, admin_user
):
    finetune, control = run_jobs()
    running = job_claim(job_id=control.pk)
    with django_capture_on_commit_callbacks(execute=True):
        job_cancel(job=finetune, actor=admin_user)  # queued: cancelled at once
    control.refresh_from_db()
    assert control.status == JobStatus.RUNNING and control.cancel_requested
    # What the worker does when its progress report finds the request.
    with django_capture_on_commit_callbacks(execute=True):
        job_finish_cancelled(job=running)
    control.refresh_from_db()
    assert control.status == JobStatus.CANCELLED
    assert control.error.startswith("stopped with the new version's fine-tune")
    assert "which cancelled" in control.error


def test_a_failed_control_leaves_the_new_version_to_finish(
    django_capture_on_commit_callbacks,
):
    finetune, control = run_jobs()
    fail_for_good(control, "out of memory", django_capture_on_commit_callbacks)
    finetune.refresh_from_db()
    assert finetune.status == JobStatus.QUEUED and not finetune.cancel_requested


def test_a_finished_control_or_a_run_without_one_is_left_alone(
    django_capture_on_commit_callbacks,
):
    finetune, control = run_jobs()
    Job.objects.filter(pk=control.pk).update(status=JobStatus.SUCCEEDED)
    lone, _ = run_jobs(control=False)
    with django_capture_on_commit_callbacks(execute=True):
        job_fail(job=job_claim(job_id=finetune.pk), error="x")
        job_fail(job=job_claim(job_id=lone.pk), error="x")
    control.refresh_from_db()
    assert control.status == JobStatus.SUCCEEDED and not control.cancel_requested
    assert Job.objects.filter(status=JobStatus.CANCELLED).count() == 0


def test_an_admin_cancel_without_a_reason_reads_as_before(admin_user):
    job = Job.objects.create(kind=JobKind.GENERATE)
    job_cancel(job=job, actor=admin_user)
    job.refresh_from_db()
    assert job.error == "cancelled before it started"
    running = Job.objects.create(kind=JobKind.GENERATE)
    claimed = job_claim(job_id=running.pk)
    job_cancel(job=running, actor=admin_user)
    job_finish_cancelled(job=claimed)
    running.refresh_from_db()
    assert running.error == "cancelled by an admin"


def test_a_pool_file_of_another_run_is_not_taken_for_this_ones(settings, tmp_path):
    settings.MODELS_DIR = tmp_path
    fixed, stale, seen = ImageFactory.create_batch(3)
    finetune, control = run_jobs()
    folder = job_dir(job=finetune)
    folder.mkdir(parents=True)
    # What the fine-tune looked at, for a control queued after it started.
    (folder / "inputs_summary.json").write_text(
        json.dumps({"pool_image_ids": [seen.pk]})
    )
    # Left by a queueing that rolled back, whose job id this one reuses.
    (folder / POOL_FILE).write_text(
        json.dumps({"chain": "other", "image_ids": [stale.pk]})
    )
    assert finetune_pool(control, None, {}) == [seen]
    (folder / POOL_FILE).write_text(
        json.dumps({"chain": "c0ffee", "image_ids": [fixed.pk, 10**9]})
    )
    # This run's: the images fixed at queueing (an id since deleted skipped).
    assert finetune_pool(control, None, {}) == [fixed]
    assert finetune_pool(finetune, None, {}) == [fixed]
