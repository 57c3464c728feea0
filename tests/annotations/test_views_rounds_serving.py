"""The round pages take and show the serving design."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotations.models import Round, ServingPolicy
from models_ml.models import Job, JobKind, ModelKind, ModelVersion
from tests.factories import ImageFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def reward() -> ModelVersion:
    return ModelVersion.objects.create(
        name="reward v1", kind=ModelKind.REWARD, path="/rm"
    )


def _form(**overrides):
    data = {"name": "serving round", "raters_per_image": 1, "control_percent": 0}
    data.update(overrides)
    return data


def test_create_form_takes_agreement_repeats_order_and_reward_model(
    client, admin_user, reward
):
    ImageFactory.create_batch(10)
    client.force_login(admin_user)
    response = client.post(
        reverse("rounds-create"),
        _form(
            agreement_percent=20,
            repeat_percent=10,
            serving_policy="uncertainty",
            reward_model_version=reward.pk,
        ),
    )
    assert response.status_code == 302
    rnd = Round.objects.get(name="serving round")
    assert (rnd.agreement_share, rnd.repeat_share) == (0.2, 0.1)
    assert rnd.serving_policy == ServingPolicy.UNCERTAINTY
    assert rnd.reward_model_version == reward
    assert rnd.rescore_every == 24  # left empty: the default
    assert rnd.items.filter(in_agreement_set=True).count() == 2
    assert Job.objects.filter(kind=JobKind.SCORE, params__round_id=rnd.pk).exists()


@pytest.mark.parametrize("given", ["0", "12"])
def test_create_form_takes_a_rescoring_interval_for_most_informative_first(
    client, admin_user, reward, given
):
    ImageFactory.create_batch(4)
    client.force_login(admin_user)
    response = client.post(
        reverse("rounds-create"),
        _form(
            serving_policy="uncertainty",
            reward_model_version=reward.pk,
            rescore_every=given,
        ),
    )
    assert response.status_code == 302
    assert Round.objects.get(name="serving round").rescore_every == int(given)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"serving_policy": "uncertainty"}, "needs a reward model"),
        ({"repeat_percent": 60}, "less than or equal to 50"),
        ({"agreement_percent": 101}, "less than or equal to 100"),
        ({"rescore_every": 5}, "Re-scoring applies to most informative first only"),
        (
            {
                "serving_policy": "uncertainty",
                "rescore_every": -2,
            },
            "greater than or equal to 0",
        ),
    ],
)
def test_create_form_shows_bad_serving_settings_next_to_the_field(
    client, admin_user, fields, message
):
    ImageFactory.create_batch(3)
    client.force_login(admin_user)
    response = client.post(reverse("rounds-create"), _form(**fields))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Round.objects.exists()


def test_rounds_list_shows_each_rounds_serving_design(
    client, admin_user, make_round, reward
):
    make_round(
        10,
        agreement_share=0.2,
        repeat_share=0.1,
        serving_policy=ServingPolicy.UNCERTAINTY,
        reward_model_version=reward,
    )
    client.force_login(admin_user)
    html = client.get(reverse("rounds")).content.decode()
    assert "Most informative first" in html
    assert "agreement set 2 images" in html
    assert "repeats 10%" in html
    assert "reward model: reward v1" in html
    assert "re-scored every 24 ratings" in html
