"""A real Celery worker runs jobs through whichever broker is configured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from annotations.models import Dataset
from annotations.services.imports import dataset_import_start
from models_ml.models import Job, JobStatus
from tests.worker import celery_worker, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _dataset(folder: Path, n: int = 3) -> Path:
    folder.mkdir(parents=True)
    lines = ["path,Text,modality"]
    for i in range(n):
        pixels = np.random.default_rng(i).integers(0, 255, (32, 32), dtype=np.uint8)
        PILImage.fromarray(pixels).save(folder / f"{i}.png")
        lines.append(f"{i}.png,Chest X-ray: view {i},Chest X-ray")
    (folder / "data.csv").write_text("\n".join(lines) + "\n")
    return folder / "data.csv"


def test_import_job_runs_in_a_real_worker(tmp_path, settings, admin_user):
    settings.IMPORT_ROOTS = [tmp_path]
    csv_path = _dataset(tmp_path / "ds")
    with celery_worker(log=tmp_path / "worker.log"):
        job = dataset_import_start(
            name="via worker", source=csv_path, created_by=admin_user
        )
        wait_for(
            lambda: Job.objects.get(pk=job.pk).is_finished,
            timeout=120,
            what=f"import job; worker log:\n{(tmp_path / 'worker.log')}",
        )
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, (
        job.error,
        (tmp_path / "worker.log").read_text(),
    )
    assert job.attempts == 1 and job.progress == 1.0
    assert job.celery_id
    dataset = Dataset.objects.get(name="via worker")
    assert dataset.images.count() == 3
    assert job.result["dataset_id"] == dataset.pk


def test_failed_import_job_records_the_report_and_imports_nothing(
    tmp_path, settings, admin_user
):
    settings.IMPORT_ROOTS = [tmp_path]
    csv_path = _dataset(tmp_path / "ds")
    with csv_path.open("a") as fh:
        fh.write("missing.png,Chest X-ray: gone,Chest X-ray\n")
    with celery_worker(log=tmp_path / "worker.log"):
        job = dataset_import_start(name="bad", source=csv_path, created_by=admin_user)
        wait_for(
            lambda: Job.objects.get(pk=job.pk).is_finished,
            timeout=120,
            what="import job",
        )
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "nothing imported" in job.error
    assert any(e["line"] == 5 for e in job.result["report"]["errors"])
    assert not Dataset.objects.filter(name="bad").exists()
