"""Dataset import: one code path for the command, the upload page and the API.

The import runs as a job.  It first reads the manifest (CSV or label folder),
then decodes one file at a time, so memory stays bounded.  Either the whole
dataset lands in one transaction, or nothing does and every file written is
removed; with ``on_error="skip"`` bad rows are left out and reported instead.
"""

from __future__ import annotations

import hashlib
import hmac
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from models_ml.engine.readers import (
    ReaderError,
    ReadLimits,
    UidMap,
    encode_png,
    encode_preview_png,
    normalize_modality,
    parse_manifest,
    read_image_file,
    scan_label_folder,
)
from models_ml.models import Job, JobKind

from ..audit import audit_record
from ..errors import DomainError, ImportFailed
from ..models import Dataset, Image, ImageSource
from ..signals import job_requested
from ..users import User
from .uploads import upload_stage

ON_ERROR_CHOICES = ("reject", "skip")
BATCH = 200


@dataclass
class ImportReport:
    source: str
    rows: int = 0
    images: int = 0
    duplicates: int = 0
    quarantined: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    modalities: dict[str, int] = field(default_factory=dict)

    def error(
        self, line: int | None, message: str, field_name: str | None = None
    ) -> None:
        self.errors.append({"line": line, "field": field_name, "message": message})

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows": self.rows,
            "images": self.images,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "errors": self.errors[:1000],
            "error_count": len(self.errors),
            "modalities": self.modalities,
        }


def import_source_check(source: Path) -> Path:
    """The source must be a CSV or folder inside an allowed import root."""
    resolved = Path(source).resolve()
    roots = [Path(r).resolve() for r in settings.IMPORT_ROOTS] + [
        Path(settings.UPLOAD_STAGING_DIR).resolve()
    ]
    if not any(resolved == r or r in resolved.parents for r in roots):
        raise DomainError(
            f"{source}: imports may only read from {', '.join(str(r) for r in roots)} "
            "(set IMPORT_ROOTS)"
        )
    if not resolved.exists():
        raise DomainError(f"{source}: no such file or folder")
    if resolved.is_file() and resolved.suffix.lower() != ".csv":
        raise DomainError(f"{source}: give a .csv file or a folder")
    return resolved


def dataset_import_start(
    *,
    name: str,
    source: Path | None = None,
    upload: Any = None,
    created_by: User | None,
    on_error: str = "reject",
    modality: str | None = None,
    nifti_axis: int = 2,
    description: str = "",
    check_roots: bool = True,
) -> Job:
    """Validate the request and queue an import job.

    Give either ``source`` (a CSV or folder on the server) or ``upload`` (an
    uploaded .zip); a refused request leaves nothing of its upload behind.
    """
    if (source is None) == (upload is None):
        raise DomainError("give either a server path or an uploaded .zip")
    if upload is not None:
        staged = upload_stage(uploaded_file=upload, created_by=created_by)
        try:
            return dataset_import_start(
                name=name,
                source=staged,
                created_by=created_by,
                on_error=on_error,
                modality=modality,
                nifti_axis=nifti_axis,
                description=description,
            )
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
    assert source is not None  # given when upload is not: checked above
    name = name.strip()
    if not name:
        raise DomainError("the dataset needs a name")
    if Dataset.objects.filter(name=name).exists():
        raise DomainError(f"a dataset named {name!r} already exists")
    if on_error not in ON_ERROR_CHOICES:
        raise DomainError(f"on_error must be one of {ON_ERROR_CHOICES}")
    if nifti_axis not in (0, 1, 2):
        raise DomainError("nifti_axis must be 0, 1 or 2")
    if modality:
        modality = normalize_modality(modality)
    resolved = import_source_check(source) if check_roots else Path(source).resolve()
    # The job is one of the loop's rows, but queuing it is the loop's
    # business: announce it (``models_ml`` queues it once this commits).
    job = Job.objects.create(
        kind=JobKind.IMPORT,
        created_by=created_by
        if getattr(created_by, "is_authenticated", False)
        else None,
        max_attempts=1,
        params={
            "name": name,
            "source": str(resolved),
            "on_error": on_error,
            "modality": modality,
            "nifti_axis": nifti_axis,
            "description": description,
        },
    )
    audit_record(
        action="job_create", actor=created_by, obj=job, detail={"kind": JobKind.IMPORT}
    )
    job_requested.send(sender=Job, job=job)
    return job


def _manifest_for(source: Path, *, modality: str | None, limits: ReadLimits) -> Any:
    if source.is_file():
        return parse_manifest(source, limits=limits)
    entries = [
        p
        for p in source.iterdir()
        if not p.name.startswith(".") and p.name != "__MACOSX"
    ]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        # A zipped folder unpacks to one folder holding everything: step in.
        return _manifest_for(entries[0], modality=modality, limits=limits)
    csvs = sorted(p for p in source.iterdir() if p.suffix.lower() == ".csv")
    linked = [p.name for p in csvs if p.is_symlink()]
    if linked:
        # A link could point anywhere on the server, outside the import roots.
        raise DomainError(
            f"{source}: {', '.join(linked)} is a symbolic link; "
            "copy the CSV into the folder instead"
        )
    csvs = [p for p in csvs if p.is_file()]
    if len(csvs) == 1:
        return parse_manifest(csvs[0], limits=limits)
    if len(csvs) > 1:
        raise DomainError(
            f"{source}: holds {len(csvs)} CSV files; point the import at one of them"
        )
    return scan_label_folder(source, modality=modality)


def dataset_import(
    *,
    name: str,
    source: Path,
    created_by: User | None = None,
    on_error: str = "reject",
    modality: str | None = None,
    nifti_axis: int = 2,
    description: str = "",
    progress: Callable[[float, str], None] | None = None,
    limits: ReadLimits | None = None,
) -> tuple[Dataset, ImportReport]:
    """Import a dataset now (the job body).  Raises ImportFailed with the report."""
    limits = limits or ReadLimits()
    source = Path(source)
    report = ImportReport(source=str(source))
    try:
        manifest = _manifest_for(source, modality=modality, limits=limits)
    except ReaderError as exc:
        report.error(None, str(exc))
        raise ImportFailed(str(exc), report.as_dict()) from exc
    for err in manifest.errors:
        report.error(err.line, err.message, err.field)
    report.rows = len(manifest.rows) + len(manifest.errors)
    written: list[str] = []
    try:
        with transaction.atomic():
            dataset = Dataset.objects.create(
                name=name,
                description=description,
                root=str(source),
                created_by=created_by
                if getattr(created_by, "is_authenticated", False)
                else None,
            )
            _import_rows(
                dataset,
                manifest.rows,
                report,
                written,
                modality=modality,
                nifti_axis=nifti_axis,
                limits=limits,
                progress=progress,
            )
            if report.errors and on_error == "reject":
                raise ImportFailed(
                    f"{len(report.errors)} problems in {source.name}; nothing imported",
                    report.as_dict(),
                )
            if report.images == 0:
                raise ImportFailed(
                    f"{source.name}: no image could be imported", report.as_dict()
                )
            dataset.modalities = sorted(report.modalities)
            dataset.import_report = report.as_dict()
            dataset.save(update_fields=["modalities", "import_report", "updated_at"])
            audit_record(
                action="dataset_import",
                actor=created_by,
                obj=dataset,
                detail={"images": report.images, "errors": len(report.errors)},
            )
    except BaseException:
        for stored in written:
            default_storage.delete(stored)
        raise
    return dataset, report


def _import_rows(
    dataset: Dataset,
    rows: list[Any],
    report: ImportReport,
    written: list[str],
    *,
    modality: str | None,
    nifti_axis: int,
    limits: ReadLimits,
    progress: Callable[[float, str], None] | None,
) -> None:
    # Keyed by the installation's secret: the same study gets the same new UIDs
    # on every import here, and different ones elsewhere.
    uid_map = UidMap(
        salt=hmac.new(
            settings.SECRET_KEY.encode(), b"dicom-uids", hashlib.sha256
        ).digest()
    )
    seen: dict[str, int] = {}
    pending: list[Image] = []
    for index, row in enumerate(rows):
        if progress and index % 10 == 0:
            progress(index / max(len(rows), 1), f"row {index + 1} of {len(rows)}")
        try:
            decoded = read_image_file(
                row.path, limits=limits, nifti_axis=nifti_axis, uid_map=uid_map
            )
        except ReaderError as exc:
            report.error(row.line, str(exc), "path")
            continue
        for img in decoded:
            mod = row.modality or modality or img.modality_hint
            if not mod:
                report.error(
                    row.line,
                    "no modality: add a modality column or choose one "
                    "for the whole import",
                    "modality",
                )
                break
            mod = normalize_modality(mod)
            full = encode_png(img)
            digest = hashlib.sha256(full).hexdigest()
            if digest in seen:
                report.duplicates += 1
                report.error(
                    row.line,
                    f"{row.path.name}: same image as line {seen[digest]}; skipped",
                    "path",
                )
                continue
            seen[digest] = row.line
            pending.append(_image_stored(dataset, row, img, mod, full, digest, written))
            report.images += 1
            report.quarantined += int(bool(img.quarantine_reason))
            report.modalities[mod] = report.modalities.get(mod, 0) + 1
        if len(pending) >= BATCH:
            Image.objects.bulk_create(pending)
            pending.clear()
    if pending:
        Image.objects.bulk_create(pending)


def _image_stored(
    dataset: Dataset,
    row: Any,
    img: Any,
    modality: str,
    full: bytes,
    digest: str,
    written: list[str],
) -> Image:
    """An imported image's row, not saved yet, with its PNG and preview
    written to storage (their names added to ``written``, so a failed
    import removes them)."""
    image = Image(
        dataset=dataset,
        sha256=digest,
        width=img.width,
        height=img.height,
        bit_depth=img.bit_depth,
        channels=3 if img.is_rgb else 1,
        window_center=img.window_center,
        window_width=img.window_width,
        modality=modality,
        prompt=row.text,
        source=ImageSource.REAL,
        source_path=_relative(row.path, dataset.root),
        source_format=img.source_format,
        frame_index=img.frame_index,
        header=img.metadata,
        quarantined=bool(img.quarantine_reason),
        quarantine_reason=img.quarantine_reason[:200],
    )
    image.file.save("image.png", ContentFile(full), save=False)
    written.append(image.file.name)
    image.preview.save("preview.png", ContentFile(encode_preview_png(img)), save=False)
    written.append(image.preview.name)
    return image


def _relative(path: Path, root: str) -> str:
    base = Path(root)
    base = base.parent if base.is_file() else base
    try:
        return str(Path(path).relative_to(base))[:1000]
    except ValueError:
        return Path(path).name[:1000]
