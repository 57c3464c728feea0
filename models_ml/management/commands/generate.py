"""``manage.py generate``: reward-filtered generation with the seeds' option names.

Runs the generate job in this process and writes the kept images as PNGs with
``manifest.csv`` and ``manifest.json``; ``--queue`` hands the job to a worker
instead.  Kept and rejected images are stored as usual, so the job's results
also show on the generate page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotations.errors import DomainError
from models_ml.generate_files import (
    generated_images,
    image_file_name,
    provenance_row,
    write_manifests,
)
from models_ml.models import Job, JobStatus, ModelKind, ModelVersion
from models_ml.selectors import latest_reward_version

from ...services.generation import generate_start
from ...services.params import GENERATE_MODES


def resolve_version(value: str, *, kind: str, option: str) -> ModelVersion:
    """A version by id, or the registered version whose folder is ``value``."""
    if value.isdigit():
        version = ModelVersion.objects.filter(pk=int(value), kind=kind).first()
        if version is None:
            raise CommandError(f"{option}: no {kind} model version with id {value}")
        return version
    folder = str(Path(value).expanduser().resolve())
    version = ModelVersion.objects.filter(path=folder, kind=kind).first()
    if version is None:
        raise CommandError(
            f"{option}: {folder} is not a registered {kind} model version; "
            "give a version id or register the folder first"
        )
    return version


class Command(BaseCommand):
    help = (
        "Generate images and keep those the reward model scores best; writes "
        "PNGs and manifest.csv/manifest.json to --output_dir."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add = parser.add_argument
        add("--model_path", required=True, help="diffusion version id or its folder")
        add(
            "--reward_model",
            help="reward version id or its folder (default: the newest)",
        )
        add("--prompt", required=True, help="prompt text, e.g. 'CT: axial slice'")
        add(
            "--modality",
            help="modality (default: the text before ':' in the prompt)",
        )
        add(
            "--num_images",
            "--img_num",
            dest="num_images",
            type=int,
            default=1,
            help="images to keep",
        )
        add("--output_dir", help="folder for PNGs and manifests")
        add(
            "--mode",
            choices=GENERATE_MODES,
            default="best_of_n",
            help="best_of_n, threshold, or none: every image unfiltered (also "
            "what happens while no reward model exists)",
        )
        add("--n", type=int, default=4, help="candidates per image in best_of_n")
        add(
            "--threshold",
            type=float,
            help="lowest reward kept (default: the reward model's calibrated one)",
        )
        add("--max_attempts", type=int, default=8, help="tries per image (threshold)")
        add("--seed", type=int, help="first seed (default: random)")
        add("--num_inference_steps", type=int, help="sampling steps")
        add("--guidance_scale", type=float, help="classifier-free guidance")
        add("--device", help="cpu, cuda, cuda:1 ...")
        add("--queue", action="store_true", help="queue a job for a worker instead")

    def handle(self, *args: Any, **opts: Any) -> None:
        if not opts["queue"] and not opts["output_dir"]:
            raise CommandError("--output_dir is needed (or --queue)")
        kwargs = self._job_kwargs(opts)
        try:
            job = generate_start(created_by=None, enqueue=opts["queue"], **kwargs)
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        if opts["queue"]:
            self.stdout.write(f"queued generate job {job.pk}")
            return
        from models_ml import tasks

        tasks.ml_generate(job.pk)  # the task itself, in this process
        job.refresh_from_db()
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"generate job {job.pk} {job.status}: {job.error}")
        kept = write_kept(job, Path(opts["output_dir"]))
        rejected = generated_images(job).count() - kept
        self.stdout.write(
            f"job {job.pk}: {kept} kept, {rejected} rejected; "
            f"manifest: {Path(opts['output_dir']) / 'manifest.csv'}"
        )

    def _job_kwargs(self, opts: dict[str, Any]) -> dict[str, Any]:
        model = resolve_version(
            opts["model_path"], kind=ModelKind.DIFFUSION, option="--model_path"
        )
        reward: ModelVersion | None
        if opts["reward_model"]:
            reward = resolve_version(
                opts["reward_model"], kind=ModelKind.REWARD, option="--reward_model"
            )
        else:
            # None: no reward model yet, so the images come unfiltered.
            reward = latest_reward_version()
        modality = opts["modality"] or _prefix(opts["prompt"])
        if not modality:
            raise CommandError(
                "--modality: give it, or start the prompt with it ('CT: ...')"
            )
        sampling = {
            key: opts[option]
            for key, option in (
                ("steps", "num_inference_steps"),
                ("guidance", "guidance_scale"),
                ("device", "device"),
            )
            if opts[option] is not None
        }
        return {
            "model_version": model,
            "reward_version": reward,
            "prompt": opts["prompt"],
            "modality": modality,
            "count": opts["num_images"],
            "mode": opts["mode"],
            "n": opts["n"],
            "threshold": opts["threshold"],
            "max_attempts": opts["max_attempts"],
            "seed": opts["seed"],
            "sampling": sampling,
        }


def write_kept(job: Job, output_dir: Path) -> int:
    """Copy a job's kept images into ``output_dir`` with both manifests."""
    output_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    kept = generated_images(job).filter(generation__kept=True)
    for index, image in enumerate(kept):
        name = image_file_name(index, image)
        with image.file.open("rb") as src:
            (output_dir / name).write_bytes(src.read())
        rows.append(provenance_row(image, file_name=name))
    table, listing = write_manifests(rows)
    (output_dir / "manifest.csv").write_text(table, encoding="utf-8")
    (output_dir / "manifest.json").write_text(listing, encoding="utf-8")
    return len(rows)


def _prefix(prompt: str) -> str:
    head, sep, _ = prompt.partition(":")
    return head.strip() if sep else ""
