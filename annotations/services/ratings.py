"""Serving images to physicians and recording their ratings."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from ..audit import audit_record
from ..errors import (
    AlreadyRated,
    DomainError,
    NotAllowed,
    NothingToUndo,
    NotServed,
    RoundNotOpen,
)
from ..models import Assignment, Flag, Image, Rating, Round, RoundImage, RoundStatus
from ..roles import is_physician

MAX_TIME_TAKEN_MS = 60 * 60 * 1000


def rater_may_rate(*, round: Round, rater: Any) -> bool:
    if not is_physician(rater):
        return False
    if not round.raters.exists():
        return True
    return round.raters.filter(pk=rater.pk).exists()


def _check_rater(round: Round, rater: Any) -> None:
    if not rater_may_rate(round=round, rater=rater):
        raise NotAllowed("you are not a rater of this round")


def _lock_round_for_rating(round_id: int) -> Round:
    """Share-lock the round so that a concurrent close waits for this rating.

    FOR SHARE lets many raters proceed at once while blocking ``round_close``'s
    FOR UPDATE; SQLite's IMMEDIATE transactions serialise writers anyway.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute(
                "SELECT 1 FROM annotations_round WHERE id = %s FOR SHARE", [round_id]
            )
    rnd = Round.objects.get(pk=round_id)
    if rnd.status != RoundStatus.RATING:
        raise RoundNotOpen("this round is not open for rating")
    return rnd


def _open_assignments(round: Round, rater: Any) -> QuerySet[Assignment]:
    return Assignment.objects.filter(
        round=round, rater=rater, completed_at=None, skipped_at=None, expired_at=None
    )


def _candidate(round: Round, rater: Any, start: int) -> RoundImage | None:
    base = (
        RoundImage.objects.filter(
            round=round,
            assigned_count__lt=round.raters_per_image,
            image__quarantined=False,
        )
        .exclude(assignments__rater=rater)
        .order_by("shuffle_key")
    )
    if connection.features.has_select_for_update_skip_locked:
        base = base.select_for_update(skip_locked=True, of=("self",))
    return (
        base.filter(shuffle_key__gte=start).first()
        or base.filter(shuffle_key__lt=start).first()
    )


@transaction.atomic
def assignment_next(*, round: Round, rater: Any) -> Assignment | None:
    """The image this physician should rate next, or None when nothing is left.

    An image already served and not yet rated is served again, so a reload
    shows the same image.  New images are picked at a random point of the
    round's shuffled order, which makes the order differ between raters.
    """
    rnd = _lock_round_for_rating(round.pk)
    _check_rater(rnd, rater)
    # One request per rater at a time: two tabs must not take two images.
    get_user_model().objects.select_for_update().filter(pk=rater.pk).first()
    current = (
        _open_assignments(rnd, rater)
        .select_related("round_image__image")
        .order_by("-served_at")
        .first()
    )
    if current is not None:
        return current
    item = _candidate(rnd, rater, secrets.randbits(62))
    if item is None:
        return None
    RoundImage.objects.filter(pk=item.pk).update(assigned_count=F("assigned_count") + 1)
    return Assignment.objects.create(
        round_image=item, round=rnd, rater=rater, policy="random"
    )


@transaction.atomic
def assignment_skip(*, round: Round, rater: Any, image: Image) -> Assignment:
    _lock_round_for_rating(round.pk)
    assignment = (
        _open_assignments(round, rater).filter(round_image__image=image).first()
    )
    if assignment is None:
        raise NotServed("this image is not waiting for your rating")
    assignment.skipped_at = timezone.now()
    assignment.save(update_fields=["skipped_at"])
    RoundImage.objects.filter(
        pk=assignment.round_image_id, assigned_count__gt=0
    ).update(assigned_count=F("assigned_count") - 1)
    audit_record(action="rating_skip", actor=rater, obj=assignment)
    return assignment


def _clean_flags(flags: Sequence[str]) -> list[str]:
    unknown = sorted(set(flags) - set(Flag.values))
    if unknown:
        raise DomainError(
            f"unknown flag {unknown[0]!r}; flags are {', '.join(Flag.values)}"
        )
    return sorted(set(flags))


@transaction.atomic
def rating_submit(
    *,
    round: Round,
    rater: Any,
    image: Image,
    score: int,
    flags: Sequence[str] = (),
    comment: str = "",
    time_taken_ms: int | None = None,
) -> tuple[Rating, bool]:
    """Record a rating; returns (rating, created).

    Submitting the same rating twice returns the first row (created=False).
    """
    if score not in (1, 2, 3):
        raise DomainError("score must be 1, 2 or 3")
    flags = _clean_flags(flags)
    comment = comment.strip()
    if len(comment) > 2000:
        raise DomainError("comment must be at most 2000 characters")
    rnd = _lock_round_for_rating(round.pk)
    _check_rater(rnd, rater)
    live = Rating.objects.filter(rater=rater, image=image, round=rnd, retracted_at=None)
    existing = live.first()
    if existing is not None:
        if existing.score == score and existing.flags == flags:
            return existing, False
        raise AlreadyRated("you have already rated this image; undo it first")
    assignment = (
        Assignment.objects.select_for_update()
        .filter(round=rnd, rater=rater, round_image__image=image)
        .select_related("round_image")
        .first()
    )
    if assignment is None:
        raise NotServed("this image was not served to you in this round")
    now = timezone.now()
    if time_taken_ms is None:
        time_taken_ms = int((now - assignment.served_at).total_seconds() * 1000)
    time_taken_ms = max(0, min(int(time_taken_ms), MAX_TIME_TAKEN_MS))
    try:
        with transaction.atomic():
            rating = Rating.objects.create(
                rater=rater,
                image=image,
                round=rnd,
                assignment=assignment,
                score=score,
                flags=flags,
                comment=comment,
                time_taken_ms=time_taken_ms,
            )
    except IntegrityError:
        # A concurrent identical submit won the race: return its row.
        existing = live.first()
        if existing is None:
            raise
        return existing, False
    was_open = assignment.is_open
    assignment.completed_at = now
    assignment.skipped_at = None
    assignment.expired_at = None
    assignment.save(update_fields=["completed_at", "skipped_at", "expired_at"])
    RoundImage.objects.filter(pk=assignment.round_image_id).update(
        rating_count=F("rating_count") + 1,
        assigned_count=F("assigned_count") + (0 if was_open else 1),
    )
    audit_record(
        action="rating_submit",
        actor=rater,
        obj=rating,
        detail={"round": rnd.pk, "score": score},
    )
    return rating, True


@transaction.atomic
def rating_undo(*, round: Round, rater: Any) -> Rating:
    """Retract this physician's last rating in an open round; history is kept."""
    rnd = _lock_round_for_rating(round.pk)
    last = (
        Rating.objects.select_for_update()
        .filter(round=rnd, rater=rater, retracted_at=None)
        .order_by("-created_at", "-id")
        .first()
    )
    if last is None:
        raise NothingToUndo("there is no rating to undo in this round")
    now = timezone.now()
    last.retracted_at = now
    last.save(update_fields=["retracted_at"])
    if last.assignment_id:
        # The image comes back as this physician's current one.
        Assignment.objects.filter(pk=last.assignment_id).update(
            completed_at=None, served_at=now
        )
        RoundImage.objects.filter(
            pk=last.assignment.round_image_id, rating_count__gt=0
        ).update(rating_count=F("rating_count") - 1)
    audit_record(action="rating_undo", actor=rater, obj=last)
    return last
