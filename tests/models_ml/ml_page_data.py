"""Records for the ML page tests, made directly: no model is trained."""

from __future__ import annotations

from typing import Any

from annotations.models import ImageSource
from models_ml.models import Job, JobKind, JobStatus, ModelKind, ModelVersion
from tests.factories import ImageFactory


def diffusion(name: str = "base", **fields: Any) -> ModelVersion:
    return ModelVersion.objects.create(
        name=name, kind=ModelKind.DIFFUSION, path=f"/models/{name}", **fields
    )


def reward(name: str = "reward", **fields: Any) -> ModelVersion:
    return ModelVersion.objects.create(
        name=name, kind=ModelKind.REWARD, path=f"/models/{name}", **fields
    )


def generate_job(
    *, user: Any, version: ModelVersion, reward_version: ModelVersion, **fields: Any
) -> Job:
    params = {
        "model_version_id": version.pk,
        "reward_version_id": reward_version.pk,
        "prompt": "Fundus photograph: optic disc",
        "modality": "fundus",
        "count": 2,
        "mode": "best_of_n",
        "n": 2,
        "threshold": None,
        "max_attempts": 8,
        "seed": 7,
        "sampling": {},
    }
    return Job.objects.create(
        kind=JobKind.GENERATE, params=params, created_by=user, **fields
    )


def generated_image(
    *, job: Job, version: ModelVersion, kept: bool, reward_score: float, **extra: Any
) -> Any:
    return ImageFactory(
        dataset=None,
        source=ImageSource.GENERATED,
        model_version=version,
        modality="fundus",
        prompt="Fundus photograph: optic disc",
        reward_score=reward_score,
        generation={
            "job_id": job.pk,
            "kept": kept,
            "seed": 7 + int(reward_score * 100),
            "steps": 20,
            "guidance": 3.5,
            "scheduler": "ddim",
            "attempt": 0,
            "reward_version_id": job.params["reward_version_id"],
            **extra,
        },
    )


def finished_generate_job(*, user: Any) -> tuple[Job, list[Any]]:
    """A succeeded generate job with two kept and two rejected images."""
    version, rew = diffusion(), reward()
    job = generate_job(
        user=user,
        version=version,
        reward_version=rew,
        status=JobStatus.SUCCEEDED,
        progress=1.0,
        result={"stats": {"n_generated": 4, "n_unfilled": 0}},
    )
    images = [
        generated_image(job=job, version=version, kept=True, reward_score=0.91),
        generated_image(job=job, version=version, kept=True, reward_score=0.82),
        generated_image(job=job, version=version, kept=False, reward_score=0.33),
        generated_image(job=job, version=version, kept=False, reward_score=0.12),
    ]
    return job, images
