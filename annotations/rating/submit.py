"""Recording physicians' ratings: submit (a double submit returns the first
row) and undo (the rating is retracted, its history kept)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.db.models import (
    F,
)
from django.utils import timezone

from ..audit import audit_record
from ..errors import (
    AlreadyRated,
    DomainError,
    NothingToUndo,
    NotServed,
)
from ..models import (
    Assignment,
    Flag,
    Image,
    Rating,
    Round,
    RoundImage,
    ServingPolicy,
)
from ..signals import first_rating_committed
from ..users import User
from . import queries
from .serving import lock_round_for_rating

logger = logging.getLogger(__name__)

MAX_TIME_TAKEN_MS = 60 * 60 * 1000


def _rating_fields_checked(
    score: int, flags: Sequence[str], comment: str
) -> tuple[list[str], str]:
    """The score checked, the flags known and sorted, the comment stripped
    and not too long."""
    if score not in (1, 2, 3):
        raise DomainError("score must be 1, 2 or 3")
    unknown = sorted(set(flags) - set(Flag.values))
    if unknown:
        raise DomainError(
            f"unknown flag {unknown[0]!r}; flags are {', '.join(Flag.values)}"
        )
    comment = comment.strip()
    if len(comment) > 2000:
        raise DomainError("comment must be at most 2000 characters")
    return sorted(set(flags)), comment


def _showing_rated(showings: list[Assignment]) -> Assignment | None:
    """Which showing a submit rates: the open one served last, else the latest
    showing (the repeat once there is one)."""
    open_ = [a for a in showings if a.is_open]
    if open_:
        return max(open_, key=lambda a: (a.served_at, a.pk))
    return max(showings, key=lambda a: (a.is_repeat, a.pk), default=None)


def _announce_first_rating(round_id: int) -> None:
    """After a first rating of a most-informative-first round commits, say
    so (``signals.first_rating_committed``): the learning loop re-scores the
    round when due. The rating is saved whatever a receiver does, so a
    failure is logged, never shown to the physician."""
    for receiver, result in first_rating_committed.send_robust(
        sender=Round, round_id=round_id
    ):
        if isinstance(result, Exception):
            logger.error(
                "round %s: re-scoring could not be started (%s)",
                round_id,
                getattr(receiver, "__name__", receiver),
                exc_info=result,
            )


@transaction.atomic
def rating_submit(
    *,
    round: Round,
    rater: User,
    image: Image | None = None,
    image_uid: Any = None,
    score: int,
    flags: Sequence[str] = (),
    comment: str = "",
    time_taken_ms: int | None = None,
) -> tuple[Rating, bool]:
    """Record a rating of ``image`` (or of the image with ``image_uid``);
    returns (rating, created).

    Submitting the same rating twice returns the first row (created=False).
    A repeat showing gives a second row with ``is_repeat``; it changes none of
    the image's counts or score sums.
    """
    if (image is None) == (image_uid is None):
        raise TypeError("rating_submit takes image or image_uid")
    flags, comment = _rating_fields_checked(score, flags, comment)
    rnd = lock_round_for_rating(round, rater=rater)
    # A physician has at most two showings of an image in a round (the first
    # and a repeat).  Their row locks make two submits of one rating take
    # turns; the second then sees the first's committed row below.
    showings = queries.showings_of_image(rnd, rater, image=image, image_uid=image_uid)
    if showings:
        image = showings[0].round_image.image
    elif image is None:
        # Not served to them: an unknown uid answers the same, so that the
        # answer does not tell which images exist.
        image = Image.objects.filter(uid=image_uid).first()
        if image is None:
            raise NotServed("this image was not served to you in this round")
    assignment = _showing_rated(showings)
    is_repeat = assignment is not None and assignment.is_repeat
    existing = queries.rating_live(rnd, rater, image, is_repeat=is_repeat)
    if existing is not None:
        if existing.score == score and existing.flags == flags:
            return existing, False
        raise AlreadyRated("you have already rated this image; undo it first")
    if assignment is None:
        raise NotServed("this image was not served to you in this round")
    now = timezone.now()
    if time_taken_ms is None:
        time_taken_ms = int((now - assignment.served_at).total_seconds() * 1000)
    time_taken_ms = max(0, min(int(time_taken_ms), MAX_TIME_TAKEN_MS))
    rating = queries.rating_insert(
        Rating(
            rater=rater,
            image=image,
            round=rnd,
            assignment=assignment,
            score=score,
            flags=flags,
            comment=comment,
            time_taken_ms=time_taken_ms,
            is_repeat=is_repeat,
        )
    )
    was_open = assignment.is_open
    assignment.completed_at = now
    assignment.skipped_at = None
    assignment.expired_at = None
    queries.assignment_completed(assignment.pk, now)
    if not is_repeat:
        # Repeats stay out of the image's counts and score sums.
        queries.item_rating_add(
            assignment.round_image_id, score=score, took_place=not was_open
        )
        if rnd.serving_policy == ServingPolicy.UNCERTAINTY and rnd.rescore_every:
            round_id = rnd.pk
            transaction.on_commit(lambda: _announce_first_rating(round_id))
    audit_record(
        action="rating_submit",
        actor=rater,
        obj=rating,
        detail={"round": rnd.pk, "score": score},
    )
    return rating, True


@transaction.atomic
def rating_undo(*, round: Round, rater: User) -> Rating:
    """Retract this physician's last rating in an open round; history is kept."""
    rnd = lock_round_for_rating(round)
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
    if last.assignment is not None:
        # The image comes back as this physician's current one.
        Assignment.objects.filter(pk=last.assignment.pk).update(
            completed_at=None, served_at=now
        )
        if not last.is_repeat:
            RoundImage.objects.filter(
                pk=last.assignment.round_image_id, rating_count__gt=0
            ).update(
                rating_count=F("rating_count") - 1,
                score_sum=F("score_sum") - last.score,
                score_sq_sum=F("score_sq_sum") - last.score * last.score,
            )
    audit_record(action="rating_undo", actor=rater, obj=last)
    return last
