import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotations.errors import DomainError, ImportFailed
from annotations.services.imports import dataset_import, dataset_import_start


class Command(BaseCommand):
    help = (
        "Import a dataset: a CSV (path,Text[,modality]; paths relative to the CSV) "
        "or a folder of label_xxx.png images. By default the import runs here and "
        "now; --queue hands it to the worker as a job."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", type=Path, help="CSV file or folder")
        parser.add_argument("--name", required=True, help="dataset name (unique)")
        parser.add_argument("--modality", help="modality for rows that name none")
        parser.add_argument(
            "--on-error",
            choices=("reject", "skip"),
            default="reject",
            help="reject: import nothing if any row is bad; skip: leave bad rows out",
        )
        parser.add_argument("--nifti-axis", type=int, default=2, choices=(0, 1, 2))
        parser.add_argument("--description", default="")
        parser.add_argument("--queue", action="store_true", help="run as a worker job")

    def handle(self, *args: Any, **o: Any) -> None:
        common = dict(
            name=o["name"],
            on_error=o["on_error"],
            modality=o["modality"],
            nifti_axis=o["nifti_axis"],
            description=o["description"],
        )
        try:
            if o["queue"]:
                job = dataset_import_start(
                    source=o["source"], created_by=None, check_roots=False, **common
                )
                self.stdout.write(f"queued import job {job.pk}")
                return
            if not o["source"].exists():
                raise CommandError(f"{o['source']}: no such file or folder")
            dataset, report = dataset_import(source=o["source"], **common)
        except ImportFailed as exc:
            errors = exc.report.get("errors", [])
            assert isinstance(errors, list)  # ImportReport.as_dict()'s list
            for err in errors:
                self.stderr.write(f"line {err['line']}: {err['message']}")
            raise CommandError(str(exc)) from exc
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"imported dataset {dataset.name!r}: {report.images} images "
            f"({json.dumps(report.modalities)}), {report.quarantined} quarantined, "
            f"{len(report.errors)} rows reported"
        )
        for err in report.errors:
            self.stderr.write(f"line {err['line']}: {err['message']}")
