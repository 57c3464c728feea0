"""ML job services and the behaviour of their jobs: queueing, cancel, a worker
that dies mid-training, and bounded attempts.

Task bodies run in this process with a tiny engine configuration.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from annotations.errors import DomainError
from annotations.models import Dataset, Image, Round, RoundStatus
from models_ml import tasks
from models_ml.models import Job, JobKind, JobStatus, ModelKind, ModelVersion
from models_ml.services import worker
from models_ml.services.base_training import (
    model_version_register,
    model_version_train_base_start,
)
from models_ml.services.generation import generate_start
from models_ml.services.jobs import job_cancel, job_create, job_dir, jobs_reap_stale
from models_ml.services.reward import reward_model_train_start
from models_ml.services.round_generation import round_generate_start
from tests.factories import DatasetFactory, ImageFactory

pytestmark = pytest.mark.django_db

os.environ.setdefault("OMP_NUM_THREADS", "1")

TINY = {
    "resolution": 16,
    "channels": [8, 16],
    "max_steps": 4,
    "batch_size": 2,
    "checkpointing_steps": 2,
    "lr_warmup_steps": 0,
    "learning_rate": 1e-3,
    "device": "cpu",
}
SAMPLING = {"steps": 2, "device": "cpu"}
REAL_PROGRESS = tasks.job_progress


class WorkerKilled(BaseException):
    """Stands in for SIGKILL: not an Exception, so nothing records it."""


@pytest.fixture(autouse=True)
def _one_thread_and_every_step_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    torch.set_num_threads(1)
    monkeypatch.setattr(worker, "PROGRESS_EVERY_S", 0.0)


@pytest.fixture(name="dataset")
def dataset_fixture() -> Dataset:
    ds = DatasetFactory(name="chest")
    for i in range(6):
        ImageFactory(
            dataset=ds,
            modality="ct" if i % 2 else "fundus",
            prompt=f"{'CT' if i % 2 else 'Fundus'}: case {i}",
        )
    return ds


def run(task: Any, job: Job) -> Job:
    task(job.pk)
    job.refresh_from_db()
    return job


def train_base(dataset: Dataset, user: Any, **overrides: Any) -> ModelVersion:
    job = model_version_train_base_start(
        dataset=dataset, created_by=user, params={**TINY, **overrides}
    )
    job = run(tasks.ml_train_base, job)
    assert job.status == JobStatus.SUCCEEDED, job.error
    return ModelVersion.objects.get(pk=job.result["model_version_id"])


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """Celery messages sent after commit: (task name, queue)."""
    from medrlhf.celery import app

    calls: list[tuple[str, str]] = []

    class Result:
        id = "celery-id"

    def send_task(name: str, args: Any = None, queue: str = "", **kw: Any) -> Any:
        calls.append((name, queue))
        return Result()

    monkeypatch.setattr(app, "send_task", send_task)
    yield calls


# --- services ---------------------------------------------------------------


def test_train_base_start_queues_its_task_on_the_ml_queue_after_commit(
    dataset, admin_user, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        job = model_version_train_base_start(
            dataset=dataset, created_by=admin_user, params=TINY
        )
    assert job.kind == JobKind.TRAIN_BASE
    assert job.params == {"dataset_id": dataset.pk, "train": TINY}
    assert sent == [("models_ml.tasks.ml_train_base", "ml")]
    assert Job.objects.get(pk=job.pk).celery_id == "celery-id"


def test_train_base_start_names_an_unknown_parameter(dataset, admin_user):
    with pytest.raises(DomainError, match="unknown parameter.*max_stepz"):
        model_version_train_base_start(
            dataset=dataset, created_by=admin_user, params={"max_stepz": 3}
        )
    assert not Job.objects.exists()


def test_train_base_start_refuses_a_dataset_without_usable_images(admin_user):
    empty = DatasetFactory(name="empty")
    ImageFactory(dataset=empty, quarantined=True)
    with pytest.raises(DomainError, match="no usable real images"):
        model_version_train_base_start(dataset=empty, created_by=admin_user, params={})


def _diffusion_version(dataset: Dataset, **kw: Any) -> ModelVersion:
    return ModelVersion.objects.create(
        name=kw.pop("name", "v"), kind=ModelKind.DIFFUSION, path="/x", dataset=dataset
    )


def test_round_generate_start_creates_a_generating_round_and_its_job(
    dataset, admin_user
):
    old, new = _diffusion_version(dataset), _diffusion_version(dataset)
    job = round_generate_start(
        model_version=new,
        compare_model_version=old,
        prompts=[("CT: case 1", "CT"), ("Fundus: case 2", "fundus")],
        images_per_prompt=3,
        created_by=admin_user,
        name="round 2",
        raters_per_image=2,
        control_share=0.25,
        control_pool=Image.objects.filter(dataset=dataset),
        seed=7,
    )
    rnd = Round.objects.get(pk=job.params["round_id"])
    assert job.kind == JobKind.GENERATE_ROUND
    assert rnd.status == RoundStatus.GENERATING and not rnd.items.exists()
    assert (rnd.model_version, rnd.compare_model_version) == (new, old)
    assert rnd.settings["job_id"] == job.pk
    assert job.params["prompts"] == [["CT: case 1", "ct"], ["Fundus: case 2", "fundus"]]
    assert len(job.params["control_pool_ids"]) == 6


def test_round_generate_start_refuses_a_control_share_the_pool_cannot_fill(
    dataset, admin_user
):
    with pytest.raises(DomainError, match="needs 12 real control images"):
        round_generate_start(
            model_version=_diffusion_version(dataset),
            prompts=[("CT: case", "ct")],
            images_per_prompt=12,
            created_by=admin_user,
            name="r",
            control_share=0.5,
            control_pool=Image.objects.filter(dataset=dataset),
        )
    assert not Round.objects.exists()


def test_round_generate_start_refuses_a_reward_model_as_generator(admin_user):
    reward = ModelVersion.objects.create(name="r", kind=ModelKind.REWARD, path="/r")
    with pytest.raises(DomainError, match="diffusion model version"):
        round_generate_start(
            model_version=reward,
            prompts=[("CT: x", "ct")],
            images_per_prompt=1,
            created_by=admin_user,
            name="r",
        )


def test_reward_training_needs_ratings(admin_user):
    with pytest.raises(DomainError, match="at least 2 ratings"):
        reward_model_train_start(created_by=admin_user, params={})


def test_threshold_generation_takes_the_reward_models_calibrated_threshold(
    dataset, admin_user
):
    reward = ModelVersion.objects.create(
        name="r", kind=ModelKind.REWARD, path="/r", metrics={"threshold": 0.7}
    )
    uncalibrated = ModelVersion.objects.create(
        name="r0", kind=ModelKind.REWARD, path="/r", metrics={"threshold": None}
    )
    common = {
        "model_version": _diffusion_version(dataset),
        "prompt": "CT: a slice",
        "modality": "CT",
        "count": 2,
        "mode": "threshold",
        "created_by": admin_user,
    }
    job = generate_start(reward_version=reward, **common)
    assert job.params["threshold"] == 0.7 and job.params["modality"] == "ct"
    with pytest.raises(DomainError, match="no calibrated"):
        generate_start(reward_version=uncalibrated, **common)


def test_web_side_ml_modules_do_not_import_torch():
    code = (
        "import django, sys; django.setup();"
        "import models_ml.selectors, models_ml.tasks, annotations.services.generation;"
        "import models_ml.services.base_training, models_ml.services.chains,"
        " models_ml.services.finetune, models_ml.services.generation,"
        " models_ml.services.jobs, models_ml.services.params,"
        " models_ml.services.review, models_ml.services.reward,"
        " models_ml.services.round_generation, models_ml.services.round_scoring,"
        " models_ml.services.rounds, models_ml.services.worker;"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "medrlhf.settings"},
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "False"


# --- job behaviour ---------------------------------------------------------------


def test_train_base_job_records_a_root_version_with_its_files_and_metrics(
    dataset, admin_user
):
    version = train_base(dataset, admin_user, name="base v1")
    assert version.kind == ModelKind.DIFFUSION and version.parent is None
    assert version.dataset == dataset and version.name == "base v1"
    assert version.job.kind == JobKind.TRAIN_BASE
    assert Path(version.path) == job_dir(job=version.job) / "model"
    assert (Path(version.path) / "medrlhf_model.json").is_file()
    assert version.metrics["steps"] == 4 and len(version.metrics["losses"]) == 4
    assert version.metrics["samples_per_second"] > 0
    assert version.metrics["resumed_from_step"] == 0
    # Its sample grid: one row per prompt of the dataset (six here).
    assert version.samples.count() == 6
    lines = (job_dir(job=version.job) / "data.csv").read_text().splitlines()
    assert lines[0] == "path,Text,modality" and len(lines) == 7
    assert all(Path(line.split(",")[0]).is_absolute() for line in lines[1:])


def test_cancel_stops_a_training_job_and_keeps_its_checkpoint(
    dataset, admin_user, monkeypatch
):
    def admin_cancels(*, job: Job, progress: float, message: str = "") -> None:
        job_cancel(job=job, actor=admin_user)
        REAL_PROGRESS(job=job, progress=progress, message=message)

    monkeypatch.setattr(tasks, "job_progress", admin_cancels)
    job = model_version_train_base_start(
        dataset=dataset, created_by=admin_user, params={**TINY, "max_steps": 50}
    )
    job = run(tasks.ml_train_base, job)
    assert job.status == JobStatus.CANCELLED
    assert not ModelVersion.objects.exists()
    assert [p.name for p in job_dir(job=job).glob("checkpoint-*")] == ["checkpoint-1"]
    assert not (job_dir(job=job) / "model").exists()


def _die_at_step(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    def dies(*, job: Job, progress: float, message: str = "") -> None:
        if message.startswith(f"step {step} "):
            raise WorkerKilled
        REAL_PROGRESS(job=job, progress=progress, message=message)

    monkeypatch.setattr(tasks, "job_progress", dies)


def _worker_goes_silent(job: Job, capture: Any) -> None:
    Job.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    with capture():
        jobs_reap_stale(stale_after=timedelta(minutes=5))


def test_a_job_whose_worker_died_resumes_from_its_checkpoint_and_finishes_once(
    dataset, admin_user, monkeypatch, django_capture_on_commit_callbacks
):
    job = model_version_train_base_start(
        dataset=dataset, created_by=admin_user, params=TINY
    )
    _die_at_step(monkeypatch, 3)
    with pytest.raises(WorkerKilled):
        tasks.ml_train_base(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    assert (job_dir(job=job) / "checkpoint-2").is_dir()

    monkeypatch.setattr(tasks, "job_progress", REAL_PROGRESS)
    # The dead worker's redelivered message finds the job held: it does nothing.
    tasks.ml_train_base(job.pk)
    assert Job.objects.get(pk=job.pk).attempts == 1
    _worker_goes_silent(job, django_capture_on_commit_callbacks)
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED
    job = run(tasks.ml_train_base, job)

    assert job.status == JobStatus.SUCCEEDED and job.attempts == 2
    assert job.result["resumed_from_step"] == 2 and job.result["steps"] == 4
    version = ModelVersion.objects.get()
    assert len(version.metrics["losses"]) == 4
    run(tasks.ml_train_base, job)
    assert ModelVersion.objects.count() == 1


def test_a_job_killed_on_every_attempt_ends_failed_after_max_attempts(
    dataset, admin_user, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.JOB_MAX_ATTEMPTS = 2
    job = model_version_train_base_start(
        dataset=dataset, created_by=admin_user, params=TINY
    )
    _die_at_step(monkeypatch, 1)
    for _ in range(2):
        with pytest.raises(WorkerKilled):
            tasks.ml_train_base(job.pk)
        _worker_goes_silent(job, django_capture_on_commit_callbacks)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and "giving up" in job.error
    tasks.ml_train_base(job.pk)
    assert Job.objects.get(pk=job.pk).attempts == 2


def test_a_job_the_engine_rejects_fails_at_once_naming_the_problem(dataset, admin_user):
    job = model_version_train_base_start(
        dataset=dataset, created_by=admin_user, params={**TINY, "resolution": 9}
    )
    job = run(tasks.ml_train_base, job)
    assert job.status == JobStatus.FAILED and job.attempts == 1
    assert "resolution 9" in job.error
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_job_busy_in_one_long_call_keeps_its_lease(settings):
    # The body sits in one call for twice the stale time.  The margins are
    # wide enough for a loaded CI machine: at 0.3 s a heartbeat (every 0.1 s)
    # that was descheduled for 0.3 s lost the lease once in CI.
    settings.JOB_STALE_AFTER = timedelta(seconds=1.5)
    job = job_create(kind=JobKind.TRAIN_BASE, params={}, enqueue=False)
    reaped = []

    def body(job: Job, progress: Any) -> dict[str, Any]:
        time.sleep(3.0)
        reaped.append(jobs_reap_stale().requeued)
        return {}

    tasks.run_job(job.pk, body)
    job.refresh_from_db()
    assert reaped == [0] and job.status == JobStatus.SUCCEEDED


def test_an_existing_model_folder_is_registered_as_a_version(
    dataset, admin_user, tmp_path
):
    folder = tmp_path / "kept"
    folder.mkdir()
    with pytest.raises(DomainError, match="not a diffusion model folder"):
        model_version_register(
            name="demo", kind=ModelKind.DIFFUSION, path=folder, created_by=admin_user
        )
    (folder / "medrlhf_model.json").write_text('{"backend": "tiny"}')
    version = model_version_register(
        name="demo",
        kind=ModelKind.DIFFUSION,
        path=folder,
        created_by=admin_user,
        dataset=dataset,
    )
    assert (version.backend, version.parent, version.dataset) == ("tiny", None, dataset)
    assert version.path == str(folder.resolve()) and version.params["registered"]
