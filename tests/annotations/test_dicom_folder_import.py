"""Every pydicom test file through the real import: imported or clearly refused,
and a planted patient name survives nowhere we store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest
from django.db import connection

from annotations.models import AuditEvent, Dataset, Image
from annotations.services.imports import dataset_import
from tests.dicom_files import local_dicom_test_files

pytestmark = pytest.mark.django_db

PLANTED = "Quillfeather^Planted"


def _stage(folder: Path) -> tuple[Path, int]:
    """Copy every DICOM test file, planting a patient name where it can be written."""
    rows, planted = ["path,Text,modality"], 0
    for i, src in enumerate(local_dicom_test_files(max_bytes=2_000_000)):
        dest = folder / f"{i:03d}_{Path(src).name}"
        try:
            ds = pydicom.dcmread(src)
            ds.PatientName = PLANTED
            ds.save_as(dest)
            planted += 1
        except Exception:
            shutil.copy(src, dest)
        rows.append(f"{dest.name},CT: test file {i},CT")
    (folder / "data.csv").write_text("\n".join(rows) + "\n")
    return folder / "data.csv", planted


def test_every_dicom_test_file_is_imported_or_refused_with_its_name(tmp_path, settings):
    csv_path, planted = _stage(tmp_path)
    n_rows = len(csv_path.read_text().splitlines()) - 1
    assert planted > 100
    dataset, report = dataset_import(name="dicom zoo", source=csv_path, on_error="skip")
    refused = {e["line"] for e in report.errors if "same image" not in e["message"]}
    reported = {e["line"] for e in report.errors}
    imported_rows = {
        int(Path(p).name.split("_", 1)[0]) + 2
        for p in Image.objects.values_list("source_path", flat=True)
    }
    assert imported_rows.isdisjoint(refused)
    # Every row ends up either imported or reported, never silently lost.
    assert imported_rows | reported == set(range(2, n_rows + 2))
    lines = csv_path.read_text().splitlines()
    for err in report.errors:
        name = lines[err["line"] - 1].split(",")[0]
        assert name in err["message"], err
    assert report.images > 100

    # Nothing we store contains the planted name: database text and media files.
    with connection.cursor() as cur:
        for model in (Image, Dataset, AuditEvent):
            table = model._meta.db_table
            cur.execute(f"SELECT * FROM {table}")  # noqa: S608
            assert "Quillfeather" not in repr(cur.fetchall())
    for f in Path(settings.MEDIA_ROOT).rglob("*"):
        if f.is_file():
            assert b"Quillfeather" not in f.read_bytes()
