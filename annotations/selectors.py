"""Reads of the rating platform."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum

from .models import Dataset, Image, Rating, Round, RoundStatus
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


def round_progress(*, round: Round, user: Any | None = None) -> RoundProgress:
    agg = round.items.aggregate(
        n=Count("id"),
        done=Sum("rating_count"),
        quarantined=Count("id", filter=Q(image__quarantined=True)),
    )
    total = agg["n"] or 0
    needed = (total - (agg["quarantined"] or 0)) * round.raters_per_image
    done = min(agg["done"] or 0, needed)
    mine = my_remaining = 0
    if user is not None and user.is_authenticated:
        mine = Rating.objects.filter(round=round, rater=user, retracted_at=None).count()
        my_remaining = (
            round.items.filter(
                rating_count__lt=round.raters_per_image, image__quarantined=False
            )
            .exclude(assignments__rater=user, assignments__completed_at__isnull=False)
            .count()
        )
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
