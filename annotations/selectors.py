"""Reads of the rating platform."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum

from .models import (
    Assignment,
    Dataset,
    Image,
    Rating,
    Round,
    RoundImage,
    RoundStatus,
)
from .roles import is_admin, is_physician, is_researcher


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


def _round_totals(round: Round) -> tuple[int, int, int]:
    """(items, ratings, items still needing ratings), cached briefly.

    Every ``next`` shows progress; recounting a 100k-image round each time
    would cost more than the rating itself.
    """
    key = f"round-totals:{round.pk}:{round.raters_per_image}"
    totals = cache.get(key)
    if totals is None:
        # No join with the images: round_create never adds a quarantined image
        # and nothing quarantines one later, so counting rows is enough.
        agg = round.items.aggregate(
            n=Count("id"),
            done=Sum("rating_count"),
            open=Count("id", filter=Q(rating_count__lt=round.raters_per_image)),
        )
        totals = (agg["n"] or 0, agg["done"] or 0, agg["open"] or 0)
        if totals[0] >= ROUND_TOTALS_CACHE_MIN_ITEMS:
            cache.set(key, totals, ROUND_TOTALS_TTL_S)
    return totals


# A physician's finished-but-still-open count costs a join over everything
# they rated; in large rounds it is kept this long and brought forward with
# their own ratings in between.  What it misses is items of theirs that other
# raters filled meanwhile: a few among thousands still open.
ROUND_RATER_TTL_S = 300


def _my_finished_open(round: Round, user: Any) -> int:
    """Items this physician rated or skipped that still need other raters.

    Such items cannot come back to them, so they are taken off what is left.
    """
    still_open = RoundImage.objects.filter(
        pk=OuterRef("round_image_id"), rating_count__lt=round.raters_per_image
    )
    return (
        Assignment.objects.filter(round=round, rater=user)
        .exclude(completed_at=None, skipped_at=None)
        .filter(Exists(still_open))
        .count()
    )


def round_progress(*, round: Round, user: Any | None = None) -> RoundProgress:
    total, done, open_items = _round_totals(round)
    needed = total * round.raters_per_image
    done = min(done, needed)
    mine = my_remaining = 0
    if user is not None and user.is_authenticated:
        # Index-only on the partial index of live ratings.
        mine = Rating.objects.filter(round=round, rater=user, retracted_at=None).count()
        if total >= ROUND_TOTALS_CACHE_MIN_ITEMS:
            key = f"round-rater:{round.pk}:{user.pk}:{round.raters_per_image}"
            cached = cache.get(key)
            if cached is None:
                cached = (_my_finished_open(round, user), mine)
                cache.set(key, cached, ROUND_RATER_TTL_S)
            # Each rating since then finished one item that was open: the
            # same error bound as the cached round totals above.
            finished_open = max(0, cached[0] + mine - cached[1])
        else:
            finished_open = _my_finished_open(round, user)
        my_remaining = max(0, open_items - finished_open)
    return RoundProgress(
        total_items=total,
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
