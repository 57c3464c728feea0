"""The three downloads (ratings CSV, preference pairs, dataset zip): how each
starts and how it is named, shared by the export page and the API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone
from rest_framework.request import Request

from .export_dataset import dataset_export_start
from .export_pairs import pairs_export_start
from .exports import ratings_export_start
from .users import User


@dataclass(frozen=True)
class ExportKind:
    stem: str
    ext: str
    content_type: str
    start: Callable[..., Iterator[Any]]


RATINGS = ExportKind("ratings", "csv", "text/csv; charset=utf-8", ratings_export_start)
PAIRS = ExportKind("pairs", "csv", "text/csv; charset=utf-8", pairs_export_start)
DATASET = ExportKind("dataset", "zip", "application/zip", dataset_export_start)


def export_response(
    kind: ExportKind,
    *,
    actor: User,
    round_id: int | None,
    via: str,
    request: HttpRequest | Request,
) -> StreamingHttpResponse:
    """Start ``kind`` (audited by its service) and stream it as a download
    named as every path names it:
    ``medrlhf-<stem>-<round-N|all>-<YYYYmmdd-HHMMSS>.<ext>``."""
    body = kind.start(actor=actor, round_id=round_id, via=via, request=request)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    scope = f"round-{round_id}" if round_id is not None else "all"
    response = StreamingHttpResponse(body, content_type=kind.content_type)
    response["Content-Disposition"] = (
        f'attachment; filename="medrlhf-{kind.stem}-{scope}-{stamp}.{kind.ext}"'
    )
    response["Cache-Control"] = "no-store"
    return response
