"""Dataset import over the API: an upload or a server path becomes a queued job."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotations.models import Role
from models_ml.models import Job, JobKind, JobStatus
from tests.factories import DatasetFactory, png_bytes

pytestmark = pytest.mark.django_db


def _zip_upload(name: str = "upload.zip") -> SimpleUploadedFile:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("data.csv", "path,Text\nimg/a.png,CT: axial slice\n")
        zf.writestr("img/a.png", png_bytes())
    return SimpleUploadedFile(name, buf.getvalue(), content_type="application/zip")


@pytest.fixture
def staging(settings, tmp_path):
    settings.UPLOAD_STAGING_DIR = tmp_path / "staging"
    settings.IMPORT_ROOTS = [tmp_path / "imports"]
    (tmp_path / "imports").mkdir()
    return tmp_path


def test_uploaded_zip_is_staged_and_queued_as_an_import_job(client_as, staging):
    client = client_as(Role.ADMIN)
    response = client.post(
        "/api/datasets/import/",
        {"name": "chest", "file": _zip_upload(), "modality": "CT"},
        format="multipart",
    )
    assert response.status_code == 202, response.content
    body = response.json()
    job = Job.objects.get(pk=body["job"])
    assert body["url"] == f"/api/jobs/{job.pk}/"
    assert job.kind == JobKind.IMPORT and job.status == JobStatus.QUEUED
    assert job.created_by == client.user
    assert job.params["name"] == "chest"
    staged = staging / "staging"
    assert job.params["source"].startswith(str(staged.resolve()))
    assert any(p.name == "data.csv" for p in staged.rglob("*"))


def test_server_path_under_import_roots_is_queued(client_as, staging):
    csv_path = staging / "imports" / "data.csv"
    csv_path.write_text("path,Text\n")
    response = client_as(Role.ADMIN).post(
        "/api/datasets/import/",
        {"name": "from disk", "path": str(csv_path), "on_error": "skip"},
        format="json",
    )
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["job"])
    assert job.params["on_error"] == "skip"


def test_server_path_outside_import_roots_is_refused(client_as, staging):
    response = client_as(Role.ADMIN).post(
        "/api/datasets/import/", {"name": "x", "path": "/etc"}, format="json"
    )
    assert response.status_code == 400
    assert "imports may only read from" in response.json()["detail"]
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    "extra", [{}, {"path": "/x", "file": "upload"}], ids=["neither", "both"]
)
def test_exactly_one_of_file_and_path_is_required(client_as, staging, extra):
    body = {"name": "x", **extra}
    if "file" in body:
        body["file"] = _zip_upload()
    response = client_as(Role.ADMIN).post(
        "/api/datasets/import/", body, format="multipart"
    )
    assert response.status_code == 400
    assert "either a file or a path" in str(response.json())


def test_a_refused_upload_leaves_no_staged_files(client_as, staging):
    DatasetFactory(name="taken")
    response = client_as(Role.ADMIN).post(
        "/api/datasets/import/",
        {"name": "taken", "file": _zip_upload()},
        format="multipart",
    )
    assert response.status_code == 400
    assert "already exists" in response.json()["detail"]
    assert list((staging / "staging").iterdir()) == []


def test_a_csv_upload_is_refused_with_the_reason(client_as, staging):
    upload = SimpleUploadedFile("data.csv", b"path,Text\n", content_type="text/csv")
    response = client_as(Role.ADMIN).post(
        "/api/datasets/import/", {"name": "x", "file": upload}, format="multipart"
    )
    assert response.status_code == 400
    assert "upload a .zip" in response.json()["detail"]


def test_datasets_list_and_detail_show_counts_and_report(client_as, make_round):
    dataset = make_round(1).items.first().image.dataset
    dataset.import_report = {"imported": 1}
    dataset.save()
    client = client_as(Role.RESEARCHER)
    listed = client.get("/api/datasets/").json()
    assert listed["count"] == 1 and listed["results"][0]["image_count"] == 1
    assert "import_report" not in listed["results"][0]
    detail = client.get(f"/api/datasets/{dataset.pk}/").json()
    assert detail["import_report"] == {"imported": 1}
