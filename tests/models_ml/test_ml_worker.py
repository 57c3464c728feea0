"""A real Celery worker on the ``ml`` queue trains a base model."""

from __future__ import annotations

from pathlib import Path

import pytest

from models_ml.models import Job, JobStatus, ModelKind, ModelVersion
from models_ml.services.base_training import model_version_train_base_start
from tests.factories import DatasetFactory, ImageFactory
from tests.worker import celery_worker, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

TINY = {
    "resolution": 16,
    "channels": [8, 16],
    "max_steps": 3,
    "batch_size": 2,
    "checkpointing_steps": 1,
    "lr_warmup_steps": 0,
    "device": "cpu",
}


def test_train_base_runs_in_a_worker_listening_only_to_the_ml_queue(
    tmp_path, admin_user, monkeypatch
):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    dataset = DatasetFactory(name="worker set")
    ImageFactory.create_batch(3, dataset=dataset)
    log = tmp_path / "worker.log"
    with celery_worker(queues="ml", log=log):
        job = model_version_train_base_start(
            dataset=dataset, created_by=admin_user, params=TINY
        )
        wait_for(
            lambda: Job.objects.get(pk=job.pk).is_finished,
            timeout=240,
            what="train_base job",
        )
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, (job.error, log.read_text())
    assert job.attempts == 1 and job.progress == 1.0 and job.celery_id
    assert "ml_train_base" in log.read_text()
    version = ModelVersion.objects.get(pk=job.result["model_version_id"])
    assert version.kind == ModelKind.DIFFUSION and version.dataset == dataset
    assert version.metrics["steps"] == 3
    assert (Path(version.path) / "medrlhf_model.json").is_file()
