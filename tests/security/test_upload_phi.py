"""Attack: read an admin's uploaded originals (DICOM with PHI) left on disk.

An uploaded archive is unpacked for the import job. Only the server's user
may read the unpacked originals, and they are deleted however the job ends:
what stays is the de-identified images the import stored.
"""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pydicom
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from pydicom.data import get_testdata_file

from annotations.models import Dataset, Role
from annotations.services.uploads import upload_discard, upload_stage
from models_ml.models import Job, JobStatus
from models_ml.services.jobs import job_cancel
from models_ml.tasks import run_import

pytestmark = pytest.mark.django_db

PLANTED = b"Zebedee^Plantedname"


def _dicom_bytes() -> bytes:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = PLANTED.decode()
    ds.PatientID = "PID-4242-PLANTED"
    ds.InstitutionName = "Planted General Hospital"
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def _archive(csv: str) -> SimpleUploadedFile:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("study/data.csv", csv)
        zf.writestr("study/scans/a.dcm", _dicom_bytes())
    return SimpleUploadedFile("study.zip", buf.getvalue())


@pytest.fixture
def staging(settings, tmp_path, monkeypatch) -> Path:
    settings.UPLOAD_STAGING_DIR = tmp_path / "var" / "imports" / "uploads"
    settings.IMPORT_ROOTS = [tmp_path / "imports"]
    settings.MEDIA_ROOT = tmp_path / "media"
    (tmp_path / "imports").mkdir()
    monkeypatch.setattr("models_ml.services.jobs.job_enqueue", lambda *, job: None)
    return settings.UPLOAD_STAGING_DIR


def _files_holding_phi(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and PLANTED in p.read_bytes()]


def _upload(client_as, staging, csv: str) -> Job:
    response = client_as(Role.ADMIN).post(
        "/api/datasets/import/",
        {"name": "study", "file": _archive(csv)},
        format="multipart",
    )
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["job"])
    # Queued: the originals wait for the worker, readable by no one else.
    assert _files_holding_phi(staging)
    for path in staging.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    return job


def test_uploaded_originals_are_deleted_once_the_import_succeeds(
    client_as, staging, settings
):
    job = _upload(client_as, staging, "path,Text,modality\nscans/a.dcm,CT: chest,CT\n")
    run_import(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert Dataset.objects.get(name="study").images.count() == 1
    assert list(staging.iterdir()) == []
    assert _files_holding_phi(Path(settings.MEDIA_ROOT)) == []


def test_uploaded_originals_are_deleted_when_the_import_fails(client_as, staging):
    job = _upload(client_as, staging, "path,Text\nscans/missing.dcm,CT: chest\n")
    run_import(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert list(staging.iterdir()) == []


def test_uploaded_originals_are_deleted_when_the_queued_import_is_cancelled(
    client_as, staging, admin_user, django_capture_on_commit_callbacks
):
    job = _upload(client_as, staging, "path,Text\nscans/a.dcm,CT: chest\n")
    with django_capture_on_commit_callbacks(execute=True):
        job_cancel(job=job, actor=admin_user)
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert list(staging.iterdir()) == []


def test_discarding_never_touches_a_server_folder(settings, tmp_path, staging):
    server = tmp_path / "imports" / "set"
    server.mkdir()
    (server / "data.csv").write_text("path,Text\n")
    upload_discard(server)
    upload_discard(staging)  # the staging root itself is not an upload
    assert (server / "data.csv").exists()


def test_a_refused_archive_leaves_nothing_behind(staging, admin_user):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.dcm", _dicom_bytes())
        zf.writestr("../escape.csv", "x")
    with pytest.raises(Exception, match="outside the archive"):
        upload_stage(
            uploaded_file=SimpleUploadedFile("x.zip", buf.getvalue()),
            created_by=admin_user,
        )
    assert list(staging.iterdir()) == []
