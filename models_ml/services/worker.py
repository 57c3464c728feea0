"""What every job body shares once a worker has claimed it.

Each ``*_run(job, progress)`` in this package is the body a Celery task hands
to ``run_job``: it reads its inputs from the database, calls the engine
(imported inside the functions, so the web process never loads torch),
records the outcome as rows and files, and returns the job's result. Bodies
are safe to run again after a worker died: training resumes from its last
checkpoint, generation skips images already stored, and a version already
recorded for the job is returned instead of made twice.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from django.core.files.storage import default_storage

from annotations.models import (
    Image,
)

from ..engine import EngineError
from ..models import Job, ModelVersion
from .jobs import JobCancelled

Progress = Callable[[float, str], None]

# Progress rows are written at most this often; each write is also the
# heartbeat and the cancel check.
PROGRESS_EVERY_S = 1.0
DEFAULT_BASE_STEPS = 1000
DEFAULT_FINETUNE_STEPS = 200
DEFAULT_FINETUNE_LR = 5e-5
# The drift guard is on for every fine-tune: it stops one whose samples get
# three times as far from the real images as its parent's were.
DEFAULT_MAX_DRIFT = 3.0
# Fine-tune parameters the platform reads itself; the rest go to TrainConfig.
PLATFORM_ONLY_FINETUNE_KEYS = (
    "filter_threshold",
    "kto_middle",
    "kto_middle_weight",
    "kto_unrated_weight",
    "objective",
)
DEFAULT_MAX_REAL_IMAGES = 500
MAX_LOSSES_KEPT = 500


class Reporter:
    """Throttled progress for one part (``start`` .. ``start + span``) of a job.

    With ``hold_cancel`` a cancel request is remembered instead of raised, so
    a training loop can stop at a step boundary and write its checkpoint.
    """

    def __init__(
        self,
        progress: Progress,
        *,
        start: float = 0.0,
        span: float = 1.0,
        hold_cancel: bool = False,
    ) -> None:
        self.progress = progress
        self.start = start
        self.span = span
        self.hold_cancel = hold_cancel
        self.cancelled = False
        self.last = 0.0

    def __call__(self, fraction: float, message: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        try:
            fraction = min(max(fraction, 0.0), 1.0)
            self.progress(self.start + self.span * fraction, message)
        except JobCancelled:
            if not self.hold_cancel:
                raise
            self.cancelled = True

    def should_stop(self) -> bool:
        return self.cancelled


def device_for(preference: str | None) -> str:
    import torch

    return preference or ("cuda" if torch.cuda.is_available() else "cpu")


def image_file_path(image: Image) -> str:
    return default_storage.path(image.file.name)


def real_csv_write(path: Path, images: Iterable[Image]) -> int:
    """The import CSV format (path,Text,modality) with absolute paths."""
    count = 0
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "Text", "modality"])
        for image in images:
            writer.writerow([image_file_path(image), image.prompt, image.modality])
            count += 1
    tmp.replace(path)
    return count


def checkpoint_step(output_dir: Path) -> int:
    from ..engine import latest_checkpoint

    latest = latest_checkpoint(output_dir)
    return int(latest.name.rsplit("-", 1)[1]) if latest else 0


def train_with_reporter(config: Any, reporter: Reporter) -> Any:
    """Run the engine's training loop; a cancel stops it after a checkpoint."""
    from ..engine import TrainProgress, finetune

    def on_step(p: TrainProgress) -> None:
        reporter(
            p.step / p.max_steps,
            f"step {p.step} of {p.max_steps}, loss {p.loss:.4f}",
            force=p.step in (1, p.max_steps),
        )

    result = finetune(config, progress=on_step, should_stop=reporter.should_stop)
    if reporter.cancelled:
        raise JobCancelled(f"stopped at step {result.steps}; checkpoints kept")
    if result.final_dir is None:
        raise EngineError(f"training stopped without a model: {result.stopped_reason}")
    return result


def train_metrics(result: Any, resumed_from: int) -> dict[str, Any]:
    from ..engine import spread_evenly

    losses = list(result.losses)
    tail = losses[-10:]
    return {
        "steps": result.steps,
        "final_loss": sum(tail) / len(tail) if tail else None,
        "losses": [float(v) for v in spread_evenly(losses, MAX_LOSSES_KEPT)],
        "samples_per_second": result.samples_per_second,
        "resumed_from_step": resumed_from,
        "drift": result.drift,
        "engine_version": result.version,
    }


def version_result(version: ModelVersion, **extra: Any) -> dict[str, Any]:
    return {
        "model_version_id": version.pk,
        "model_version": version.name,
        "path": version.path,
        "steps": version.metrics.get("steps"),
        "resumed_from_step": version.metrics.get("resumed_from_step"),
        **extra,
    }


def train_config_kwargs(params: dict[str, Any], default_steps: int) -> dict[str, Any]:
    kwargs = {k: v for k, v in params.items() if k not in ("name", "max_samples")}
    kwargs.setdefault("max_steps", default_steps)
    kwargs.setdefault("checkpointing_steps", max(1, int(kwargs["max_steps"]) // 10))
    if "channels" in kwargs:
        kwargs["channels"] = tuple(kwargs["channels"])
    return kwargs


def generation_record(generated: Any, *, job: Job) -> dict[str, Any]:
    """Provenance of an engine picture, a plain sample or a scored one."""
    provenance = getattr(generated, "provenance", None) or {}

    def field(name: str) -> Any:
        return getattr(generated, name, provenance.get(name))

    return {
        "seed": generated.seed,
        "steps": field("steps"),
        "guidance": field("guidance"),
        "scheduler": field("scheduler"),
        "prompt": generated.prompt,
        "modality": generated.modality,
        "engine_version": field("model_version"),
        "job_id": job.pk,
    }


def sampling_kwargs(sampling: dict[str, Any]) -> dict[str, Any]:
    return {
        "steps": sampling.get("steps"),
        "guidance": sampling.get("guidance"),
        "scheduler": sampling.get("scheduler"),
        "batch_size": int(sampling.get("batch_size", 8)),
    }
