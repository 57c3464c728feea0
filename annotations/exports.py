"""Ratings export as CSV, streamed row by row with bounded memory."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from .models import Rating

EXPORT_COLUMNS = (
    "image_path",
    "rating",
    "modality",
    "expert_level",
    "prompt",
    "rater",
    "round",
    "round_id",
    "image_uid",
    "image_source",
    "is_control",
    "model_version",
    "reward_score",
    "flags",
    "comment",
    "time_taken_ms",
    "created_at",
)
_FIELDS = (
    "image__file",
    "score",
    "image__modality",
    "rater__rater_profile__expert_level",
    "image__prompt",
    "rater__username",
    "round__name",
    "round_id",
    "image__uid",
    "image__source",
    "assignment__round_image__is_control",
    "image__model_version__name",
    "image__reward_score",
    "flags",
    "comment",
    "time_taken_ms",
    "created_at",
)
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """Neutralise spreadsheet formulas: a leading quote makes the cell text."""
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


class _Echo:
    def write(self, value: str) -> str:
        return value


def ratings_for_export(*, round_id: int | None = None) -> QuerySet[Rating]:
    qs = Rating.objects.filter(retracted_at=None)
    if round_id is not None:
        qs = qs.filter(round_id=round_id)
    return qs.order_by("id")


def export_rows(
    queryset: QuerySet[Rating], *, absolute_paths: bool = False
) -> Iterator[str]:
    """Yield the CSV text line by line, header first."""
    writer = csv.writer(_Echo(), lineterminator="\n")
    yield writer.writerow(EXPORT_COLUMNS)
    media_root = Path(settings.MEDIA_ROOT)
    for row in queryset.values_list(*_FIELDS).iterator(chunk_size=5000):
        out = list(row)
        if absolute_paths:
            out[0] = str(media_root / out[0])
        out[8] = out[8].hex if out[8] is not None else ""
        out[13] = ";".join(out[13]) if out[13] else ""
        out[16] = out[16].isoformat()
        yield writer.writerow([csv_safe(v) for v in out])
