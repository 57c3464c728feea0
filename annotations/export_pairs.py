"""Preference pairs for reward training (DPO and the like), streamed as CSV.

A pair is one physician's own judgement: the same physician rated two
different images of the same prompt (and modality) in the same round, and
gave one a higher score.  The higher is ``chosen``, the lower ``rejected``
(3 over 1, 3 over 2, 2 over 1); equal scores make no pair.  Pairs are not
built across physicians or from mean scores: physicians use the 1–3 scale
differently, and a pair between two physicians' scores would compare the
physicians as much as the images.

Only live first ratings count: undone (retracted) ratings and test-retest
repeats are left out.  Rows come in a fixed order (round, modality, prompt,
physician, then the two ratings' ids) and memory holds one physician's
ratings of one prompt at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpRequest
from rest_framework.request import Request

from models_ml.engine import preference_pairs

from .audit import audit_record
from .exports import _FORMULA_CHARS, _ROWS_PER_FETCH, _writer, chunked
from .models import Rating
from .users import User

PAIR_COLUMNS = (
    "prompt",
    "modality",
    "chosen_image_path",
    "chosen_image_uid",
    "rejected_image_path",
    "rejected_image_uid",
    "chosen_score",
    "rejected_score",
    "rater",
    "expert_level",
    "round",
    "round_id",
    "chosen_model_version",
    "rejected_model_version",
    "chosen_source",
    "rejected_source",
)
_FIELDS = (
    "round_id",
    "image__modality",
    "image__prompt",
    "rater_id",
    "id",
    "score",
    "image__file",
    "image__uid",
    "image__model_version__name",
    "image__source",
    "rater__username",
    "rater__rater_profile__expert_level",
    "round__name",
)
_GROUP = slice(0, 4)
_SCORE, _FILE, _UID, _VERSION, _SOURCE, _RATER, _LEVEL, _ROUND = range(5, 13)


def ratings_for_pairs(*, round_id: int | None = None) -> QuerySet[Rating]:
    """Live first ratings in the order pairs are built from."""
    qs = Rating.objects.filter(retracted_at=None, is_repeat=False)
    if round_id is not None:
        qs = qs.filter(round_id=round_id)
    return qs.order_by("round_id", "image__modality", "image__prompt", "rater_id", "id")


def _text(value: str | None) -> str:
    if not value:
        return ""
    return "'" + value if value[0] in _FORMULA_CHARS else value


def pairs_from_group(group: list[tuple[Any, ...]]) -> Iterator[tuple[Any, Any]]:
    """(chosen, rejected) rows of one physician's ratings of one prompt.

    Every two ratings with different scores give one pair, in id order; two
    ratings of the same image (which only repeats would give) make none. The
    rule is the engine's, which DPO fine-tunes build their pairs with.
    """
    return preference_pairs(
        group, score=lambda row: row[_SCORE], image=lambda row: row[_UID]
    )


def _grouped(rows: Iterator[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    group: list[tuple[Any, ...]] = []
    key: tuple[Any, ...] | None = None
    for row in rows:
        if row[_GROUP] != key:
            if len(group) > 1:
                yield group
            group, key = [], row[_GROUP]
        group.append(row)
    if len(group) > 1:
        yield group


def pair_rows(
    queryset: QuerySet[Rating], *, absolute_paths: bool = False
) -> Iterator[str]:
    """Yield the pairs CSV one record at a time, header first."""
    writer = _writer()
    yield writer.writerow(PAIR_COLUMNS)
    root = Path(settings.MEDIA_ROOT)

    def path(row: tuple[Any, ...]) -> str:
        name = row[_FILE]
        return _text(str(root / name) if absolute_paths else name)

    rows = queryset.values_list(*_FIELDS).iterator(chunk_size=_ROWS_PER_FETCH)
    for group in _grouped(rows):
        for chosen, rejected in pairs_from_group(group):
            yield writer.writerow(
                (
                    _text(chosen[2]),
                    _text(chosen[1]),
                    path(chosen),
                    chosen[_UID].hex,
                    path(rejected),
                    rejected[_UID].hex,
                    chosen[_SCORE],
                    rejected[_SCORE],
                    _text(chosen[_RATER]),
                    _text(chosen[_LEVEL]),
                    _text(chosen[_ROUND]),
                    chosen[0],
                    _text(chosen[_VERSION]),
                    _text(rejected[_VERSION]),
                    chosen[_SOURCE],
                    rejected[_SOURCE],
                )
            )


def pairs_export_start(
    *,
    actor: User,
    round_id: int | None,
    via: str,
    request: HttpRequest | Request | None = None,
) -> Iterator[str]:
    """Audit a pairs export and return its CSV stream in large chunks."""
    audit_record(
        action="export_pairs",
        actor=actor,
        detail={"round": round_id, "via": via},
        request=request,
    )
    return chunked(pair_rows(ratings_for_pairs(round_id=round_id)))
