"""The loop's actions from the rounds page (models_ml/views/rounds.py):
Score a round's images; for a generation gone wrong, the job's state in the
row, Abandon with a reason, Retry generation."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotations.models import Role, RoundStatus
from annotations.rating.serving import assignment_next
from annotations.rating.submit import rating_submit
from models_ml.models import Job, JobKind, JobStatus, ModelKind, ModelVersion
from tests.models_ml import test_ml_jobs
from tests.models_ml.review_data import diffusion, generating_round

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}
sent = test_ml_jobs.sent


@pytest.fixture
def failed(admin_user):
    return generating_round(version=diffusion(), admin=admin_user)


def test_row_of_a_failed_generation_shows_the_job_retry_and_abandon(
    client, admin_user, failed
):
    rnd, job = failed
    client.force_login(admin_user)
    html = client.get(reverse("rounds")).content.decode()
    row = html.split(f'id="round-{rnd.pk}"')[1].split("</tr>")[0]
    assert f"generation job #{job.pk}</a> · failed" in row
    assert reverse("rounds-retry-generation", args=[rnd.pk]) in row
    assert reverse("rounds-abandon", args=[rnd.pk]) in row


def test_a_running_generation_offers_abandon_but_no_retry(client, admin_user):
    rnd, _ = generating_round(
        version=diffusion(), admin=admin_user, job_status=JobStatus.RUNNING
    )
    client.force_login(admin_user)
    html = client.get(reverse("rounds")).content.decode()
    assert reverse("rounds-retry-generation", args=[rnd.pk]) not in html
    assert reverse("rounds-abandon", args=[rnd.pk]) in html


def test_abandon_answers_the_row_marked_abandoned_with_its_reason(
    client, admin_user, failed
):
    rnd, _ = failed
    client.force_login(admin_user)
    response = client.post(
        reverse("rounds-abandon", args=[rnd.pk]), {"reason": "bad prompts"}, **HTMX
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith(f'<tr id="round-{rnd.pk}"')
    assert "Abandoned" in html and "bad prompts" in html
    assert "rounds-abandon" not in html and "Retry generation" not in html
    rnd.refresh_from_db()
    assert rnd.status == RoundStatus.CLOSED


def test_abandon_without_a_reason_shows_the_error_in_the_row(
    client, admin_user, failed
):
    rnd, _ = failed
    client.force_login(admin_user)
    response = client.post(reverse("rounds-abandon", args=[rnd.pk]), {}, **HTMX)
    assert response.status_code == 400
    assert "give a reason" in response.content.decode()


def test_abandoning_a_rated_round_answers_409_saying_to_close_it(
    client, admin_user, physician, make_round
):
    rnd = make_round(2)
    a = assignment_next(round=rnd, rater=physician)
    rating_submit(round=rnd, rater=physician, image=a.round_image.image, score=2)
    client.force_login(admin_user)
    response = client.post(
        reverse("rounds-abandon", args=[rnd.pk]), {"reason": "x"}, **HTMX
    )
    assert response.status_code == 409
    assert "close it instead" in response.content.decode()


def test_retry_queues_a_new_job_and_the_row_follows_it(
    client, admin_user, failed, sent, django_capture_on_commit_callbacks
):
    rnd, old = failed
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("rounds-retry-generation", args=[rnd.pk]), **HTMX
        )
    new = Job.objects.exclude(pk=old.pk).get()
    html = response.content.decode()
    assert response.status_code == 200
    assert f"generation job #{new.pk}</a> · queued" in html
    assert "Retry generation" not in html
    assert sent == [("models_ml.tasks.ml_generate_round", "ml")]


@pytest.mark.parametrize("role", [Role.PHYSICIAN, Role.RESEARCHER])
def test_only_admins_abandon_or_retry(client, make_user, failed, role):
    rnd, _ = failed
    client.force_login(make_user(role))
    assert (
        client.post(reverse("rounds-abandon", args=[rnd.pk]), {"reason": "x"})
    ).status_code == 403
    assert (
        client.post(reverse("rounds-retry-generation", args=[rnd.pk]))
    ).status_code == 403
    rnd.refresh_from_db()
    assert rnd.status == RoundStatus.GENERATING


@pytest.fixture
def reward() -> ModelVersion:
    return ModelVersion.objects.create(
        name="reward v1", kind=ModelKind.REWARD, path="/rm"
    )


def test_score_button_queues_scoring_and_opens_the_job(
    client, admin_user, make_round, reward
):
    rnd = make_round(3)
    client.force_login(admin_user)
    response = client.post(
        reverse("rounds-score", args=[rnd.pk]), {"reward_model_version": reward.pk}
    )
    job = Job.objects.get(kind=JobKind.SCORE)
    assert response.status_code == 302
    assert response["Location"] == reverse("ml-job", args=[job.pk])
    rnd.refresh_from_db()
    assert rnd.reward_model_version == reward


def test_score_button_is_for_admins_only(client, researcher, make_round, reward):
    rnd = make_round(3)
    client.force_login(researcher)
    response = client.post(
        reverse("rounds-score", args=[rnd.pk]), {"reward_model_version": reward.pk}
    )
    assert response.status_code == 403
    assert not Job.objects.exists()
