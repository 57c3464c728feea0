"""Attack: a symbolic link named like a CSV, in a server-side import folder,
pointing at a file outside the import roots, whose first line would show up
in the import's report."""

from __future__ import annotations

import json

import pytest

from annotations.models import Dataset, Role
from models_ml.models import Job, JobStatus
from models_ml.tasks import run_import

pytestmark = pytest.mark.django_db

SECRET = "root-password-hash-PLANTED"


@pytest.fixture
def folder(settings, tmp_path, monkeypatch):
    settings.IMPORT_ROOTS = [tmp_path / "imports"]
    settings.UPLOAD_STAGING_DIR = tmp_path / "staging"
    settings.MEDIA_ROOT = tmp_path / "media"
    outside = tmp_path / "outside" / "shadow"
    outside.parent.mkdir()
    outside.write_text(f"{SECRET},x\nmore,lines\n")
    folder = tmp_path / "imports" / "set"
    folder.mkdir(parents=True)
    (folder / "data.csv").symlink_to(outside)
    monkeypatch.setattr("models_ml.services.jobs.job_enqueue", lambda *, job: None)
    return folder


def test_symlinked_csv_in_an_import_folder_is_refused_unread(client_as, folder):
    response = client_as(Role.ADMIN).post(
        "/api/datasets/import/", {"name": "set", "path": str(folder)}, format="json"
    )
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["job"])
    run_import(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "data.csv is a symbolic link" in job.error
    assert SECRET not in job.error + json.dumps(job.result)
    assert not Dataset.objects.exists()
