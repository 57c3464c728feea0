import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from annotations.audit import audit_record
from annotations.exports import export_rows, ratings_for_export


class Command(BaseCommand):
    help = "Write ratings as CSV (image_path,rating,modality,expert_level,prompt,...)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--round", type=int, help="only this round id")
        parser.add_argument("--output", "-o", type=Path, help="file (default: stdout)")
        parser.add_argument(
            "--absolute-paths",
            action="store_true",
            help="image_path as an absolute file path (for the engine's train-reward)",
        )

    def handle(self, *args: Any, **o: Any) -> None:
        rows = export_rows(
            ratings_for_export(round_id=o["round"]), absolute_paths=o["absolute_paths"]
        )
        out = open(o["output"], "w", newline="") if o["output"] else sys.stdout
        n = -1
        try:
            for n, line in enumerate(rows):
                out.write(line)
        finally:
            if o["output"]:
                out.close()
        audit_record(
            action="export_ratings",
            actor_name="manage.py",
            detail={"round": o["round"], "rows": n},
        )
        self.stderr.write(f"{n} ratings exported")
