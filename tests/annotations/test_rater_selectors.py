"""Rating matrices out of the database: retractions, repeats, controls, filters."""

from __future__ import annotations

import pytest
from django.utils import timezone

from annotations.models import Rating, Round
from annotations.rater_selectors import (
    first_rating_matrix,
    image_scores,
    rating_records,
    repeat_matrices,
    reward_models_for,
    round_modalities,
    round_model_versions,
)
from models_ml.models import ModelKind

from .rater_data import rated_round, score_images, version

pytestmark = pytest.mark.django_db


def test_first_rating_matrix_leaves_out_retracted_ratings_and_repeats() -> None:
    w = rated_round(
        ratings={"ann": [1, 2, 3], "bob": [1, None, 2]},
        repeats={"ann": {0: 3}},
    )
    img = w.images
    Rating.objects.filter(rater=w.users["bob"], image=img[2]).update(
        retracted_at=timezone.now()
    )

    matrix = first_rating_matrix(rating_records(round=w.round))

    assert matrix == {
        "ann": {img[0].pk: 1, img[1].pk: 2, img[2].pk: 3},
        "bob": {img[0].pk: 1},
    }


def test_repeat_matrices_pair_each_repeat_with_its_first_rating_only() -> None:
    w = rated_round(
        ratings={"ann": [1, 2, 3], "bob": [2, 2, 2]},
        repeats={"ann": {0: 3, 2: 3}},
    )
    img = w.images

    first, repeats = repeat_matrices(rating_records(round=w.round))

    assert first == {"ann": {img[0].pk: 1, img[2].pk: 3}}
    assert repeats == {"ann": {img[0].pk: 3, img[2].pk: 3}}


def test_a_retracted_repeat_is_not_a_repeat() -> None:
    w = rated_round(ratings={"ann": [1, 2]}, repeats={"ann": {0: 3}})
    Rating.objects.filter(is_repeat=True).update(retracted_at=timezone.now())

    first, repeats = repeat_matrices(rating_records(round=w.round))

    assert first == {} and repeats == {}


def test_controls_are_round_controls_or_real_images() -> None:
    # image 0: generated control; 1: real, not flagged; 2: generated, not control
    w = rated_round(ratings={"ann": [1, 2, 3]}, real={1}, controls={0})

    records = {r.image_id: r for r in rating_records(round=w.round)}

    assert records[w.images[0].pk].is_control
    assert records[w.images[1].pk].is_control
    assert records[w.images[2].pk].is_synthetic


def test_modality_filter_keeps_one_modality() -> None:
    w = rated_round(
        ratings={"ann": [1, 2, 3]}, modalities={0: "ct", 1: "fundus", 2: "ct"}
    )

    records = rating_records(round=w.round, modality="fundus")

    assert [r.image_id for r in records] == [w.images[1].pk]
    assert round_modalities(round=w.round) == ["ct", "fundus"]


def test_model_version_filter_keeps_its_images_and_the_real_controls() -> None:
    w = rated_round(
        ratings={"ann": [1, 2, 3]}, real={0}, versions_of={1: "v1", 2: "v2"}
    )

    records = rating_records(round=w.round, model_version=w.versions["v2"])

    assert sorted(r.image_id for r in records) == [w.images[0].pk, w.images[2].pk]
    assert [v.name for v in round_model_versions(round=w.round)] == ["v1", "v2"]


def test_agreement_set_only_keeps_items_every_physician_rates() -> None:
    w = rated_round(
        ratings={"ann": [1, 2, 3], "bob": [1, 3, None]}, agreement_set={0, 1}
    )
    img = w.images

    matrix = first_rating_matrix(rating_records(round=w.round), agreement_set_only=True)

    assert matrix == {
        "ann": {img[0].pk: 1, img[1].pk: 2},
        "bob": {img[0].pk: 1, img[1].pk: 3},
    }


def test_ratings_of_another_round_stay_out() -> None:
    w = rated_round(ratings={"ann": [1, 2]})
    other = Round.objects.create(name="other")
    Rating.objects.create(rater=w.users["ann"], image=w.images[0], round=other, score=3)

    assert len(rating_records(round=w.round)) == 2
    assert rating_records(round=other)[0].score == 3


def test_reward_models_and_their_scores_for_a_round() -> None:
    w = rated_round(ratings={"ann": [1, 2, 3]})
    scored = version("rm-scored", ModelKind.REWARD)
    version("rm-unused", ModelKind.REWARD)
    assigned = version("rm-assigned", ModelKind.REWARD)
    Round.objects.filter(pk=w.round.pk).update(reward_model_version=assigned)
    score_images(scored, w.images, {0: 1.2, 2: 2.8})

    names = [v.name for v in reward_models_for(round=w.round)]
    scores = image_scores(model_version=scored, image_ids=[i.pk for i in w.images])

    assert sorted(names) == ["rm-assigned", "rm-scored"]
    assert scores == {
        w.images[0].pk: pytest.approx((1.2, 0.1)),
        w.images[2].pk: pytest.approx((2.8, 0.9)),
    }
