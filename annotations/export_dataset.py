"""Rated images as a dataset folder in a zip, streamed with bounded memory.

The zip unpacks into a folder that Hugging Face ``datasets`` reads as it is,
``load_dataset("imagefolder", data_dir=folder)``, and whose ``ratings.csv``
the engine trains on (``python -m models_ml.engine train_reward --ratings
folder/ratings.csv ...``)::

    README.txt        what the export holds and how to load it
    metadata.jsonl    one line per image: file_name + prompt, scores, provenance
    ratings.csv       one row per rating, the seeds' columns, paths relative
    images/<uid>.png  the stored, de-identified PNGs (no DICOM, no headers)

Only live first ratings count: undone ratings and test-retest repeats are
left out, and an image with no such rating is not exported.  Images are named
by their random uid, never by the uploaded file name (which may hold a
patient's name).  The zip is written to a non-seekable stream: each image is
read, written and dropped in turn; metadata and ratings lines wait in spooled
temporary files (on disk past a few MiB) and go in last.  What grows with the
export is the zip's central directory (about 100 bytes per file).
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from rest_framework.request import Request

from .audit import audit_record
from .exports import _ROWS_PER_FETCH, _writer, csv_safe
from .models import Rating, Round
from .users import User

RATINGS_CSV_COLUMNS = (
    "image_path",
    "rating",
    "modality",
    "expert_level",
    "prompt",
    "rater",
    "round",
    "image_uid",
    "image_source",
    "model_version",
)
_FIELDS = (
    "image_id",
    "image__file",
    "image__uid",
    "image__prompt",
    "image__modality",
    "image__source",
    "image__model_version__name",
    "round__name",
    "rater__username",
    "rater__rater_profile__expert_level",
    "score",
)
_SPOOL_BYTES = 4 * 1024 * 1024
_FLUSH_BYTES = 256 * 1024
_COPY_BYTES = 1024 * 1024
_MISSING_LISTED = 100


def ratings_for_dataset(*, round_id: int | None = None) -> QuerySet[Rating]:
    """Live first ratings, grouped by image (then in rating order)."""
    qs = Rating.objects.filter(retracted_at=None, is_repeat=False)
    if round_id is not None:
        qs = qs.filter(round_id=round_id)
    return qs.order_by("image_id", "id")


@dataclass
class DatasetImage:
    """One image of the export with every live first rating of it."""

    storage_name: str
    uid: str
    prompt: str
    modality: str
    source: str
    model_version: str
    ratings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def file_name(self) -> str:
        return f"images/{self.uid}.png"

    def metadata(self) -> dict[str, Any]:
        scores = [r["score"] for r in self.ratings]
        rounds = list(dict.fromkeys(r["round"] for r in self.ratings))
        # Every value keeps one JSON type on every line (strings never null,
        # no reward score that only some images have): `datasets` infers the
        # column types from the first 10 MB and refuses a later mismatch.
        return {
            "file_name": self.file_name,
            "image_uid": self.uid,
            "prompt": self.prompt,
            "modality": self.modality,
            "source": self.source,
            "model_version": self.model_version,
            "round": ";".join(rounds),
            "ratings": self.ratings,
            "n_ratings": len(scores),
            "mean_score": round(sum(scores) / len(scores), 4),
        }


def dataset_images(queryset: QuerySet[Rating]) -> Iterator[DatasetImage]:
    """One ``DatasetImage`` per rated image, in image id order."""
    current: DatasetImage | None = None
    current_id = None
    rows = queryset.values_list(*_FIELDS).iterator(chunk_size=_ROWS_PER_FETCH)
    for row in rows:
        image_id, name, uid, prompt, modality, source, version = row[:7]
        round_name, rater, level, score = row[7:]
        if image_id != current_id:
            if current is not None:
                yield current
            current_id = image_id
            current = DatasetImage(
                storage_name=name,
                uid=uid.hex,
                prompt=prompt,
                modality=modality,
                source=source,
                model_version=version or "",
            )
        assert current is not None
        current.ratings.append(
            {
                "rater": rater,
                "score": score,
                "expert_level": level or "",
                "round": round_name,
            }
        )
    if current is not None:
        yield current


class _Sink:
    """A write-only stream that hands back what was written since last asked."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.held = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self.held += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        """Nothing to release (``zipfile`` asks a stream it writes to for one)."""

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        self.held = 0
        return data


def _info(name: str, stamp: datetime, *, compress: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=stamp.timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def _readme(
    *, scope: str, stamp: datetime, n_images: int, n_ratings: int, missing: list[str]
) -> str:
    lines = [
        "medrlhf dataset export",
        "",
        f"Scope: {scope}",
        f"Exported: {stamp.isoformat()}",
        f"Images: {n_images}",
        f"Ratings: {n_ratings} (live first ratings; undone ratings and "
        "test-retest repeats left out)",
    ]
    if n_images == 0:
        lines += [
            "",
            "This export is empty: no image in this scope has a live rating yet.",
        ]
    if missing:
        lines += [
            "",
            f"{len(missing)} image file(s) were missing from storage and are "
            "left out (metadata too): "
            + ", ".join(missing[:_MISSING_LISTED])
            + (" ..." if len(missing) > _MISSING_LISTED else ""),
        ]
    lines += [
        "",
        "Layout:",
        "  metadata.jsonl   one line per image: file_name, prompt, modality, "
        "source, model_version, round, ratings [{rater, score, expert_level, "
        "round}], n_ratings, mean_score",
        "  ratings.csv      one row per rating: image_path,rating,modality,"
        "expert_level,prompt,rater,round,image_uid,image_source,model_version "
        "(cells starting with = + - @ tab or CR get a leading ')",
        "  images/<uid>.png the stored de-identified PNGs",
        "",
        "Load with Hugging Face datasets:",
        '  load_dataset("imagefolder", data_dir="<this folder>")',
        "Train the engine's reward model:",
        "  python -m models_ml.engine train_reward --ratings <this folder>/"
        "ratings.csv --output_dir <out>",
        "",
    ]
    return "\n".join(lines)


def _spooled() -> IO[bytes]:
    return tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES, mode="w+b")


def dataset_zip_stream(
    queryset: QuerySet[Rating], *, scope: str = "all rounds"
) -> Iterator[bytes]:
    """Yield the zip's bytes in pieces of about 256 KiB."""
    stamp = timezone.now().replace(microsecond=0)
    sink = _Sink()
    archive = zipfile.ZipFile(sink, "w", allowZip64=True)
    metadata, ratings = _spooled(), _spooled()
    writer = _writer()
    ratings.write(writer.writerow(RATINGS_CSV_COLUMNS).encode())
    n_images = n_ratings = 0
    missing: list[str] = []
    try:
        for image in dataset_images(queryset):
            try:
                with default_storage.open(image.storage_name, "rb") as handle:
                    data = handle.read()
            except OSError:
                missing.append(image.uid)
                continue
            archive.writestr(_info(image.file_name, stamp, compress=False), data)
            del data
            n_images += 1
            n_ratings += len(image.ratings)
            metadata.write(
                json.dumps(image.metadata(), ensure_ascii=False).encode() + b"\n"
            )
            for r in image.ratings:
                row = (
                    image.file_name,
                    r["score"],
                    csv_safe(image.modality),
                    csv_safe(r["expert_level"]),
                    csv_safe(image.prompt),
                    csv_safe(r["rater"]),
                    csv_safe(r["round"]),
                    image.uid,
                    image.source,
                    csv_safe(image.model_version),
                )
                ratings.write(writer.writerow(row).encode())
            if sink.held >= _FLUSH_BYTES:
                yield sink.take()
        readme = _readme(
            scope=scope,
            stamp=stamp,
            n_images=n_images,
            n_ratings=n_ratings,
            missing=missing,
        )
        archive.writestr(_info("README.txt", stamp, compress=True), readme)
        for name, spool in (("metadata.jsonl", metadata), ("ratings.csv", ratings)):
            info = _info(name, stamp, compress=True)
            info.file_size = spool.tell()
            spool.seek(0)
            with archive.open(info, "w") as entry:
                while chunk := spool.read(_COPY_BYTES):
                    entry.write(chunk)
                    if sink.held >= _FLUSH_BYTES:
                        yield sink.take()
        archive.close()
        yield sink.take()
    finally:
        metadata.close()
        ratings.close()


def dataset_scope(round_id: int | None) -> str:
    """What the zip's README says it covers: one round by name, or all."""
    if round_id is None:
        return "all rounds"
    name = Round.objects.filter(pk=round_id).values_list("name", flat=True).first()
    return f"round {name}" if name is not None else f"round {round_id}"


def dataset_export_start(
    *,
    actor: User,
    round_id: int | None,
    via: str,
    request: HttpRequest | Request | None = None,
) -> Iterator[bytes]:
    """Audit a dataset export and return its zip stream."""
    audit_record(
        action="export_dataset",
        actor=actor,
        detail={"round": round_id, "via": via},
        request=request,
    )
    return dataset_zip_stream(
        ratings_for_dataset(round_id=round_id), scope=dataset_scope(round_id)
    )
