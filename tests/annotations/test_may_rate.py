"""Who may rate a round: the rule's three renderings agree
(``annotations/rating/access.py`` and ``queries.may_rate_sql``)."""

from __future__ import annotations

import pytest

from annotations.models import Role, Round, RoundStatus
from annotations.rating.access import rater_may_rate, rounds_rated_by_q
from annotations.rating.queries import round_for_rating, round_lock_for_rating
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("listed", "expected"),
    [
        ("nobody", True),  # a round that lists no raters is everyone's
        ("them", True),
        ("others", False),
        ("them and others", True),
    ],
)
def test_python_queryset_and_sql_agree_for_a_physician(listed, expected):
    physician = UserFactory(role=Role.PHYSICIAN)
    other = UserFactory(role=Role.PHYSICIAN)
    rnd = Round.objects.create(name="r", status=RoundStatus.RATING)
    rnd.raters.set(
        {
            "nobody": [],
            "them": [physician],
            "others": [other],
            "them and others": [physician, other],
        }[listed]
    )
    fresh = Round.objects.get(pk=rnd.pk)
    assert rater_may_rate(round=fresh, rater=physician) is expected
    carried = round_for_rating(rnd.pk, physician)
    assert carried.rater_check is expected
    assert rater_may_rate(round=carried, rater=physician) is expected
    in_queryset = (
        Round.objects.filter(rounds_rated_by_q(physician)).filter(pk=rnd.pk).exists()
    )
    assert in_queryset is expected
    row = round_lock_for_rating(rnd.pk, rater_id=physician.pk, lock_rater=False)
    assert bool(row[-1]) is expected


def test_only_physicians_may_rate_even_a_round_listing_nobody():
    rnd = Round.objects.create(name="r", status=RoundStatus.RATING)
    for role in (Role.ADMIN, Role.RESEARCHER):
        user = UserFactory(role=role)
        assert rater_may_rate(round=rnd, rater=user) is False
        assert rater_may_rate(round=round_for_rating(rnd.pk, user), rater=user) is False


def test_a_missing_round_is_none_or_does_not_exist():
    physician = UserFactory(role=Role.PHYSICIAN)
    assert round_lock_for_rating(10**9, rater_id=physician.pk, lock_rater=True) is None
    with pytest.raises(Round.DoesNotExist):
        round_for_rating(10**9, physician)
