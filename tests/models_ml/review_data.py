"""Records for the review and abandon tests, made directly: no model runs."""

from __future__ import annotations

from typing import Any

from annotations.models import Image, ImageSource, Round, RoundStatus
from models_ml.models import Job, JobKind, JobStatus, ModelKind, ModelVersion
from tests.factories import ImageFactory

PROMPT = "Fundus photograph: optic disc and macula"


def diffusion(name: str = "retina v2", **fields: Any) -> ModelVersion:
    return ModelVersion.objects.create(
        name=name, kind=ModelKind.DIFFUSION, path=f"/models/{name}", **fields
    )


def reward(name: str = "reward #1", **fields: Any) -> ModelVersion:
    return ModelVersion.objects.create(
        name=name, kind=ModelKind.REWARD, path=f"/models/{name}", **fields
    )


def scored(
    version: ModelVersion,
    score: float | None,
    *,
    job_id: int | None = 1,
    round: Round | None = None,
    modality: str = "fundus",
    seed: int = 0,
    **fields: Any,
) -> Image:
    """A generated image of ``version`` with reward ``score`` (None: unscored)."""
    return ImageFactory(
        dataset=None,
        source=ImageSource.GENERATED,
        model_version=version,
        modality=modality,
        prompt=PROMPT,
        reward_score=score,
        generated_for_round=round,
        generation={
            "job_id": job_id,
            "seed": seed,
            "steps": 20,
            "guidance": 3.0,
            "scheduler": "ddim",
            "kept": score is not None and score >= 0.5,
        },
        **fields,
    )


def generating_round(
    *, version: ModelVersion, admin: Any, job_status: str = JobStatus.FAILED
) -> tuple[Round, Job]:
    """A round waiting for its generate_round job, which is in ``job_status``."""
    rnd = Round.objects.create(
        name="Round 3: retina v2",
        status=RoundStatus.GENERATING,
        model_version=version,
        created_by=admin,
        settings={"prompts": [[PROMPT, "fundus"]], "images_per_prompt": 2},
    )
    job = Job.objects.create(
        kind=JobKind.GENERATE_ROUND,
        status=job_status,
        created_by=admin,
        error="CUDA out of memory" if job_status == JobStatus.FAILED else "",
        params={
            "round_id": rnd.pk,
            "model_version_id": version.pk,
            "compare_model_version_id": None,
            "prompts": [[PROMPT, "fundus"]],
            "images_per_prompt": 2,
            "seed": 11,
            "sampling": {"steps": 4},
            "control_pool_ids": [],
            "open_when_done": True,
            "chain": {"id": "run1", "step": "generate_round"},
        },
    )
    rnd.settings = {**rnd.settings, "job_id": job.pk}
    rnd.save(update_fields=["settings"])
    return rnd, job
