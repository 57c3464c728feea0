"""Attack: archives whose entries collide, to crash the upload (500).

Each is refused with a message naming the entry, and leaves nothing staged.
"""

from __future__ import annotations

import io
import warnings
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotations.models import Role
from annotations.services.uploads import UploadRejected, upload_stage
from models_ml.models import Job

pytestmark = pytest.mark.django_db


def _zip(entries: list[tuple[str, bytes]]) -> SimpleUploadedFile:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns on duplicate names
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in entries:
                zf.writestr(name, data)
    return SimpleUploadedFile("set.zip", buf.getvalue())


@pytest.fixture
def staging(settings, tmp_path):
    settings.UPLOAD_STAGING_DIR = tmp_path / "staging"
    settings.IMPORT_ROOTS = [tmp_path / "imports"]
    return settings.UPLOAD_STAGING_DIR


@pytest.mark.parametrize(
    "entries, message",
    [
        (
            [("data.csv", b"path,Text\n"), ("data.csv", b"path,Text\nx.png,CT: a\n")],
            "'data.csv' appears more than once",
        ),
        ([("a", b"file"), ("a/b.png", b"x")], "'a/b.png' clashes"),
        ([("a/b.png", b"x"), ("a", b"file")], "'a' clashes"),
        ([("a/b.png", b"x"), ("./a/b.png", b"y")], "appears more than once"),
    ],
    ids=["same-name", "file-then-folder", "folder-then-file", "same-path"],
)
def test_colliding_entries_are_refused_naming_the_entry(
    staging, admin_user, entries, message
):
    with pytest.raises(UploadRejected, match=message):
        upload_stage(uploaded_file=_zip(entries), created_by=admin_user)
    assert list(staging.iterdir()) == []


def test_duplicate_entry_over_the_api_is_a_400(client_as, staging):
    client = client_as(Role.ADMIN)
    client.raise_request_exception = False
    archive = _zip([("data.csv", b"path,Text\n"), ("data.csv", b"path,Text\n")])
    response = client.post(
        "/api/datasets/import/", {"name": "dup", "file": archive}, format="multipart"
    )
    assert response.status_code == 400
    assert "appears more than once" in response.json()["detail"]
    assert not Job.objects.exists()
