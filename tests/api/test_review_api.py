"""The review API: a version's scored generations at a threshold, a round from
a selection, and abandoning or retrying a round whose generation failed."""

from __future__ import annotations

import uuid

import pytest

from annotations.models import Role, Round, RoundStatus
from annotations.rating.serving import assignment_next
from annotations.rating.submit import rating_submit
from models_ml.models import Job, JobKind, JobStatus
from tests.models_ml import test_ml_jobs
from tests.models_ml.review_data import diffusion, generating_round, reward, scored

pytestmark = pytest.mark.django_db
sent = test_ml_jobs.sent


@pytest.fixture
def version():
    version = diffusion()
    for i, score in enumerate([0.9, 0.75, 0.6, 0.3]):
        scored(version, score, seed=i)
    scored(version, None)
    return version


def test_review_lists_scored_images_best_first_with_kept_flags_and_counts(
    client_as, version
):
    admin = client_as(Role.ADMIN)
    body = admin.get(
        "/api/review/images/", {"model_version": version.pk, "threshold": 0.7}
    ).json()
    assert body["threshold"] == 0.7
    assert body["counts"] == {"kept": 2, "rejected": 2, "total": 4, "unscored": 1}
    assert [r["reward_score"] for r in body["results"]] == [0.9, 0.75, 0.6, 0.3]
    assert [r["kept"] for r in body["results"]] == [True, True, False, False]
    first = body["results"][0]
    assert first["seed"] == 0 and first["model_version_name"] == "retina v2"
    assert first["scheduler"] == "ddim" and first["round_id"] is None
    assert admin.get(first["file_url"]).status_code == 200


def test_review_pages_with_limit_and_offset_and_shows_only_the_rejected(
    client_as, version
):
    admin = client_as(Role.ADMIN)
    query = {"model_version": version.pk, "threshold": 0.7, "show": "rejected"}
    body = admin.get("/api/review/images/", {**query, "limit": 1}).json()
    assert body["count"] == 2 and [r["reward_score"] for r in body["results"]] == [0.6]
    assert body["next"] and body["previous"] is None
    second = admin.get(body["next"]).json()
    assert [r["reward_score"] for r in second["results"]] == [0.3]


def test_review_without_threshold_uses_the_calibrated_one(client_as, version):
    reward(metrics={"threshold": 0.55})
    body = client_as(Role.ADMIN).get(
        "/api/review/images/", {"model_version": version.pk}
    )
    assert body.json()["threshold"] == pytest.approx(0.55)
    assert body.json()["counts"]["kept"] == 3


def test_review_names_a_bad_threshold_and_a_reward_model_as_version(client_as, version):
    admin = client_as(Role.ADMIN)
    bad = admin.get(
        "/api/review/images/", {"model_version": version.pk, "threshold": 2}
    )
    assert bad.status_code == 400 and "threshold" in bad.json()
    not_diffusion = admin.get("/api/review/images/", {"model_version": reward().pk})
    assert not_diffusion.status_code == 400 and "model_version" in not_diffusion.json()


def test_a_round_from_picked_images_records_version_and_threshold(client_as, version):
    picks = [
        str(u)
        for u in version.images.filter(reward_score__gte=0.6).values_list(
            "uid", flat=True
        )
    ][:2]
    response = client_as(Role.ADMIN).post(
        "/api/review/rounds/",
        {
            "name": "API review",
            "model_version": version.pk,
            "threshold": 0.7,
            "image_uids": picks,
            "raters_per_image": 3,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "rating" and body["raters_per_image"] == 3
    assert body["model_version"] == version.pk
    assert body["settings"]["review"]["threshold"] == 0.7
    assert body["settings"]["review"]["selection"] == "picked"
    assert body["progress"]["total_items"] == 2


def test_a_round_of_all_kept_images(client_as, version):
    response = client_as(Role.ADMIN).post(
        "/api/review/rounds/",
        {
            "name": "kept",
            "model_version": version.pk,
            "threshold": 0.7,
            "all_kept": True,
        },
        format="json",
    )
    assert response.status_code == 201
    rnd = Round.objects.get()
    assert sorted(rnd.items.values_list("image__reward_score", flat=True)) == [
        0.75,
        0.9,
    ]


def test_a_round_needs_exactly_one_of_image_uids_and_all_kept(client_as, version):
    response = client_as(Role.ADMIN).post(
        "/api/review/rounds/",
        {"name": "x", "model_version": version.pk, "all_kept": True,
         "image_uids": [str(version.images.first().uid)]},
        format="json",
    )  # fmt: skip
    assert response.status_code == 400
    assert "exactly one" in response.json()["image_uids"][0]


def test_a_round_names_an_image_outside_the_review(client_as, version):
    stranger = uuid.uuid4()
    response = client_as(Role.ADMIN).post(
        "/api/review/rounds/",
        {"name": "x", "model_version": version.pk, "image_uids": [str(stranger)]},
        format="json",
    )
    assert response.status_code == 400
    assert str(stranger) in response.json()["detail"]
    assert not Round.objects.exists()


def test_abandon_closes_a_failed_generating_round_with_its_reason(
    client_as, admin_user
):
    rnd, job = generating_round(version=diffusion(), admin=admin_user)
    response = client_as(Role.ADMIN).post(
        f"/api/rounds/{rnd.pk}/abandon/", {"reason": "OOM twice"}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "closed"
    assert body["settings"]["abandoned"]["reason"] == "OOM twice"
    assert body["settings"]["abandoned"]["job_id"] == job.pk


def test_abandon_needs_a_reason_and_refuses_a_rated_round(
    client_as, make_round, physician
):
    admin = client_as(Role.ADMIN)
    rnd = make_round(2)
    missing = admin.post(f"/api/rounds/{rnd.pk}/abandon/", {}, format="json")
    assert missing.status_code == 400 and "reason" in missing.json()
    a = assignment_next(round=rnd, rater=physician)
    rating_submit(round=rnd, rater=physician, image=a.round_image.image, score=1)
    rated = admin.post(f"/api/rounds/{rnd.pk}/abandon/", {"reason": "x"}, format="json")
    assert rated.status_code == 409
    assert rated.json()["code"] == "round_conflict"
    assert "close it instead" in rated.json()["detail"]
    rnd.refresh_from_db()
    assert rnd.status == RoundStatus.RATING


def test_retry_generation_answers_202_with_the_new_job_to_poll(
    client_as, admin_user, sent, django_capture_on_commit_callbacks
):
    rnd, failed = generating_round(
        version=diffusion(), admin=admin_user, job_status=JobStatus.CANCELLED
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = client_as(Role.ADMIN).post(f"/api/rounds/{rnd.pk}/retry-generation/")
    assert response.status_code == 202
    body = response.json()
    job = Job.objects.get(pk=body["job"])
    assert job.kind == JobKind.GENERATE_ROUND and job.params["retry_of"] == failed.pk
    assert body["round"] == rnd.pk and body["url"] == f"/api/jobs/{job.pk}/"
    assert sent == [("models_ml.tasks.ml_generate_round", "ml")]


def test_retry_while_the_generation_runs_is_a_conflict(client_as, admin_user):
    rnd, _ = generating_round(
        version=diffusion(), admin=admin_user, job_status=JobStatus.RUNNING
    )
    response = client_as(Role.ADMIN).post(f"/api/rounds/{rnd.pk}/retry-generation/")
    assert response.status_code == 409
    assert "only a failed or cancelled generation" in response.json()["detail"]


def test_abandon_and_retry_of_a_missing_round_are_not_found(client_as):
    admin = client_as(Role.ADMIN)
    assert admin.post("/api/rounds/999999/abandon/", {"reason": "x"}).status_code == (
        404
    )
    assert admin.post("/api/rounds/999999/retry-generation/").status_code == 404
