"""Attack: a researcher maps the server's file system from what the API
says about jobs and model versions (import folders, the models folder,
tracebacks). Admins, who run the server, still see the real paths."""

from __future__ import annotations

import json
import re

import pytest
from django.conf import settings

from annotations.models import Role
from models_ml.models import Job, JobKind, JobStatus, ModelKind, ModelVersion

pytestmark = pytest.mark.django_db

ABSOLUTE = re.compile(r"(?<![\w.<>])/(?:[\w.+-]+/)+")


@pytest.fixture
def job():
    staged = settings.UPLOAD_STAGING_DIR / "3f2a" / "data.csv"
    return Job.objects.create(
        kind=JobKind.IMPORT,
        status=JobStatus.FAILED,
        params={"name": "x", "source": str(staged)},
        error=(
            "Traceback (most recent call last):\n"
            f'  File "{settings.BASE_DIR}/annotations/services/imports.py", line 9\n'
            "OSError: cannot read /srv/hospital/share/secret.csv"
        ),
    )


@pytest.fixture
def version():
    return ModelVersion.objects.create(
        name="base",
        kind=ModelKind.DIFFUSION,
        path=str(settings.MODELS_DIR / "base-7"),
        params={"data": str(settings.VAR_DIR / "imports" / "oct" / "data.csv")},
    )


def _leaks(body: object) -> list[str]:
    return ABSOLUTE.findall(json.dumps(body))


def test_a_researcher_sees_no_server_path_in_jobs(client_as, job):
    client = client_as(Role.RESEARCHER)
    detail = client.get(f"/api/jobs/{job.pk}/").json()
    listing = client.get("/api/jobs/").json()
    assert _leaks(detail) == [] and _leaks(listing) == []
    assert detail["params"]["source"] == "<uploads>/3f2a/data.csv"
    assert "<app>/annotations/services/imports.py" in detail["error"]
    assert "<server>/secret.csv" in detail["error"]


def test_a_researcher_sees_no_server_path_in_a_model_version(client_as, version):
    body = client_as(Role.RESEARCHER).get(f"/api/model-versions/{version.pk}/").json()
    assert _leaks(body) == []
    assert body["path"] == "<models>/base-7"


def test_admins_see_the_real_paths(client_as, job, version):
    admin = client_as(Role.ADMIN)
    assert admin.get(f"/api/jobs/{job.pk}/").json()["params"]["source"] == str(
        settings.UPLOAD_STAGING_DIR / "3f2a" / "data.csv"
    )
    body = admin.get(f"/api/model-versions/{version.pk}/").json()
    assert body["path"] == str(settings.MODELS_DIR / "base-7")
