"""Files of a generate job: its images, their provenance, the zip download.

Shared by the API, the generate page and ``manage.py generate``.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile
from typing import Any, BinaryIO

from django.db.models import QuerySet

from annotations.models import Image, ImageSource

from .models import Job

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
        "model_version_name": image.model_version.name,
        "engine_version": g.get("engine_version"),
        "reward_version_id": g.get("reward_version_id"),
        "job_id": g.get("job_id"),
        "request_index": g.get("request_index"),
        "attempt": g.get("attempt"),
        "uncertainty": g.get("uncertainty"),
        "created_at": image.created_at.isoformat(),
    }


def kept_file_name(index: int, image: Image) -> str:
    return f"{index:04d}_{image.modality}_seed{image.generation.get('seed')}.png"


def write_manifests(rows: list[dict[str, Any]]) -> tuple[str, str]:
    """``manifest.csv`` and ``manifest.json`` texts for provenance rows."""
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=MANIFEST_FIELDS)
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    return table.getvalue(), json.dumps(rows, indent=2)


def generate_zip(job: Job, out: BinaryIO) -> int:
    """Write the job's kept images and their manifests as a zip; returns the
    number of images.  Images are copied a file at a time."""
    rows = []
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        kept = generated_images(job).filter(generation__kept=True)
        for index, image in enumerate(kept):
            name = f"images/{kept_file_name(index, image)}"
            with image.file.open("rb") as src, archive.open(name, "w") as dst:
                shutil.copyfileobj(src, dst)
            rows.append(provenance_row(image, file_name=name))
        table, listing = write_manifests(rows)
        archive.writestr("manifest.csv", table)
        archive.writestr("manifest.json", listing)
    return len(rows)
