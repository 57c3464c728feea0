"""Serving by design: the agreement set, unannounced repeats, uncertainty order."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from annotations.design import ServingDesign
from annotations.errors import DomainError
from annotations.models import (
    Assignment,
    AssignmentPolicy,
    Rating,
    Round,
    RoundImage,
    ServingPolicy,
)
from annotations.rating import serving as ratings_services
from annotations.rating.serving import (
    assignment_next,
    assignment_skip,
    modalities_by_lag,
)
from annotations.rating.submit import rating_submit, rating_undo
from annotations.selectors import round_progress
from annotations.services.rounds import assignments_expire, round_create
from annotations.serving_rules import REPEAT_GAP, repeats_owed
from models_ml.selectors import mean_ratings, ratings_for_reward
from tests.factories import ImageFactory

pytestmark = pytest.mark.django_db


def _rate_all(rnd: Any, rater: Any, score: Any = 2) -> list[Assignment]:
    """Rate until nothing is left; returns the showings in the order served."""
    served = []
    while (a := assignment_next(round=rnd, rater=rater)) is not None:
        served.append(a)
        value = score(a) if callable(score) else score
        rating_submit(round=rnd, rater=rater, image=a.round_image.image, score=value)
        assert len(served) < 500, "serving never ends"
    return served


def _agreement_ids(rnd: Any) -> set[int]:
    return set(
        rnd.items.filter(in_agreement_set=True).values_list("image_id", flat=True)
    )


# --- the agreement set ----------------------------------------------------------------


def test_agreement_set_is_the_asked_share_of_all_items_controls_included(
    admin_user,
):
    images = ImageFactory.create_batch(16)
    controls = ImageFactory.create_batch(8)
    rnd = round_create(
        name="r",
        images=images,
        control_pool=controls,
        control_share=0.2,
        serving=ServingDesign(agreement_share=0.25),
        created_by=admin_user,
    )
    assert rnd.items.count() == 20
    assert rnd.items.filter(in_agreement_set=True).count() == 5


def test_a_small_agreement_share_still_gives_one_image(make_round):
    rnd = make_round(5, agreement_share=0.01)
    assert rnd.items.filter(in_agreement_set=True).count() == 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("agreement_share", 1.5, "agreement_share"),
        ("repeat_share", 0.6, "repeat_share"),
        ("serving_policy", "loudest", "serving_policy"),
    ],
)
def test_round_create_refuses_bad_serving_settings_naming_the_field(
    make_round, field, value, message
):
    with pytest.raises(DomainError, match=message):
        make_round(3, **{field: value})


def test_agreement_images_reach_every_physician_beyond_raters_per_image(
    make_round, make_user
):
    rnd = make_round(12, raters_per_image=1, agreement_share=0.25)
    agreement = _agreement_ids(rnd)
    physicians = [make_user() for _ in range(3)]
    rnd.raters.set(physicians)
    seen = {
        p.pk: {a.round_image.image_id for a in _rate_all(rnd, p)} for p in physicians
    }
    for p in physicians:
        assert agreement <= seen[p.pk]
    counts = dict(rnd.items.values_list("image_id", "rating_count"))
    assert all(counts[i] == 3 for i in agreement)
    assert all(n == 1 for i, n in counts.items() if i not in agreement)
    policies = set(
        Assignment.objects.filter(round_image__in_agreement_set=True).values_list(
            "policy", flat=True
        )
    )
    assert policies == {AssignmentPolicy.AGREEMENT}


def test_a_physician_who_joins_late_still_gets_the_whole_agreement_set(
    make_round, make_user
):
    rnd = make_round(10, agreement_share=0.3)
    early = make_user()
    _rate_all(rnd, early)
    late = make_user()
    served = _rate_all(rnd, late)
    assert {a.round_image.image_id for a in served} == _agreement_ids(rnd)


def test_an_agreement_image_whose_lease_expired_comes_back_to_that_physician(
    make_round, make_user
):
    rnd = make_round(4, agreement_share=1.0)
    a, b = make_user(), make_user()
    first = assignment_next(round=rnd, rater=a)
    assert assignments_expire(older_than=timezone.now() + timedelta(seconds=1)) == 1
    # Nobody's place was lost: b gets the set too, and a gets the image back.
    assert assignment_next(round=rnd, rater=b) is not None
    images_a = [x.round_image.image_id for x in _rate_all(rnd, a)]
    assert first.round_image.image_id in images_a
    assert sorted(images_a) == sorted(_agreement_ids(rnd))
    again = Assignment.objects.get(round_image=first.round_image, rater=a)
    assert again.pk == first.pk and again.completed_at and again.expired_at is None
    item = RoundImage.objects.get(pk=first.round_image.pk)
    holders = Assignment.objects.filter(
        round_image=item, expired_at=None, skipped_at=None
    )
    assert item.rating_count == 1 and item.assigned_count == holders.count()


def test_an_image_outside_the_set_whose_lease_expired_goes_to_someone_else(
    make_round, make_user
):
    rnd = make_round(1, agreement_share=0)
    a, b = make_user(), make_user()
    image = assignment_next(round=rnd, rater=a).round_image.image
    assert assignment_next(round=rnd, rater=b) is None
    assignments_expire(older_than=timezone.now() + timedelta(seconds=1))
    assert assignment_next(round=rnd, rater=b).round_image.image == image
    assert assignment_next(round=rnd, rater=a) is None


def test_agreement_images_are_spread_through_a_session_not_left_to_the_end(
    make_round, make_user
):
    rnd = make_round(40, raters_per_image=1, agreement_share=0.25)
    a, b = make_user(), make_user()
    rnd.raters.set([a, b])
    agreement = _agreement_ids(rnd)
    served = []
    for _ in range(10):
        asg = assignment_next(round=rnd, rater=a)
        served.append(asg.round_image.image_id in agreement)
        rating_submit(round=rnd, rater=a, image=asg.round_image.image, score=2)
    # 10 agreement + 15 others each for two physicians: 40% agreement, evenly.
    assert served[0] is True
    assert 3 <= sum(served) <= 5
    assert not all(served[:4])


# --- repeats --------------------------------------------------------------------------


def test_repeats_come_back_after_the_gap_once_each_and_are_recorded(
    make_round, physician
):
    rnd = make_round(40, repeat_share=0.25)
    served = _rate_all(rnd, physician, score=lambda a: 1 + a.round_image_id % 3)
    repeats = [a for a in served if a.is_repeat]
    assert len(repeats) == repeats_owed(repeat_share=0.25, firsts_rated=40) == 10
    assert len(served) == 50
    position = {a.round_image_id: i for i, a in enumerate(served) if not a.is_repeat}
    assert len({a.round_image_id for a in repeats}) == len(repeats)
    for i, a in enumerate(served):
        if a.is_repeat:
            assert a.policy == AssignmentPolicy.REPEAT
            assert i - position[a.round_image_id] - 1 >= REPEAT_GAP
    live = Rating.objects.filter(round=rnd, retracted_at=None)
    assert live.filter(is_repeat=True).count() == 10
    assert live.filter(is_repeat=False).count() == 40
    for item in rnd.items.all():
        score = 1 + item.pk % 3
        assert (item.rating_count, item.score_sum, item.score_sq_sum) == (
            1,
            score,
            score * score,
        )
        assert item.assigned_count == 1


def test_a_physician_with_too_few_images_gets_no_repeat(make_round, physician):
    served = _rate_all(make_round(REPEAT_GAP, repeat_share=0.5), physician)
    assert len(served) == REPEAT_GAP and not any(a.is_repeat for a in served)


def _until_repeat(rnd: Any, rater: Any) -> Assignment:
    while True:
        asg = assignment_next(round=rnd, rater=rater)
        if asg.is_repeat:
            return asg
        rating_submit(round=rnd, rater=rater, image=asg.round_image.image, score=1)


def test_undoing_a_repeat_brings_it_back_and_leaves_the_image_counts(
    make_round, physician
):
    rnd = make_round(20, repeat_share=0.5)
    repeat = _until_repeat(rnd, physician)
    image = repeat.round_image.image
    before = RoundImage.objects.values("rating_count", "score_sum").get(
        pk=repeat.round_image_id
    )
    rating_submit(round=rnd, rater=physician, image=image, score=3)
    undone = rating_undo(round=rnd, rater=physician)
    assert undone.is_repeat and undone.retracted_at is not None
    back = assignment_next(round=rnd, rater=physician)
    assert back.pk == repeat.pk and back.round_image.image == image
    rating, created = rating_submit(round=rnd, rater=physician, image=image, score=2)
    assert created and rating.is_repeat
    live = Rating.objects.filter(image=image, rater=physician, retracted_at=None)
    assert sorted(live.values_list("is_repeat", "score")) == [(False, 1), (True, 2)]
    after = RoundImage.objects.values("rating_count", "score_sum").get(
        pk=repeat.round_image_id
    )
    assert after == before == {"rating_count": 1, "score_sum": 1}


def test_a_double_submit_of_a_repeat_gives_one_row(make_round, physician):
    rnd = make_round(20, repeat_share=0.5)
    image = _until_repeat(rnd, physician).round_image.image
    r1, c1 = rating_submit(round=rnd, rater=physician, image=image, score=3)
    r2, c2 = rating_submit(round=rnd, rater=physician, image=image, score=3)
    assert (c1, c2) == (True, False) and r1.pk == r2.pk
    assert Rating.objects.filter(image=image, is_repeat=True).count() == 1


def test_skipping_a_repeat_frees_no_place_and_it_does_not_come_back(
    make_round, physician
):
    rnd = make_round(20, repeat_share=0.5)
    repeat = _until_repeat(rnd, physician)
    assigned = RoundImage.objects.get(pk=repeat.round_image_id).assigned_count
    assignment_skip(round=rnd, rater=physician, image=repeat.round_image.image)
    assert RoundImage.objects.get(pk=repeat.round_image_id).assigned_count == assigned
    rest = _rate_all(rnd, physician)
    assert all(a.round_image_id != repeat.round_image_id for a in rest)


def test_repeats_stay_out_of_reward_training_and_mean_ratings(make_round, physician):
    rnd = make_round(20, repeat_share=0.5)
    _rate_all(rnd, physician, score=lambda a: 3 if a.is_repeat else 1)
    assert Rating.objects.filter(is_repeat=True).exists()
    used = ratings_for_reward(round_ids=None, until=timezone.now())
    assert used.count() == 20 and not used.filter(is_repeat=True).exists()
    image_ids = list(rnd.items.values_list("image_id", flat=True))
    assert {mean for mean, n in mean_ratings(image_ids=image_ids).values()} == {1.0}


# --- score sums -----------------------------------------------------------------------


def test_score_sums_follow_first_ratings_and_their_undo(make_round, make_user):
    rnd = make_round(1, raters_per_image=3)
    raters = [make_user() for _ in range(3)]
    for rater, score in zip(raters, (1, 3, 3), strict=True):
        image = assignment_next(round=rnd, rater=rater).round_image.image
        rating_submit(round=rnd, rater=rater, image=image, score=score)
    item = RoundImage.objects.get(round=rnd)
    assert (item.rating_count, item.score_sum, item.score_sq_sum) == (3, 7, 19)
    rating_undo(round=rnd, rater=raters[1])
    item.refresh_from_db()
    assert (item.rating_count, item.score_sum, item.score_sq_sum) == (2, 4, 10)


# --- uncertainty order ----------------------------------------------------------------


def test_uncertainty_serving_takes_fewest_raters_then_model_spread_and_disagreement(
    make_round, make_user
):
    rnd = make_round(4, raters_per_image=3, serving_policy=ServingPolicy.UNCERTAINTY)
    items = list(rnd.items.order_by("pk"))
    a, b, c, d = items
    for item, spread in zip(items, (0.1, 0.3, 0.2, None), strict=True):
        item.uncertainty = spread
        item.save(update_fields=["uncertainty"])
    first, second, third = (make_user() for _ in range(3))
    # Nobody has rated: the reward model's spread alone decides.
    scores = {a.pk: (1, 3), b.pk: (2, 2), c.pk: (2, 2), d.pk: (1, 1)}
    order1 = [
        x.round_image_id
        for x in _rate_all(rnd, first, lambda x: scores[x.round_image_id][0])
    ]
    assert order1 == [b.pk, c.pk, a.pk, d.pk]
    order2 = [
        x.round_image_id
        for x in _rate_all(rnd, second, lambda x: scores[x.round_image_id][1])
    ]
    assert order2 == [b.pk, c.pk, a.pk, d.pk]
    # Two ratings each: a's 1 and 3 disagree (0.1² + 1/4) and now lead b (0.3²).
    order3 = [x.round_image_id for x in _rate_all(rnd, third)]
    assert order3 == [a.pk, b.pk, c.pk, d.pk]
    assert set(Assignment.objects.values_list("policy", flat=True)) == {
        AssignmentPolicy.UNCERTAINTY
    }


def test_uncertainty_serving_keeps_each_modality_to_its_share_of_the_round(
    admin_user, physician, make_user, monkeypatch
):
    """Four CT images the model is unsure of and two fundus images it is
    sure of: plain spread order would serve all four CTs first; served by
    modality lag, fundus images come in at their share (a third)."""
    ct = ImageFactory.create_batch(4, modality="ct")
    fundus = ImageFactory.create_batch(2, modality="fundus")
    rnd = round_create(
        name="two modalities",
        images=[*ct, *fundus],
        created_by=admin_user,
        open_now=True,
        serving=ServingDesign(serving_policy=ServingPolicy.UNCERTAINTY),
    )
    spread = {im.pk: 0.5 + 0.1 * k for k, im in enumerate(ct)}
    spread.update({im.pk: 0.1 + 0.01 * k for k, im in enumerate(fundus)})
    for item in rnd.items.all():
        item.uncertainty = spread[item.image_id]
        item.save(update_fields=["uncertainty"])

    served = [x.round_image.image for x in _rate_all(rnd, physician)]

    kinds = [im.modality for im in served]
    assert kinds[:2] == ["ct", "fundus"]
    # After every image, fundus is within one image of its third (ties between
    # modalities go either way); spread order alone would have 0 of 4.
    for n in range(1, 7):
        assert abs(kinds[:n].count("fundus") - n / 3) < 1, kinds
    # Within a modality, the most uncertain first.
    for modality in ("ct", "fundus"):
        mine = [spread[im.pk] for im in served if im.modality == modality]
        assert mine == sorted(mine, reverse=True)
    # A modality with nothing left for this physician gives way to the next:
    # fundus now lags (CT showings counted twice), but this physician has
    # had both fundus images already.
    Round.objects.filter(pk=rnd.pk).update(raters_per_image=3)
    rnd.refresh_from_db()
    rnd.items.filter(image__modality="ct").update(assigned_count=2)
    late = make_user()
    for item in rnd.items.filter(image__modality="fundus"):
        Assignment.objects.create(
            round_image=item, round=rnd, rater=late, completed_at=timezone.now()
        )
    # The cached counts followed every showing served; counts changed outside
    # serving are read from the database once the refresh time has passed.
    assert ratings_services._modality_shares(rnd) == {"ct": [4, 4], "fundus": [2, 2]}
    real_time = time.time
    monkeypatch.setattr(
        ratings_services.time,
        "time",
        lambda: real_time() + ratings_services.MODALITY_SHARES_REFRESH_S + 1,
    )
    assert ratings_services._modality_shares(rnd) == {"ct": [4, 8], "fundus": [2, 2]}
    assert modalities_by_lag(rnd) == ["fundus", "ct"]
    nxt = assignment_next(round=rnd, rater=late)
    assert nxt is not None and nxt.round_image.image.modality == "ct"


def test_random_serving_records_its_policy(make_round, physician):
    rnd = make_round(3)
    _rate_all(rnd, physician)
    assert set(Assignment.objects.values_list("policy", flat=True)) == {
        AssignmentPolicy.RANDOM
    }


# --- progress -------------------------------------------------------------------------


def test_progress_counts_repeats_as_work_and_reaches_the_end(make_round, physician):
    rnd = make_round(30, repeat_share=0.2)
    totals = set()
    while (asg := assignment_next(round=rnd, rater=physician)) is not None:
        p = round_progress(round=rnd, user=physician)
        totals.add(p.mine + p.my_remaining)
        rating_submit(round=rnd, rater=physician, image=asg.round_image.image, score=2)
    end = round_progress(round=rnd, user=physician)
    assert totals == {36}  # 30 images and the 6 repeats owed, from the start
    assert (end.mine, end.my_remaining, end.my_percent) == (36, 0, 100)
    assert end.percent == 100


def test_progress_of_an_agreement_round_reaches_the_end_for_each_physician(
    make_round, make_user
):
    rnd = make_round(10, raters_per_image=1, agreement_share=0.3)
    a, b = make_user(), make_user()
    rnd.raters.set([a, b])
    _rate_all(rnd, a)
    _rate_all(rnd, b)
    for rater in (a, b):
        p = round_progress(round=rnd, user=rater)
        assert (p.my_remaining, p.my_percent) == (0, 100)
    assert round_progress(round=rnd).percent == 100
