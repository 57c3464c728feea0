"""Admin dataset pages: upload a zip or name a server folder, then follow the job."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotations.models import Dataset
from models_ml.models import Job, JobKind, JobStatus
from models_ml.tasks import run_import
from tests.factories import png_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _roots(settings, tmp_path):
    settings.IMPORT_ROOTS = [tmp_path / "imports"]
    settings.UPLOAD_STAGING_DIR = tmp_path / "imports" / "uploads"
    settings.IMPORT_ROOTS[0].mkdir()


@pytest.fixture
def enqueued(monkeypatch):
    """Jobs that would have gone to the broker."""
    sent: list[int] = []
    monkeypatch.setattr(
        "models_ml.services.jobs.job_enqueue", lambda *, job: sent.append(job.pk)
    )
    return sent


def _zip(rows: str, files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("manifest.csv", rows)
        for name, content in files.items():
            zf.writestr(name, content)
    return buf.getvalue()


def _upload(client, content: bytes, name: str = "chest", filename: str = "set.zip"):
    data = {
        "upload-name": name,
        "upload-on_error": "skip",
        "upload-nifti_axis": "2",
        "upload-modality": "CT",
        "upload-file": SimpleUploadedFile(filename, content),
    }
    return client.post(reverse("datasets-upload"), data)


def test_upload_queues_an_import_and_the_job_page_shows_its_report(
    client, admin_user, enqueued
):
    content = _zip(
        "path,Text\na.png,CT: normal\nmissing.png,CT: gone\n",
        {"a.png": png_bytes(64)},
    )
    client.force_login(admin_user)
    response = _upload(client, content)
    job = Job.objects.get(kind=JobKind.IMPORT)
    assert response.status_code == 302
    assert response.url == reverse("job", args=[job.pk])
    assert enqueued == [job.pk]

    run_import(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.result
    assert Dataset.objects.get(name="chest").images.count() == 1
    html = client.get(reverse("job", args=[job.pk])).content.decode()
    assert "Import report" in html
    assert "missing.png" in html


def test_upload_that_is_not_a_zip_is_refused_with_a_message(
    client, admin_user, enqueued
):
    client.force_login(admin_user)
    response = _upload(client, b"not a zip", filename="notes.txt")
    assert response.status_code == 400
    assert "upload a .zip" in response.content.decode()
    assert not Job.objects.exists() and enqueued == []


def test_folder_outside_the_import_roots_is_refused(
    client, admin_user, enqueued, tmp_path
):
    client.force_login(admin_user)
    data = {
        "folder-name": "etc",
        "folder-path": "/etc",
        "folder-on_error": "reject",
        "folder-nifti_axis": "2",
    }
    response = client.post(reverse("datasets-import-folder"), data)
    assert response.status_code == 400
    assert "imports may only read from" in response.content.decode()
    assert not Job.objects.exists()


def test_folder_inside_the_import_roots_queues_a_job(
    client, admin_user, enqueued, settings
):
    folder = settings.IMPORT_ROOTS[0] / "labels"
    folder.mkdir()
    (folder / "label_1.png").write_bytes(png_bytes())
    client.force_login(admin_user)
    data = {
        "folder-name": "labels",
        "folder-path": str(folder),
        "folder-on_error": "reject",
        "folder-nifti_axis": "2",
        "folder-modality": "pathology",
    }
    response = client.post(reverse("datasets-import-folder"), data)
    job = Job.objects.get()
    assert response.status_code == 302
    assert job.params["source"] == str(folder.resolve())
    assert enqueued == [job.pk]


def test_datasets_page_lists_datasets_and_both_forms(client, admin_user):
    Dataset.objects.create(name="fundus set", root="/x", modalities=["fundus"])
    client.force_login(admin_user)
    html = client.get(reverse("datasets")).content.decode()
    assert "fundus set" in html
    assert 'enctype="multipart/form-data"' in html
    assert 'name="folder-path"' in html
