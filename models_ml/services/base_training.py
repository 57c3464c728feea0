"""Base training: a diffusion model trained on a dataset's real images, or a
model folder on disk adopted as a version (``*_start`` in the web process,
``train_base_run`` in the worker)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.db import transaction

from annotations.audit import audit_record
from annotations.errors import DomainError
from annotations.models import (
    Dataset,
)
from annotations.users import User

from ..models import (
    Job,
    JobKind,
    ModelKind,
    ModelVersion,
)
from ..samples import version_samples_make
from ..selectors import (
    real_images_for_training,
)
from .jobs import job_create, job_dir
from .params import TRAIN_KEYS, check_keys, positive_int
from .worker import (
    DEFAULT_BASE_STEPS,
    Progress,
    Reporter,
    checkpoint_step,
    device_for,
    real_csv_write,
    train_config_kwargs,
    train_metrics,
    train_with_reporter,
    version_result,
)


@transaction.atomic
def model_version_train_base_start(
    *, dataset: Dataset, created_by: User | None, params: dict[str, Any]
) -> Job:
    """Queue training of a base diffusion model on ``dataset``'s real images."""
    check_keys(params, TRAIN_KEYS, "train_base")
    if not real_images_for_training(dataset_ids=[dataset.pk]).exists():
        raise DomainError(f"dataset {dataset.name!r} has no usable real images")
    if params.get("backend", "tiny") == "sd" and not params.get("model_path"):
        raise DomainError("backend 'sd' needs model_path (a local SD folder)")
    if "max_steps" in params:
        positive_int(params["max_steps"], "max_steps")
    return job_create(
        kind=JobKind.TRAIN_BASE,
        created_by=created_by,
        params={"dataset_id": dataset.pk, "train": dict(params)},
    )


_MODEL_FILES: dict[str, tuple[str, ...]] = {
    ModelKind.DIFFUSION: ("medrlhf_model.json", "model_index.json"),
    ModelKind.REWARD: ("reward_model.json",),
}


@transaction.atomic
def model_version_register(
    *,
    name: str,
    kind: str,
    path: Path | str,
    created_by: User | None,
    dataset: Dataset | None = None,
    parent: ModelVersion | None = None,
    params: dict[str, Any] | None = None,
) -> ModelVersion:
    """Adopt a model folder already on disk (a kept demo checkpoint, a local
    Stable Diffusion folder) as a version, without training it."""

    if kind not in _MODEL_FILES:
        raise DomainError(f"kind must be one of {', '.join(_MODEL_FILES)}")
    folder = Path(path).resolve()
    if not any((folder / f).is_file() for f in _MODEL_FILES[kind]):
        raise DomainError(
            f"{folder}: not a {kind} model folder (needs "
            f"{' or '.join(_MODEL_FILES[kind])})"
        )
    if not name.strip():
        raise DomainError("the version needs a name")
    backend = "reward" if kind == ModelKind.REWARD else "sd"
    described = folder / "medrlhf_model.json"
    if kind == ModelKind.DIFFUSION and described.is_file():
        try:
            backend = str(json.loads(described.read_text())["backend"])
        except (ValueError, KeyError) as exc:
            raise DomainError(f"{described}: no readable 'backend' field") from exc
    version = ModelVersion.objects.create(
        name=name.strip(),
        kind=kind,
        backend=backend,
        parent=parent,
        dataset=dataset,
        path=str(folder),
        params={**(params or {}), "registered": True},
    )
    audit_record(action="model_version_register", actor=created_by, obj=version)
    if version.kind == ModelKind.DIFFUSION:
        # Its sample grid (``samples``) is drawn by the ML worker: a Stable
        # Diffusion folder takes minutes on a CPU, too long for a request.
        version_id = version.pk
        transaction.on_commit(lambda: _version_samples_enqueue(version_id))
    return version


def _version_samples_enqueue(version_id: int) -> None:
    """Queued by name on the ML queue, as jobs are (services.job_create)."""
    from medrlhf.celery import app

    app.send_task("models_ml.tasks.ml_version_samples", args=[version_id], queue="ml")


def train_base_run(job: Job, progress: Progress) -> dict[str, Any]:
    """Train a base diffusion model on a dataset's real images."""
    from ..engine import TrainConfig

    done = ModelVersion.objects.filter(job=job).first()
    if done is not None:
        return version_result(done)
    dataset = Dataset.objects.get(pk=job.params["dataset_id"])
    out = job_dir(job=job)
    out.mkdir(parents=True, exist_ok=True)
    data_csv = out / "data.csv"
    # Written once: a resumed run must draw its batches from the same rows.
    if not data_csv.exists():
        real_csv_write(data_csv, real_images_for_training(dataset_ids=[dataset.pk]))
    params = dict(job.params.get("train") or {})
    config = TrainConfig(
        data_csv=str(data_csv),
        output_dir=str(out),
        resume="latest",
        **train_config_kwargs(params, DEFAULT_BASE_STEPS),
    )
    resumed_from = checkpoint_step(out)
    result = train_with_reporter(config, Reporter(progress, hold_cancel=True))
    # Trained from a folder that is a version already: that is its parent.
    parent = None
    if config.model_path:
        parent = ModelVersion.objects.filter(
            kind=ModelKind.DIFFUSION, path=str(Path(config.model_path).resolve())
        ).first()
    with transaction.atomic():
        version = ModelVersion.objects.create(
            name=params.get("name") or f"{dataset.name} base #{job.pk}",
            kind=ModelKind.DIFFUSION,
            backend=config.backend,
            parent=parent,
            dataset=dataset,
            path=str(result.final_dir),
            params=params,
            metrics=train_metrics(result, resumed_from),
            job=job,
        )
    version_samples_make(version, device=device_for(params.get("device")))
    return version_result(version)
