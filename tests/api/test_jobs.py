"""Jobs: staff read status and progress; admins cancel."""

from __future__ import annotations

import pytest

from annotations.models import Role
from models_ml.models import Job, JobKind, JobStatus

pytestmark = pytest.mark.django_db


def test_job_detail_shows_status_progress_and_timestamps(client_as):
    job = Job.objects.create(
        kind=JobKind.IMPORT,
        status=JobStatus.RUNNING,
        progress=0.25,
        message="row 10 of 40",
        attempts=1,
        result={"imported": 10},
    )
    body = client_as(Role.RESEARCHER).get(f"/api/jobs/{job.pk}/").json()
    assert body["status"] == "running" and body["progress"] == 0.25
    assert body["message"] == "row 10 of 40" and body["attempts"] == 1
    assert body["result"] == {"imported": 10}
    assert {"created_at", "started_at", "finished_at", "error"} <= set(body)


def test_job_list_filters_by_status(client_as):
    Job.objects.create(kind=JobKind.IMPORT, status=JobStatus.FAILED)
    Job.objects.create(kind=JobKind.IMPORT)
    body = client_as(Role.ADMIN).get("/api/jobs/?status=failed").json()
    assert body["count"] == 1 and body["results"][0]["status"] == "failed"
    bad = client_as(Role.ADMIN).get("/api/jobs/?status=sleeping")
    assert bad.status_code == 400


def test_admin_cancels_a_queued_job_at_once(client_as):
    job = Job.objects.create(kind=JobKind.IMPORT)
    body = client_as(Role.ADMIN).post(f"/api/jobs/{job.pk}/cancel/").json()
    assert body["status"] == "cancelled" and body["cancel_requested"] is True


def test_researcher_cannot_cancel_a_job_they_did_not_start(client_as):
    job = Job.objects.create(kind=JobKind.IMPORT)
    # Not theirs: 404, as for a job that does not exist (users cancel only
    # their own jobs; tests/security/test_ml_queue.py).
    assert (
        client_as(Role.RESEARCHER).post(f"/api/jobs/{job.pk}/cancel/").status_code
        == 404
    )
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED


def test_unknown_job_is_404(client_as):
    assert client_as(Role.ADMIN).get("/api/jobs/999999/").status_code == 404
