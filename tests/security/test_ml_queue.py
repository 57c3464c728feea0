"""Attack: a physician fills the ML queue (37 generation jobs in seconds,
each 256 images x 64 tries x 1000 steps) and nobody but an admin can stop
them.

One request's work is capped, each role has a quota of ML jobs in flight and
per day, and users cancel their own jobs.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotations.models import Role
from models_ml.models import Job, JobKind, JobStatus, ModelKind, ModelVersion

pytestmark = pytest.mark.django_db

SMALL = {"prompt": "CT: a slice", "modality": "CT", "count": 2}


@pytest.fixture(autouse=True)
def base(tmp_path, monkeypatch, settings):
    monkeypatch.setattr("models_ml.services.jobs.job_enqueue", lambda *, job: None)
    settings.JOB_QUOTAS = {
        "physician": (2, 20),
        "researcher": (4, 50),
        "admin": None,
    }
    return ModelVersion.objects.create(
        name="base", kind=ModelKind.DIFFUSION, path=str(tmp_path / "b")
    )


def _generate(client, **body):
    client.raise_request_exception = False
    return client.post("/api/generate/", {**SMALL, **body}, format="json")


def test_one_request_cannot_ask_for_unbounded_work(client_as, tmp_path):
    ModelVersion.objects.create(
        name="reward", kind=ModelKind.REWARD, path=str(tmp_path / "r")
    )
    client = client_as(Role.PHYSICIAN)
    response = _generate(client, count=256, n=64, sampling={"steps": 1000})
    assert response.status_code == 400
    assert (
        "256 images x 64 tries x 1000 steps is 16,384,000 UNet passes"
        in (response.json()["detail"])
    )
    assert _generate(client, count=256, n=8).status_code == 202  # at the cap
    assert Job.objects.count() == 1


def test_a_physician_has_two_jobs_in_flight_at_most(client_as):
    client = client_as(Role.PHYSICIAN)
    assert [_generate(client).status_code for _ in range(2)] == [202, 202]
    third = _generate(client)
    assert third.status_code == 429
    assert third.json()["code"] == "quota_exceeded"
    assert "2 ML jobs queued or running" in third.json()["detail"]
    assert Job.objects.filter(kind=JobKind.GENERATE).count() == 2
    # Another physician has a quota of their own.
    assert _generate(client_as(Role.PHYSICIAN)).status_code == 202


def test_cancelling_ones_own_job_frees_the_quota(client_as):
    client = client_as(Role.PHYSICIAN)
    jobs = [_generate(client).json()["job"] for _ in range(2)]
    response = client.post(f"/api/jobs/{jobs[0]}/cancel/")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == JobStatus.CANCELLED
    assert _generate(client).status_code == 202


def test_nobody_but_an_admin_cancels_anothers_job(client_as):
    owner = client_as(Role.PHYSICIAN)
    job = _generate(owner).json()["job"]
    for role in (Role.PHYSICIAN, Role.RESEARCHER):
        assert client_as(role).post(f"/api/jobs/{job}/cancel/").status_code == 404
    assert Job.objects.get(pk=job).status == JobStatus.QUEUED
    assert client_as(Role.ADMIN).post(f"/api/jobs/{job}/cancel/").status_code == 200


def test_the_daily_quota_counts_finished_jobs_too(client_as, settings):
    settings.JOB_QUOTAS = {**settings.JOB_QUOTAS, "physician": (5, 3)}
    client = client_as(Role.PHYSICIAN)
    for _ in range(3):
        job = Job.objects.get(pk=_generate(client).json()["job"])
        job.status = JobStatus.SUCCEEDED
        job.save()
    refused = _generate(client)
    assert refused.status_code == 429
    assert "in the last 24 hours" in refused.json()["detail"]
    # A day later the old ones no longer count.
    Job.objects.update(created_at=timezone.now() - timedelta(days=1, minutes=1))
    assert _generate(client).status_code == 202


def test_admins_run_the_loop_without_a_quota(client_as):
    client = client_as(Role.ADMIN)
    assert {_generate(client).status_code for _ in range(5)} == {202}


def test_the_generate_page_cancels_ones_own_job(client, make_user, base):
    user = make_user(Role.PHYSICIAN)
    client.force_login(user)
    response = client.post(
        reverse("ml-generate"),
        {
            "prompt": "CT: a slice",
            "modality": "CT",
            "count": 2,
            "mode": "none",
            "n": 1,
            "model_version": base.pk,
        },
    )
    job = Job.objects.get(kind=JobKind.GENERATE)
    assert response.status_code == 302, response.content[:500]
    page = client.get(reverse("ml-generate-job", args=[job.pk])).content.decode()
    assert 'data-testid="generate-cancel"' in page
    done = client.post(reverse("ml-generate-job-cancel", args=[job.pk]))
    assert done.status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    stranger = make_user(Role.PHYSICIAN)
    client.force_login(stranger)
    other = client.post(reverse("ml-generate-job-cancel", args=[job.pk]))
    assert other.status_code == 404


@pytest.mark.parametrize(
    "sampling, field",
    [
        ({"steps": 5000}, "steps"),
        ({"steps": "many"}, "steps"),
        ({"guidance": 1e9}, "guidance"),
        ({"batch_size": 100000}, "batch_size"),
        ({"scheduler": "evil"}, "scheduler"),
        ({"device": "cuda:7; rm"}, "device"),
        ({"model_path": "/etc"}, "model_path"),
    ],
)
def test_every_sampling_setting_has_a_type_and_a_range(client_as, sampling, field):
    response = _generate(client_as(Role.PHYSICIAN), sampling=sampling)
    assert response.status_code == 400
    assert field in response.json()["sampling"]
    assert not Job.objects.exists()


def test_the_schema_documents_the_sampling_settings(client_as):
    schema = client_as(Role.ADMIN).get("/api/schema/?format=json").json()
    sampling = schema["components"]["schemas"]["SamplingSettingsRequest"]["properties"]
    assert sampling["steps"]["maximum"] == 1000
    assert sampling["guidance"]["maximum"] == 30
    assert set(sampling) == {"steps", "guidance", "scheduler", "batch_size", "device"}
