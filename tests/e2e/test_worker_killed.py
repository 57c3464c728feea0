"""A worker process killed in the middle of training: the reaper notices, a
new worker resumes from the last checkpoint, and the job finishes once.

Real processes throughout, as ``make run`` lays them out: one worker on the
default queue running beat (the reaper), one on the ``ml`` queue that is
SIGKILLed with its pool child, and a fresh ``ml`` worker started after it.
On the filesystem broker the killed worker's message is gone once fetched,
and on Redis it stays unacknowledged until the visibility timeout (an hour),
so in both cases the reaper's requeue is what brings the job back.
"""

from __future__ import annotations

import time

import pytest

from models_ml.engine.checkpoint import latest_checkpoint, list_checkpoints
from models_ml.models import Job, JobStatus, ModelVersion
from models_ml.services.base_training import model_version_train_base_start
from models_ml.services.jobs import job_dir
from tests.factories import DatasetFactory, ImageFactory
from tests.worker import celery_worker, kill_worker, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

MAX_STEPS = 16
TRAIN = {
    "resolution": 16,
    "channels": [8, 16],
    "max_steps": MAX_STEPS,
    "batch_size": 2,
    "checkpointing_steps": 4,
    "lr_warmup_steps": 0,
    "device": "cpu",
}
# A short lease and a reaper every second, so that the dead worker's job is
# retried within seconds instead of the production default of minutes.
LEASE = {"JOB_STALE_AFTER_SECONDS": "6", "JOB_REAP_EVERY_SECONDS": "1"}


def test_a_job_whose_worker_is_killed_resumes_from_its_checkpoint_in_a_new_worker(
    tmp_path, admin_user
):
    started = time.monotonic()
    dataset = DatasetFactory(name="killed")
    ImageFactory.create_batch(4, dataset=dataset)
    log, reaper_log = tmp_path / "ml-worker.log", tmp_path / "reaper.log"

    with celery_worker(
        queues="default",
        log=reaper_log,
        env=LEASE,
        beat_schedule=tmp_path / "beat-schedule",
    ):
        with celery_worker(queues="ml", log=log, env=LEASE) as first:
            job = model_version_train_base_start(
                dataset=dataset, created_by=admin_user, params=TRAIN
            )
            out = job_dir(job=job)
            wait_for(
                lambda: latest_checkpoint(out) is not None,
                timeout=240,
                interval=0.05,
                what=f"a first checkpoint; worker log: {log}",
            )
            kill_worker(first)
            killed_after = time.monotonic() - started
        job.refresh_from_db()
        killed_at = int(latest_checkpoint(out).name.rsplit("-", 1)[1])
        # Killed in the middle: still running as far as the row knows.
        assert job.status == JobStatus.RUNNING and job.attempts == 1, job.error
        assert 0 < killed_at < MAX_STEPS and not (out / "model").exists()
        assert not ModelVersion.objects.exists()

        with celery_worker(queues="ml", log=log, env=LEASE):
            wait_for(
                lambda: Job.objects.get(pk=job.pk).is_finished,
                timeout=240,
                what="the retried job",
            )
        reaper_text = reaper_log.read_text()
    elapsed = time.monotonic() - started

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, (job.error, log.read_text()[-4000:])
    assert job.attempts == 2 and job.progress == 1.0
    assert job.result["resumed_from_step"] == killed_at
    assert job.result["steps"] == MAX_STEPS
    # Exactly one version, whose loss curve spans both attempts.
    version = ModelVersion.objects.get()
    assert version.job_id == job.pk and version.metrics["resumed_from_step"] > 0
    assert len(version.metrics["losses"]) == MAX_STEPS
    assert Job.objects.count() == 1
    assert "reaper: 1 jobs requeued" in reaper_text, reaper_text[-4000:]
    steps = [int(p.name.rsplit("-", 1)[1]) for p in list_checkpoints(out)]
    assert steps[-1] == MAX_STEPS
    print(
        f"\nkilled at step {killed_at} after {killed_after:.1f} s, "
        f"resumed and finished after {elapsed:.1f} s"
    )
