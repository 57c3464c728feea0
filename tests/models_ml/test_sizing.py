"""The comparison round's proposed size, and the sentence the form shows."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotations.models import Rating, Role, Round, RoundStatus
from models_ml.sizing import TARGET_POWER, comparison_size_proposal
from tests.factories import ImageFactory, UserFactory

from .ml_page_data import diffusion

pytestmark = pytest.mark.django_db


def test_a_smaller_expected_gain_needs_a_bigger_round() -> None:
    version = diffusion()
    big = comparison_size_proposal(version=version, prompts=7, gain=0.25)
    small = comparison_size_proposal(version=version, prompts=7, gain=0.10)

    assert big.images_per_prompt < small.images_per_prompt
    assert big.reaches_target and big.power >= TARGET_POWER
    assert big.p_base == 0.5 and not big.p_base_known
    sentence = big.sentence()
    assert sentence.startswith(f"With {big.images_per_prompt} per prompt and arm")
    assert "a 25-point gain over its parent and the control is detected" in sentence
    assert "50% rated 3 assumed" in sentence


def test_without_a_control_the_round_can_be_smaller() -> None:
    version = diffusion()
    both = comparison_size_proposal(version=version, prompts=7, gain=0.15)
    parent_only = comparison_size_proposal(
        version=version, prompts=7, gain=0.15, with_control=False
    )
    assert parent_only.images_per_prompt <= both.images_per_prompt
    assert "over its parent is detected" in parent_only.sentence()


def test_the_parents_own_ratings_set_the_baseline(admin_user) -> None:
    version = diffusion()
    rnd = Round.objects.create(
        name="r", status=RoundStatus.RATING, created_by=admin_user
    )
    rater = UserFactory(role=Role.PHYSICIAN)
    for score in (3, 3, 3, 1):
        image = ImageFactory(dataset=None, source="generated", model_version=version)
        Rating.objects.create(rater=rater, image=image, round=rnd, score=score)

    proposal = comparison_size_proposal(version=version, prompts=4, gain=0.1)

    assert proposal.p_base == 0.75 and proposal.p_base_known
    assert "the parent's 75% rated 3 so far" in proposal.sentence()


def test_an_unreachable_target_says_so() -> None:
    proposal = comparison_size_proposal(version=diffusion(), prompts=1, gain=0.02)
    assert not proposal.reaches_target
    assert proposal.images_per_prompt == 64
    assert "No size up to 64 reaches 80%" in proposal.sentence()


def test_the_form_proposes_the_size_and_updates_it(client, admin_user) -> None:
    version = diffusion()
    client.force_login(admin_user)
    page = client.get(reverse("ml-retraining"))
    proposal = page.context["proposal"]
    assert page.context["retrain_form"]["images_per_prompt"].value() == (
        proposal.images_per_prompt
    )
    assert proposal.sentence() in page.content.decode()

    bigger_gain = client.get(
        reverse("ml-retraining-proposal"),
        {"diffusion_version": version.pk, "expected_gain": 30, "train_control": "on"},
        HTTP_HX_REQUEST="true",
    )
    html = bigger_gain.content.decode()
    assert bigger_gain.status_code == 200 and 'id="proposal"' in html
    assert "a 30-point gain" in html
    assert "<html" not in html
    refused = client.get(
        reverse("ml-retraining-proposal"),
        {"diffusion_version": "9" * 40, "expected_gain": "lots"},
    )
    assert refused.status_code == 200 and "detected" not in refused.content.decode()
