from __future__ import annotations

import pytest

from annotations.errors import (
    AlreadyRated,
    NotAllowed,
    NothingToUndo,
    NotServed,
    RoundNotOpen,
)
from annotations.models import Rating, RoundImage
from annotations.rating.serving import assignment_next, assignment_skip
from annotations.rating.submit import rating_submit, rating_undo
from annotations.services.rounds import round_close

pytestmark = pytest.mark.django_db


def test_next_serves_same_image_until_rated(make_round, physician):
    rnd = make_round(3)
    first = assignment_next(round=rnd, rater=physician)
    again = assignment_next(round=rnd, rater=physician)
    assert first.pk == again.pk


def test_rater_gets_every_image_once_then_nothing(make_round, physician):
    rnd = make_round(4)
    seen = []
    while (a := assignment_next(round=rnd, rater=physician)) is not None:
        seen.append(a.round_image.image_id)
        rating_submit(round=rnd, rater=physician, image=a.round_image.image, score=2)
    assert len(seen) == 4 and len(set(seen)) == 4
    assert Rating.objects.filter(round=rnd).count() == 4


def test_image_stops_being_served_once_it_has_its_raters(make_round, make_user):
    rnd = make_round(1, raters_per_image=2)
    a, b, c = (make_user() for _ in range(3))
    for rater in (a, b):
        asg = assignment_next(round=rnd, rater=rater)
        rating_submit(round=rnd, rater=rater, image=asg.round_image.image, score=3)
    assert assignment_next(round=rnd, rater=c) is None
    assert RoundImage.objects.get(round=rnd).rating_count == 2


def test_double_submit_gives_one_row(make_round, physician):
    rnd = make_round(1)
    image = assignment_next(round=rnd, rater=physician).round_image.image
    r1, created1 = rating_submit(round=rnd, rater=physician, image=image, score=3)
    r2, created2 = rating_submit(round=rnd, rater=physician, image=image, score=3)
    assert (created1, created2) == (True, False)
    assert r1.pk == r2.pk
    assert Rating.objects.count() == 1


def test_changing_a_score_needs_an_undo_first(make_round, physician):
    rnd = make_round(1)
    image = assignment_next(round=rnd, rater=physician).round_image.image
    rating_submit(round=rnd, rater=physician, image=image, score=3)
    with pytest.raises(AlreadyRated):
        rating_submit(round=rnd, rater=physician, image=image, score=1)


def test_rating_an_image_never_served_is_refused(make_round, physician):
    rnd = make_round(2)
    other = rnd.items.first().image
    with pytest.raises(NotServed):
        rating_submit(round=rnd, rater=physician, image=other, score=2)


def test_no_rating_after_close(make_round, physician, admin_user):
    rnd = make_round(2)
    image = assignment_next(round=rnd, rater=physician).round_image.image
    round_close(round=rnd, actor=admin_user)
    with pytest.raises(RoundNotOpen):
        rating_submit(round=rnd, rater=physician, image=image, score=2)
    assert not Rating.objects.exists()


def test_undo_retracts_keeps_history_and_serves_image_again(make_round, physician):
    rnd = make_round(3)
    image = assignment_next(round=rnd, rater=physician).round_image.image
    rating_submit(round=rnd, rater=physician, image=image, score=1)
    assignment_next(round=rnd, rater=physician)  # moves on to another image
    rating_undo(round=rnd, rater=physician)
    assert assignment_next(round=rnd, rater=physician).round_image.image == image
    rating_submit(round=rnd, rater=physician, image=image, score=3)
    history = list(
        Rating.objects.filter(image=image).values_list("score", "retracted_at")
    )
    assert [s for s, _ in history] == [1, 3]
    assert history[0][1] is not None and history[1][1] is None
    assert RoundImage.objects.get(round=rnd, image=image).rating_count == 1


def test_undo_with_nothing_rated_is_an_error(make_round, physician):
    with pytest.raises(NothingToUndo):
        rating_undo(round=make_round(1), rater=physician)


def test_skip_releases_image_to_others_not_to_skipper(make_round, make_user):
    rnd = make_round(1)
    a, b = make_user(), make_user()
    image = assignment_next(round=rnd, rater=a).round_image.image
    assert assignment_next(round=rnd, rater=b) is None
    assignment_skip(round=rnd, rater=a, image=image)
    assert assignment_next(round=rnd, rater=a) is None
    assert assignment_next(round=rnd, rater=b).round_image.image == image


def test_only_physicians_on_the_round_may_rate(make_round, researcher, make_user):
    rnd = make_round(1)
    with pytest.raises(NotAllowed):
        assignment_next(round=rnd, rater=researcher)
    listed, outsider = make_user(), make_user()
    rnd.raters.set([listed])
    assert assignment_next(round=rnd, rater=listed) is not None
    with pytest.raises(NotAllowed):
        assignment_next(round=rnd, rater=outsider)


def test_score_outside_one_to_three_rejected_by_service_and_database(
    make_round, physician
):
    from django.db import IntegrityError, transaction

    from annotations.errors import DomainError

    rnd = make_round(1)
    image = assignment_next(round=rnd, rater=physician).round_image.image
    with pytest.raises(DomainError):
        rating_submit(round=rnd, rater=physician, image=image, score=4)
    with pytest.raises(IntegrityError), transaction.atomic():
        Rating.objects.create(rater=physician, image=image, round=rnd, score=0)
