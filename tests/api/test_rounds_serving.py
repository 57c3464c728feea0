"""The round API takes the serving design, shows it to staff only, and scores."""

from __future__ import annotations

import pytest

from annotations.models import Role, Round, ServingPolicy
from models_ml.models import Job, JobKind, ModelKind, ModelVersion
from tests.factories import ImageFactory

pytestmark = pytest.mark.django_db

SERVING_FIELDS = {
    "agreement_share",
    "repeat_share",
    "serving_policy",
    "rescore_every",
    "reward_model_version",
}


@pytest.fixture
def reward() -> ModelVersion:
    return ModelVersion.objects.create(name="rm", kind=ModelKind.REWARD, path="/rm")


def _create(client, **fields):
    ImageFactory.create_batch(10, modality="ct")
    body = {"name": "r", "modality": "ct", **fields}
    return client.post("/api/rounds/", body, format="json")


def test_admin_creates_a_round_with_agreement_repeats_and_uncertainty_serving(
    client_as, reward
):
    response = _create(
        client_as(Role.ADMIN),
        agreement_share=0.2,
        repeat_share=0.1,
        serving_policy="uncertainty",
        reward_model_version=reward.pk,
    )
    assert response.status_code == 201, response.content
    out = response.json()
    assert {k: out[k] for k in SERVING_FIELDS} == {
        "agreement_share": 0.2,
        "repeat_share": 0.1,
        "serving_policy": "uncertainty",
        # Not given: most informative first re-scores every 24 ratings.
        "rescore_every": 24,
        "reward_model_version": reward.pk,
    }
    rnd = Round.objects.get(pk=out["id"])
    assert rnd.items.filter(in_agreement_set=True).count() == 2
    # Its images are scored by the chosen reward model straight away.
    job = Job.objects.get(kind=JobKind.SCORE)
    assert job.params == {"round_id": rnd.pk, "reward_version_id": reward.pk}
    assert rnd.settings["score_job_id"] == job.pk


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"agreement_share": 1.5}, "agreement_share"),
        ({"agreement_share": -0.1}, "agreement_share"),
        ({"repeat_share": 0.6}, "repeat_share"),
        ({"serving_policy": "loudest"}, "serving_policy"),
        ({"serving_policy": "uncertainty"}, "reward_model_version"),
        ({"reward_model_version": 999999}, "reward_model_version"),
        ({"rescore_every": 10}, "rescore_every"),
        ({"serving_policy": "random", "rescore_every": 5}, "rescore_every"),
        ({"rescore_every": -1}, "rescore_every"),
        ({"rescore_every": "often"}, "rescore_every"),
    ],
)
def test_bad_serving_settings_are_refused_naming_the_field(
    client_as, fields, bad_field
):
    response = _create(client_as(Role.ADMIN), **fields)
    assert response.status_code == 400
    assert bad_field in response.json(), response.json()
    assert not Round.objects.exists()


def test_an_uncertainty_round_may_set_its_rescoring_interval_or_turn_it_off(
    client_as, reward
):
    admin = client_as(Role.ADMIN)
    for given in (0, 60):
        response = _create(
            admin,
            name=f"every {given}",
            serving_policy="uncertainty",
            reward_model_version=reward.pk,
            rescore_every=given,
        )
        assert response.status_code == 201, response.content
        assert response.json()["rescore_every"] == given
        assert Round.objects.get(name=f"every {given}").rescore_every == given


def test_a_diffusion_model_is_not_accepted_as_the_rounds_reward_model(client_as):
    diffusion = ModelVersion.objects.create(
        name="d", kind=ModelKind.DIFFUSION, path="/d"
    )
    response = _create(client_as(Role.ADMIN), reward_model_version=diffusion.pk)
    assert response.status_code == 400
    assert f"no reward model version with id {diffusion.pk}" in str(response.json())


def test_staff_see_the_serving_design_and_physicians_do_not(
    client_as, make_round, physician
):
    rnd = make_round(3, agreement_share=0.5, repeat_share=0.2)
    staff = client_as(Role.RESEARCHER).get(f"/api/rounds/{rnd.pk}/").json()
    assert staff["agreement_share"] == 0.5 and staff["repeat_share"] == 0.2
    assert staff["serving_policy"] == ServingPolicy.RANDOM
    mine = client_as(None, user=physician).get(f"/api/rounds/{rnd.pk}/").json()
    assert not SERVING_FIELDS & set(mine)


def test_score_endpoint_queues_a_scoring_job_and_sets_the_rounds_reward_model(
    client_as, make_round, reward
):
    rnd = make_round(3)
    response = client_as(Role.ADMIN).post(
        f"/api/rounds/{rnd.pk}/score/",
        {"reward_model_version": reward.pk},
        format="json",
    )
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["job"])
    assert job.kind == JobKind.SCORE and response.json()["round"] == rnd.pk
    rnd.refresh_from_db()
    assert rnd.reward_model_version == reward


def test_score_endpoint_without_any_reward_model_says_which_field_is_missing(
    client_as, make_round
):
    rnd = make_round(2)
    response = client_as(Role.ADMIN).post(f"/api/rounds/{rnd.pk}/score/", {})
    assert response.status_code == 400
    assert "reward_model_version" in response.json()["detail"]
    assert not Job.objects.exists()


def test_score_endpoint_for_an_unknown_round_is_404(client_as):
    response = client_as(Role.ADMIN).post("/api/rounds/999999/score/", {})
    assert response.status_code == 404


def test_a_physicians_rating_answer_never_says_it_was_a_repeat(
    client_as, make_round, physician
):
    from annotations.rating.serving import assignment_next
    from annotations.rating.submit import rating_submit

    rnd = make_round(20, repeat_share=0.5)
    client = client_as(None, user=physician)
    while not (a := assignment_next(round=rnd, rater=physician)).is_repeat:
        rating_submit(round=rnd, rater=physician, image=a.round_image.image, score=2)
    body = {"round": rnd.pk, "image": str(a.round_image.image.uid), "score": 3}
    response = client.post("/api/ratings/", body, format="json")
    assert response.status_code == 201
    assert "repeat" not in response.content.decode()
    listed = client.get(f"/api/ratings/mine/?round={rnd.pk}").content.decode()
    assert "repeat" not in listed
