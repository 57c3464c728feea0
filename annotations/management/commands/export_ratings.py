import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotations.audit import audit_record
from annotations.export_dataset import (
    dataset_scope,
    dataset_zip_stream,
    ratings_for_dataset,
)
from annotations.export_pairs import pair_rows, ratings_for_pairs
from annotations.exports import export_rows, ratings_for_export
from annotations.models import Round

FORMATS = ("csv", "pairs", "dataset")


class Command(BaseCommand):
    help = (
        "Write ratings as CSV (image_path,rating,modality,expert_level,prompt,...), "
        "preference pairs as CSV (--format pairs) or the rated images as a "
        "dataset zip for datasets.load_dataset('imagefolder') (--format dataset)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--round", type=int, help="only this round id")
        parser.add_argument(
            "--format",
            choices=FORMATS,
            default="csv",
            help="csv: one row per rating (default); pairs: preference pairs; "
            "dataset: zip of images + metadata.jsonl (needs --output)",
        )
        parser.add_argument("--output", "-o", type=Path, help="file (default: stdout)")
        parser.add_argument(
            "--absolute-paths",
            action="store_true",
            help="image paths as absolute file paths (for the engine's train-reward)",
        )

    def handle(self, *args: Any, **o: Any) -> None:
        fmt, round_id = o["format"], o["round"]
        if round_id is not None and not Round.objects.filter(pk=round_id).exists():
            raise CommandError(f"--round {round_id}: no such round")
        if fmt == "dataset":
            if o["output"] is None:
                raise CommandError("--format dataset writes a zip: give --output FILE")
            with open(o["output"], "wb") as zip_out:
                for piece in dataset_zip_stream(
                    ratings_for_dataset(round_id=round_id),
                    scope=dataset_scope(round_id),
                ):
                    zip_out.write(piece)
            self._audit(fmt, round_id, rows=None)
            self.stderr.write(f"dataset zip written to {o['output']}")
            return
        if fmt == "pairs":
            rows = pair_rows(
                ratings_for_pairs(round_id=round_id),
                absolute_paths=o["absolute_paths"],
            )
            what = "pairs"
        else:
            rows = export_rows(
                ratings_for_export(round_id=round_id),
                absolute_paths=o["absolute_paths"],
            )
            what = "ratings"
        out = open(o["output"], "w", newline="") if o["output"] else sys.stdout
        n = -1  # the header is not a row
        try:
            for line in rows:
                out.write(line)
                n += 1
        finally:
            if o["output"]:
                out.close()
        self._audit(fmt, round_id, rows=n)
        self.stderr.write(f"{n} {what} exported")

    def _audit(self, fmt: str, round_id: int | None, *, rows: int | None) -> None:
        action = {"csv": "export_ratings", "pairs": "export_pairs"}.get(
            fmt, "export_dataset"
        )
        detail: dict[str, Any] = {"round": round_id, "via": "manage.py"}
        if rows is not None:
            detail["rows"] = rows
        audit_record(action=action, actor_name="manage.py", detail=detail)
