"""Who may rate a round: a physician, on its list of raters or on a round
that lists none. The rule has three renderings, kept together here and in
``queries.may_rate_sql`` and checked against each other by
``tests/annotations/test_may_rate.py``: Python for one round, a ``Q`` for a
queryset of rounds, and SQL inside the hot path's statements."""

from __future__ import annotations

from django.db.models import Count, Q

from ..models import Round
from ..roles import is_physician
from ..users import AnyUser, User


def rater_may_rate(*, round: Round, rater: AnyUser) -> bool:
    """Whether ``rater`` may rate ``round`` (whatever its status). A round
    read by ``queries.round_for_rating`` carries the answer for its rater."""
    if not is_physician(rater):
        return False
    if getattr(round, "rater_check_for", None) == rater.pk:
        return bool(round.rater_check)
    listed = Round.raters.through.objects.filter(round_id=round.pk).aggregate(
        n=Count("pk"), me=Count("pk", filter=Q(user_id=rater.pk))
    )
    return not listed["n"] or bool(listed["me"])


def rounds_rated_by_q(rater: User) -> Q:
    """The list rule as a filter on rounds (the physician check is the
    caller's): rounds listing ``rater``, or listing nobody."""
    return Q(raters=rater) | Q(raters__isnull=True)
