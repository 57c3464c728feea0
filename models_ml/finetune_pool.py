"""Which generated images a fine-tune looks at.

A retraining run fixes them when it queues the new version's fine-tune
(``finetune_pool_fix``), and its control reads the same file, so the two
train on the same images whichever starts first.
"""

from __future__ import annotations

import json
from typing import Any

from annotations.models import Image

from .ml_services import job_dir
from .models import Job, ModelVersion
from .selectors import generated_images_for_finetune

# The generated images a fine-tune looks at, at most (the newest first).
DEFAULT_MAX_SAMPLES = 5000
POOL_FILE = "pool.json"


def finetune_pool_fix(
    *, job: Job, parent: ModelVersion, params: dict[str, Any]
) -> list[int]:
    """Fix the generated images a queued fine-tune of a retraining run will
    look at (the newest of the parent's lineage) in its job folder, so that a
    control queued beside it trains on exactly the same ones whenever either
    starts. The file names the run: one left by a queueing that rolled back
    is not taken for another job's that reuses the id."""
    ids = [
        image.pk
        for image in generated_images_for_finetune(
            diffusion_version=parent,
            limit=int(params.get("max_samples", DEFAULT_MAX_SAMPLES)),
        )
    ]
    folder = job_dir(job=job)
    folder.mkdir(parents=True, exist_ok=True)
    chain_id = (job.params.get("chain") or {}).get("id")
    (folder / POOL_FILE).write_text(json.dumps({"chain": chain_id, "image_ids": ids}))
    return ids


def finetune_pool(
    job: Job, parent: ModelVersion, params: dict[str, Any]
) -> list[Image]:
    """The generated images a fine-tune looks at: those fixed when it was
    queued (a retraining run's, ``finetune_pool_fix``), those of the fine-tune
    a control is the control of, else the newest of the parent's lineage."""
    source = job.params.get("pool_from_job")
    folder = job_dir(job=Job(pk=source)) if source is not None else job_dir(job=job)
    fixed = folder / POOL_FILE
    chain_id = (job.params.get("chain") or {}).get("id")
    pool = json.loads(fixed.read_text()) if fixed.exists() else {}
    if chain_id is not None and pool.get("chain") == chain_id:
        ids = pool["image_ids"]
    elif source is not None:
        # A control queued after its fine-tune had started (before the pool
        # was fixed at queueing): the images that fine-tune looked at.
        summary = folder / "inputs_summary.json"
        ids = json.loads(summary.read_text())["pool_image_ids"]
    else:
        return generated_images_for_finetune(
            diffusion_version=parent,
            limit=int(params.get("max_samples", DEFAULT_MAX_SAMPLES)),
        )
    found = Image.objects.in_bulk(ids)
    return [found[pk] for pk in ids if pk in found]
