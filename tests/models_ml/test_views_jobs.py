"""Job status panel polled by htmx, stopped with 286, and cancel."""

from __future__ import annotations

import pytest
from django.urls import reverse

from models_ml.models import Job, JobKind, JobStatus

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _job(**fields):
    return Job.objects.create(kind=JobKind.IMPORT, params={}, **fields)


def test_running_job_partial_keeps_polling(client, admin_user):
    job = _job(status=JobStatus.RUNNING, progress=0.4, message="row 4 of 10")
    client.force_login(admin_user)
    response = client.get(reverse("job-status", args=[job.pk]), **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="job-status"')
    assert 'hx-trigger="every 2s"' in html
    assert "row 4 of 10" in html


def test_finished_job_answers_286_to_stop_polling(client, admin_user):
    job = _job(status=JobStatus.SUCCEEDED, progress=1.0)
    client.force_login(admin_user)
    response = client.get(reverse("job-status", args=[job.pk]), **HTMX)
    assert response.status_code == 286
    assert "hx-trigger" not in response.content.decode()


def test_failed_import_shows_the_per_row_report(client, admin_user):
    report = {
        "rows": 3,
        "images": 1,
        "duplicates": 0,
        "quarantined": 1,
        "error_count": 2,
        "errors": [
            {"line": 2, "field": "path", "message": "../etc/passwd leaves the folder"},
            {"line": 3, "field": "path", "message": "truncated PNG"},
        ],
        "modalities": {"ct": 1},
    }
    job = _job(
        status=JobStatus.FAILED, error="2 rows are invalid", result={"report": report}
    )
    client.force_login(admin_user)
    html = client.get(reverse("job", args=[job.pk])).content.decode()
    assert "leaves the folder" in html and "truncated PNG" in html
    assert "2 rows are invalid" in html
    assert "Quarantined" in html


def test_cancel_a_queued_job(client, admin_user):
    job = _job()
    client.force_login(admin_user)
    response = client.post(reverse("job-cancel", args=[job.pk]), **HTMX)
    assert response.status_code == 286
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


def test_cancel_a_running_job_asks_it_to_stop(client, admin_user):
    job = _job(status=JobStatus.RUNNING)
    client.force_login(admin_user)
    response = client.post(reverse("job-cancel", args=[job.pk]), **HTMX)
    assert response.status_code == 200
    assert "Cancelling" in response.content.decode()
    job.refresh_from_db()
    assert job.cancel_requested
