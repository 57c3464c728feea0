"""Files of a generate job: its images, their provenance, the zip download.

Shared by the API, the generate page and ``manage.py generate``; the zip
layout is described once, in ``generate_zip``.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
import zipfile
from typing import IO, Any, cast

from django.db.models import F, QuerySet
from django.http import FileResponse

from annotations.errors import DomainError
from annotations.exports import csv_safe
from annotations.models import Image, ImageSource

from .models import Job, JobStatus, ModelVersion

ZIP_INCLUDE = ("all", "kept")
ZIP_SPOOL_BYTES = 8 * 1024**2


class JobNotFinished(DomainError):
    status_code = 409


MANIFEST_FIELDS = (
    "file_name",
    "uid",
    "kept",
    "reward_score",
    "prompt",
    "modality",
    "seed",
    "steps",
    "guidance",
    "scheduler",
    "model_version_id",
    "model_version_name",
    "engine_version",
    "reward_version_id",
    "job_id",
    "request_index",
    "attempt",
    "uncertainty",
    "created_at",
)


def generated_images(job: Job) -> QuerySet[Image]:
    return (
        Image.objects.filter(source=ImageSource.GENERATED, generation__job_id=job.pk)
        .select_related("model_version")
        .order_by("id")
    )


def provenance_row(image: Image, *, file_name: str = "") -> dict[str, Any]:
    """One image's manifest row: its scores and how it was made."""
    g = image.generation
    return {
        "file_name": file_name,
        "uid": image.uid.hex,
        "kept": bool(g.get("kept")),
        "reward_score": image.reward_score,
        "prompt": image.prompt,
        "modality": image.modality,
        "seed": g.get("seed"),
        "steps": g.get("steps"),
        "guidance": g.get("guidance"),
        "scheduler": g.get("scheduler"),
        "model_version_id": image.model_version_id,
        # A generated image has a version (generated_image_has_model_version).
        "model_version_name": cast(ModelVersion, image.model_version).name,
        "engine_version": g.get("engine_version"),
        "reward_version_id": g.get("reward_version_id"),
        "job_id": g.get("job_id"),
        "request_index": g.get("request_index"),
        "attempt": g.get("attempt"),
        "uncertainty": g.get("uncertainty"),
        "created_at": image.created_at.isoformat(),
    }


def image_file_name(index: int, image: Image) -> str:
    """``0003_ct_seed42.png``: rank, modality and seed (the uid when no seed)."""
    seed = image.generation.get("seed")
    tail = f"seed{seed}" if seed is not None else image.uid.hex[:12]
    return f"{index:04d}_{image.modality}_{tail}.png"


def write_manifests(rows: list[dict[str, Any]]) -> tuple[str, str]:
    """``manifest.csv`` (spreadsheet-safe) and ``manifest.json`` texts for
    provenance rows."""
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=MANIFEST_FIELDS)
    writer.writeheader()
    # Prompts are free text: a cell a spreadsheet would run as a formula is
    # made text, as in the ratings export (the JSON keeps the values as is).
    writer.writerows(
        {k: "" if v is None else csv_safe(v) for k, v in r.items()} for r in rows
    )
    return table.getvalue(), json.dumps(rows, indent=2)


def _best_first(images: QuerySet[Image]) -> QuerySet[Image]:
    return images.order_by(F("reward_score").desc(nulls_last=True), "id")


def generate_zip(job: Job, out: IO[bytes], *, include: str = "all") -> int:
    """Write a generate job's images and manifests as a zip; returns the count.

    The one layout of every generate download (page and API)::

        kept/0000_<modality>_seed<seed>.png      best reward first
        rejected/0004_<modality>_seed<seed>.png  only with include="all"
        manifest.csv                              one row per file
        manifest.json                             {"job_id", "params", "include",
                                                   "images": [same rows]}

    Numbering runs on across both folders, so every file name is unique.  Each
    row carries the file's reward score, kept flag and full provenance.
    Images are copied a file at a time, so memory stays flat.
    """
    if include not in ZIP_INCLUDE:
        raise DomainError(f"include must be one of {', '.join(ZIP_INCLUDE)}")
    images = generated_images(job)
    groups = [("kept", _best_first(images.filter(generation__kept=True)))]
    if include == "all":
        groups.append(("rejected", _best_first(images.exclude(generation__kept=True))))
    rows: list[dict[str, Any]] = []
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for folder, group in groups:
            for image in group:
                name = f"{folder}/{image_file_name(len(rows), image)}"
                with image.file.open("rb") as src, archive.open(name, "w") as dst:
                    shutil.copyfileobj(src, dst)
                rows.append(provenance_row(image, file_name=name))
        table, _ = write_manifests(rows)
        archive.writestr("manifest.csv", table)
        listing = {
            "job_id": job.pk,
            "params": job.params,
            "include": include,
            "images": rows,
        }
        archive.writestr("manifest.json", json.dumps(listing, indent=2))
    return len(rows)


def generate_zip_response(job: Job, *, include: str = "all") -> FileResponse:
    """The zip of a finished generate job as a download, built in a temporary
    file that spills to disk past a few megabytes."""
    if job.status != JobStatus.SUCCEEDED:
        raise JobNotFinished(
            f"generate job {job.pk} is {job.status}; its zip is ready once it "
            "has succeeded"
        )
    spool = tempfile.SpooledTemporaryFile(max_size=ZIP_SPOOL_BYTES)  # noqa: SIM115
    generate_zip(job, spool, include=include)
    spool.seek(0)
    response = FileResponse(
        spool,
        as_attachment=True,
        content_type="application/zip",
        filename=f"medrlhf-generate-{job.pk}.zip",
    )
    response["Cache-Control"] = "private, no-store"
    return response
