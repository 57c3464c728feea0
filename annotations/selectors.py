"""Reads of the rating platform."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db.models import Count, Q, QuerySet, Sum, Value
from django.db.models.functions import Least

from .models import (
    Assignment,
    AssignmentPolicy,
    Dataset,
    Image,
    Rating,
    Round,
    RoundStatus,
)
from .roles import is_admin, is_physician, is_researcher
from .serving_rules import repeats_owed


def rounds_visible_to(user: Any) -> QuerySet[Round]:
    """Admins and researchers see every round; physicians the open ones they rate."""
    if is_admin(user) or is_researcher(user):
        return Round.objects.all()
    if is_physician(user):
        return (
            Round.objects.filter(status=RoundStatus.RATING)
            .filter(Q(raters=user) | Q(raters__isnull=True))
            .distinct()
        )
    return Round.objects.none()


def datasets_visible_to(user: Any) -> QuerySet[Dataset]:
    if is_admin(user) or is_researcher(user):
        return Dataset.objects.all()
    return Dataset.objects.none()


def image_visible_to(*, image: Image, user: Any) -> bool:
    """Physicians see only images served to them; admins and researchers all."""
    if is_admin(user) or is_researcher(user):
        return True
    if is_physician(user):
        return image.round_items.filter(assignments__rater=user).exists()
    return False


@dataclass(frozen=True)
class RoundProgress:
    total_items: int
    needed: int
    done: int
    mine: int
    my_remaining: int

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.needed) if self.needed else 100

    @property
    def my_percent(self) -> int:
        total = self.mine + self.my_remaining
        return round(100 * self.mine / total) if total else 100


ROUND_TOTALS_TTL_S = 10
# Below this many items counting is cheap, and exact progress matters more.
ROUND_TOTALS_CACHE_MIN_ITEMS = 5000


@dataclass(frozen=True)
class _RoundTotals:
    items: int
    done: int
    open_regular: int
    agreement: int


def _round_totals(round: Round) -> _RoundTotals:
    """Items, ratings towards the round's need, items outside the agreement set
    still needing ratings, and agreement items; cached briefly.

    Every ``next`` shows progress; recounting a 100k-image round each time
    would cost more than the rating itself.  ``rating_count`` holds first
    ratings only, and an agreement item counts towards the round's need up
    to ``raters_per_image`` however many physicians rate it.
    """
    rpi = round.raters_per_image
    key = f"round-totals:{round.pk}:{rpi}"
    totals = cache.get(key)
    if totals is None:
        # No join with the images: round_create never adds a quarantined image
        # and nothing quarantines one later, so counting rows is enough.
        agg = round.items.aggregate(
            n=Count("id"),
            done=Sum(Least("rating_count", Value(rpi))),
            open=Count("id", filter=Q(rating_count__lt=rpi, in_agreement_set=False)),
            agreement=Count("id", filter=Q(in_agreement_set=True)),
        )
        totals = _RoundTotals(
            agg["n"] or 0, agg["done"] or 0, agg["open"] or 0, agg["agreement"] or 0
        )
        if totals.items >= ROUND_TOTALS_CACHE_MIN_ITEMS:
            cache.set(key, totals, ROUND_TOTALS_TTL_S)
    return totals


def round_progress(*, round: Round, user: Any | None = None) -> RoundProgress:
    """The round's progress, and the user's own.

    A physician's count of what is left holds the images outside the agreement
    set that still need raters and they have not finished, the agreement
    images they have not finished, and the repeats still owed to them
    (``serving_rules.repeats_owed`` of the first ratings they will have made).
    Their rated count includes repeats, so each rating, first or repeat, moves
    their bar by one step and it reaches the end with the last one.
    """
    totals = _round_totals(round)
    rpi = round.raters_per_image
    needed = totals.items * rpi
    done = min(totals.done, needed)
    mine = my_remaining = 0
    if user is not None and user.is_authenticated:
        mine = Rating.objects.filter(round=round, rater=user, retracted_at=None).count()
        finished = Q(completed_at__isnull=False) | Q(skipped_at__isnull=False)
        first = Q(is_repeat=False) & finished
        # Open items this physician already rated or skipped cannot come back.
        # As in the totals, no join with the images: none is quarantined.
        agg = Assignment.objects.filter(round=round, rater=user).aggregate(
            regular=Count(
                "pk",
                filter=first
                & Q(
                    round_image__in_agreement_set=False,
                    round_image__rating_count__lt=rpi,
                ),
            ),
            agreement=Count("pk", filter=first & Q(policy=AssignmentPolicy.AGREEMENT)),
            firsts_rated=Count(
                "pk", filter=Q(is_repeat=False, completed_at__isnull=False)
            ),
            repeats=Count("pk", filter=Q(is_repeat=True) & finished),
        )
        firsts_left = max(0, totals.open_regular - agg["regular"]) + max(
            0, totals.agreement - agg["agreement"]
        )
        owed = repeats_owed(
            repeat_share=round.repeat_share,
            firsts_rated=agg["firsts_rated"] + firsts_left,
        )
        my_remaining = firsts_left + max(0, owed - agg["repeats"])
    return RoundProgress(
        total_items=totals.items,
        needed=needed,
        done=done,
        mine=mine,
        my_remaining=my_remaining,
    )


def ratings_of_user(*, user: Any, round: Round | None = None) -> QuerySet[Rating]:
    qs = Rating.objects.filter(rater=user).select_related("image", "round")
    if round is not None:
        qs = qs.filter(round=round)
    return qs.order_by("-created_at")
