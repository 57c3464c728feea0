"""Reviewing a version's reward-scored generations and sending a selection
to physicians as a round."""

from __future__ import annotations

import uuid

import pytest

from annotations.errors import DomainError
from annotations.models import AuditEvent, ImageSource, Round, RoundStatus
from models_ml.selectors import (
    ReviewFilter,
    review_counts,
    review_default_threshold,
    review_images,
)
from models_ml.services.review import review_round_create
from tests.factories import DatasetFactory, ImageFactory

from .review_data import diffusion, reward, scored

pytestmark = pytest.mark.django_db


@pytest.fixture
def version():
    return diffusion()


@pytest.fixture
def images(version):
    """Scores 0.9, 0.7, 0.55, 0.4, 0.1 of the version, plus noise around them."""
    made = [
        scored(version, s, seed=i) for i, s in enumerate([0.9, 0.7, 0.55, 0.4, 0.1])
    ]
    scored(version, None)  # unscored: never shown
    scored(diffusion("other"), 0.99)  # another version
    scored(version, 0.95, quarantined=True)  # quarantined: never shown
    ImageFactory(modality="fundus")  # a real image
    return made


def _scores(review: ReviewFilter) -> list[float]:
    return [im.reward_score for im in review_images(review=review)]


def test_review_shows_the_versions_scored_images_best_first_split_at_the_threshold(
    version, images
):
    review = ReviewFilter(model_version=version, threshold=0.55)
    assert _scores(review) == [0.9, 0.7, 0.55, 0.4, 0.1]
    kept = ReviewFilter(model_version=version, threshold=0.55, show="kept")
    rejected = ReviewFilter(model_version=version, threshold=0.55, show="rejected")
    assert _scores(kept) == [0.9, 0.7, 0.55]
    assert _scores(rejected) == [0.4, 0.1]
    assert review_counts(review=review) == {
        "kept": 3,
        "rejected": 2,
        "total": 5,
        "unscored": 1,
    }


def test_moving_the_threshold_moves_images_between_kept_and_rejected(version, images):
    counts = [
        review_counts(review=ReviewFilter(model_version=version, threshold=t))
        for t in (0.0, 0.5, 0.8, 1.0)
    ]
    assert [(c["kept"], c["rejected"]) for c in counts] == [
        (5, 0),
        (3, 2),
        (1, 4),
        (0, 5),
    ]


def test_review_filters_by_modality_and_can_leave_out_images_already_in_a_round(
    version, images, admin_user
):
    scored(version, 0.8, modality="ct")
    ct = ReviewFilter(model_version=version, threshold=0.5, modality="ct")
    assert _scores(ct) == [0.8]
    review_round_create(
        name="first",
        review=ReviewFilter(model_version=version, threshold=0.5),
        created_by=admin_user,
        image_uids=[images[0].uid],
    )
    unused = ReviewFilter(model_version=version, threshold=0.5, unused_only=True)
    assert 0.9 not in _scores(unused) and len(_scores(unused)) == 5


def test_default_threshold_is_the_newest_reward_models_calibrated_one(db):
    assert review_default_threshold() == 0.5
    reward("r1", metrics={"threshold": 0.3})
    reward("r2", metrics={"threshold": 0.62})
    assert review_default_threshold() == pytest.approx(0.62)


def test_picked_images_become_an_open_round_that_records_its_origin(
    version, images, admin_user
):
    review = ReviewFilter(model_version=version, threshold=0.55)
    rnd = review_round_create(
        name="Retina v2, reviewed",
        review=review,
        created_by=admin_user,
        image_uids=[images[0].uid, images[3].uid],
        raters_per_image=2,
    )
    assert rnd.status == RoundStatus.RATING and rnd.raters_per_image == 2
    assert rnd.model_version == version
    assert set(rnd.items.values_list("image_id", flat=True)) == {
        images[0].pk,
        images[3].pk,
    }
    assert rnd.settings["review"] == {
        "model_version_id": version.pk,
        "model_version": "retina v2",
        "threshold": 0.55,
        "selection": "picked",
        "modality": "",
        "unused_only": False,
        "kept": 1,
        "rejected": 1,
    }
    actions = set(
        AuditEvent.objects.filter(object_id=str(rnd.pk)).values_list(
            "action", flat=True
        )
    )
    assert {"round_create", "review_round_create", "round_open"} <= actions


def test_all_kept_takes_every_image_at_or_above_the_threshold(
    version, images, admin_user
):
    rnd = review_round_create(
        name="all kept",
        review=ReviewFilter(model_version=version, threshold=0.55, show="rejected"),
        created_by=admin_user,
        all_kept=True,
        open_now=False,
    )
    assert rnd.status == RoundStatus.DRAFT
    assert sorted(rnd.items.values_list("image__reward_score", flat=True)) == [
        0.55,
        0.7,
        0.9,
    ]
    assert rnd.settings["review"]["selection"] == "all_kept"


def test_real_controls_come_from_the_versions_dataset_in_the_same_modality(
    admin_user,
):
    dataset = DatasetFactory()
    version = diffusion(dataset=dataset)
    picks = [scored(version, 0.8, seed=i) for i in range(3)]
    mine = [ImageFactory(dataset=dataset, modality="fundus") for _ in range(3)]
    ImageFactory(modality="fundus")  # another dataset
    ImageFactory(dataset=dataset, modality="ct")  # another modality
    rnd = review_round_create(
        name="with controls",
        review=ReviewFilter(model_version=version, threshold=0.5),
        created_by=admin_user,
        image_uids=[im.uid for im in picks],
        control_share=0.5,
    )
    controls = rnd.items.filter(is_control=True)
    assert controls.count() == 3
    assert {c.image_id for c in controls} == {im.pk for im in mine}
    assert all(c.image.source == ImageSource.REAL for c in controls)


def test_an_image_of_another_version_is_named_and_nothing_is_created(
    version, images, admin_user
):
    stranger = scored(diffusion("other v"), 0.9)
    unknown = uuid.uuid4()
    with pytest.raises(DomainError) as caught:
        review_round_create(
            name="x",
            review=ReviewFilter(model_version=version, threshold=0.5),
            created_by=admin_user,
            image_uids=[images[0].uid, stranger.uid, unknown],
        )
    message = str(caught.value)
    assert "not a scored generated image of retina v2" in message
    assert str(stranger.uid) in message and str(unknown) in message
    assert str(images[0].uid) not in message
    assert not Round.objects.exists()


@pytest.mark.parametrize(
    ("uids", "all_kept"), [(None, False), ("first", True)], ids=["neither", "both"]
)
def test_picking_and_all_kept_are_exclusive(
    version, images, admin_user, uids, all_kept
):
    with pytest.raises(DomainError, match="not both"):
        review_round_create(
            name="x",
            review=ReviewFilter(model_version=version, threshold=0.5),
            created_by=admin_user,
            image_uids=[images[0].uid] if uids else None,
            all_kept=all_kept,
        )


def test_all_kept_above_every_score_says_to_lower_the_threshold(
    version, images, admin_user
):
    with pytest.raises(DomainError, match="no image of retina v2 scores at least 0.95"):
        review_round_create(
            name="x",
            review=ReviewFilter(model_version=version, threshold=0.95),
            created_by=admin_user,
            all_kept=True,
        )
    assert not Round.objects.exists()


def test_a_reward_model_is_refused_as_the_reviewed_version(images, admin_user):
    with pytest.raises(DomainError, match="diffusion model version"):
        review_round_create(
            name="x",
            review=ReviewFilter(model_version=reward(), threshold=0.5),
            created_by=admin_user,
            all_kept=True,
        )
