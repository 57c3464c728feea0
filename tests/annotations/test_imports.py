"""Dataset import through the service, as the command, page and API all use it."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage
from pydicom.data import get_testdata_file

from annotations.errors import DomainError, ImportFailed
from annotations.models import Dataset, Image
from annotations.services.imports import dataset_import, dataset_import_start
from annotations.services.uploads import UploadRejected, upload_stage

pytestmark = pytest.mark.django_db

PLANTED_NAME = "Zebedee^Plantedname"


def _png(path: Path, value: int, size: int = 24, mode: str = "L") -> Path:
    rng = np.random.default_rng(value)
    shape = (size, size) if mode == "L" else (size, size, 3)
    PILImage.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(path)
    return path


def _dicom_with_phi(path: Path, *, burned_in: bool = False) -> Path:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = PLANTED_NAME
    ds.PatientID = "PID-4242-PLANTED"
    ds.InstitutionName = "Planted General Hospital"
    ds.ReferringPhysicianName = "Doctor^Plantedref"
    ds.add_new((0x0011, 0x0010), "LO", "PLANTED PRIVATE")
    ds.add_new((0x0011, 0x1001), "LO", PLANTED_NAME)
    if burned_in:
        ds.BurnedInAnnotation = "YES"
    ds.save_as(path)
    return path


def _media_files(settings) -> list[Path]:
    return [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]


def test_csv_with_spaces_after_commas_imports_every_row(tmp_path):
    _png(tmp_path / "a.png", 1)
    _png(tmp_path / "b.png", 2, mode="RGB")
    (tmp_path / "data.csv").write_text(
        "path, Text, modality\n"
        "a.png, Chest X-ray: normal lungs, X-Ray\n"
        "b.png, Fundus: healthy retina, Fundus\n"
    )
    dataset, report = dataset_import(name="d", source=tmp_path / "data.csv")
    assert report.images == 2 and report.errors == []
    assert sorted(dataset.modalities) == ["chest_xray", "fundus"]
    fundus = Image.objects.get(modality="fundus")
    assert fundus.prompt == "Fundus: healthy retina"
    assert fundus.channels == 3 and fundus.source == "real"
    assert fundus.file.read()[:8] == b"\x89PNG\r\n\x1a\n"
    assert fundus.preview.name != fundus.file.name


def test_one_bad_row_rejects_whole_import_and_leaves_no_files(tmp_path, settings):
    _png(tmp_path / "a.png", 1)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "data.csv").write_text(
        "path,Text\na.png,CT: one\nbroken.png,CT: two\n../etc/passwd,CT: three\n"
    )
    with pytest.raises(ImportFailed) as failed:
        dataset_import(name="d", source=tmp_path / "data.csv", modality="CT")
    lines = {e["line"] for e in failed.value.report["errors"]}
    assert lines == {3, 4}
    assert not Dataset.objects.exists() and not Image.objects.exists()
    assert _media_files(settings) == []


def test_skip_mode_imports_good_rows_and_reports_bad_ones(tmp_path):
    _png(tmp_path / "a.png", 1)
    (tmp_path / "data.csv").write_text(
        "path,Text\na.png,CT: one\nmissing.png,CT: two\na.png,CT: one\n"
    )
    _, report = dataset_import(
        name="d", source=tmp_path / "data.csv", modality="CT", on_error="skip"
    )
    assert report.images == 1
    messages = " ".join(e["message"] for e in report.errors)
    assert "missing.png" in messages
    assert {e["line"] for e in report.errors} == {3, 4}


def test_same_pixels_twice_are_imported_once(tmp_path):
    _png(tmp_path / "a.png", 7)
    _png(tmp_path / "copy.png", 7)
    (tmp_path / "data.csv").write_text("path,Text\na.png,CT: a\ncopy.png,CT: b\n")
    _, report = dataset_import(
        name="d", source=tmp_path / "data.csv", modality="CT", on_error="skip"
    )
    assert report.images == 1 and report.duplicates == 1


def test_dicom_import_keeps_no_planted_identifier_anywhere(tmp_path, settings):
    _dicom_with_phi(tmp_path / "ct.dcm")
    (tmp_path / "data.csv").write_text("path,Text\nct.dcm,CT: axial slice\n")
    dataset_import(name="d", source=tmp_path / "data.csv")
    image = Image.objects.get()
    assert image.modality == "ct" and image.bit_depth == 16
    stored = repr(image.header) + image.source_path + image.prompt
    for secret in (
        "Plantedname",
        "PID-4242",
        "Planted General",
        "Plantedref",
        "PLANTED",
    ):
        assert secret not in stored
        for f in _media_files(settings):
            assert secret.encode() not in f.read_bytes()


def test_burned_in_annotation_is_quarantined_not_dropped(tmp_path):
    _dicom_with_phi(tmp_path / "ct.dcm", burned_in=True)
    (tmp_path / "data.csv").write_text("path,Text\nct.dcm,CT: axial slice\n")
    _, report = dataset_import(name="d", source=tmp_path / "data.csv")
    image = Image.objects.get()
    assert image.quarantined and "BurnedInAnnotation" in image.quarantine_reason
    assert report.quarantined == 1


def test_label_folder_uses_the_prefix_as_text(tmp_path):
    (tmp_path / "sub").mkdir()
    _png(tmp_path / "normal_001.png", 1)
    _png(tmp_path / "sub" / "pneumonia_002.png", 2)
    _, report = dataset_import(name="d", source=tmp_path, modality="Chest X-ray")
    assert report.images == 2
    assert set(Image.objects.values_list("prompt", flat=True)) == {
        "normal",
        "pneumonia",
    }


def test_start_refuses_paths_outside_import_roots(tmp_path, settings, admin_user):
    settings.IMPORT_ROOTS = [tmp_path / "allowed"]
    (tmp_path / "allowed").mkdir()
    (tmp_path / "elsewhere.csv").write_text("path,Text\n")
    with pytest.raises(DomainError, match="may only read from"):
        dataset_import_start(
            name="d", source=tmp_path / "elsewhere.csv", created_by=admin_user
        )


def test_start_refuses_a_duplicate_dataset_name(tmp_path, settings, admin_user):
    settings.IMPORT_ROOTS = [tmp_path]
    Dataset.objects.create(name="taken", root="/x")
    with pytest.raises(DomainError, match="already exists"):
        dataset_import_start(name="taken", source=tmp_path, created_by=admin_user)


def _zip(entries: dict[str, bytes]) -> SimpleUploadedFile:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return SimpleUploadedFile("upload.zip", buf.getvalue())


def test_zipped_folder_with_its_csv_inside_imports(settings, tmp_path, admin_user):
    settings.UPLOAD_STAGING_DIR = tmp_path / "staging"
    png = io.BytesIO()
    PILImage.new("L", (16, 16), 90).save(png, format="PNG")
    staged = upload_stage(
        uploaded_file=_zip(
            {
                "study/data.csv": b"path,Text,modality\nimg/a.png,CT: one,CT\n",
                "study/img/a.png": png.getvalue(),
                "__MACOSX/._study": b"",
            }
        ),
        created_by=admin_user,
    )
    _, report = dataset_import(name="zipped", source=staged)
    assert report.images == 1


def test_upload_zip_is_unpacked_into_staging(settings, tmp_path, admin_user):
    settings.UPLOAD_STAGING_DIR = tmp_path / "staging"
    staged = upload_stage(
        uploaded_file=_zip({"data.csv": b"path,Text\n", "img/a.png": b"x"}),
        created_by=admin_user,
    )
    assert (staged / "img" / "a.png").read_bytes() == b"x"


@pytest.mark.parametrize("entry", ["../escape.csv", "/abs.csv", "C:/win.csv"])
def test_upload_zip_with_escaping_entry_is_refused(
    settings, tmp_path, admin_user, entry
):
    settings.UPLOAD_STAGING_DIR = tmp_path / "staging"
    with pytest.raises(UploadRejected, match="outside the archive"):
        upload_stage(uploaded_file=_zip({entry: b"x"}), created_by=admin_user)
    assert list((tmp_path / "staging").iterdir()) == []


def test_zip_bomb_is_refused(settings, tmp_path, admin_user):
    settings.UPLOAD_STAGING_DIR = tmp_path / "staging"
    with pytest.raises(UploadRejected, match="zip bomb"):
        upload_stage(
            uploaded_file=_zip({"big.png": b"\0" * 50_000_000}), created_by=admin_user
        )
    assert list((tmp_path / "staging").iterdir()) == []


def test_non_zip_upload_is_refused_with_a_clear_message(admin_user):
    with pytest.raises(UploadRejected, match="upload a .zip"):
        upload_stage(
            uploaded_file=SimpleUploadedFile("data.csv", b"path,Text\n"),
            created_by=admin_user,
        )


def test_dicom_uids_are_remapped_consistently_and_patient_is_pseudonymous(tmp_path):
    first = _dicom_with_phi(tmp_path / "a.dcm")
    ds = pydicom.dcmread(first)
    original_study = str(ds.StudyInstanceUID)
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.PixelData = bytes(b ^ 0x01 for b in ds.PixelData)  # another slice
    ds.save_as(tmp_path / "b.dcm")
    (tmp_path / "data.csv").write_text("path,Text\na.dcm,CT: one\nb.dcm,CT: two\n")
    dataset_import(name="d", source=tmp_path / "data.csv")
    headers = [im.header for im in Image.objects.order_by("source_path")]
    studies = {h["StudyInstanceUID"] for h in headers}
    patients = {h["PatientID"] for h in headers}
    assert len(studies) == 1 and original_study not in studies
    assert next(iter(studies)).startswith("2.25.")
    assert len(patients) == 1 and "PID-4242" not in next(iter(patients))
