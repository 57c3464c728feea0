"""Serving images to physicians and recording their ratings."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import (
    BooleanField,
    Count,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Value,
)
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


def _rater_ok(rater: Any) -> Any:
    """SQL truth of "``rater`` may rate the round": listed, or nobody is listed."""
    listed = Round.raters.through.objects.filter(round_id=OuterRef("pk"))
    return ExpressionWrapper(
        ~Exists(listed) | Exists(listed.filter(user_id=rater.pk)),
        output_field=BooleanField(),
    )


def rounds_with_rater_check(rater: Any) -> QuerySet[Round]:
    """Rounds that already know whether ``rater`` may rate them.

    ``rater_may_rate`` then answers from the row instead of asking again.
    """
    return Round.objects.annotate(
        rater_check_for=Value(rater.pk), rater_check=_rater_ok(rater)
    )


def rater_may_rate(*, round: Round, rater: Any) -> bool:
    if not is_physician(rater):
        return False
    if getattr(round, "rater_check_for", None) == rater.pk:
        return bool(round.rater_check)
    listed = Round.raters.through.objects.filter(round_id=round.pk).aggregate(
        n=Count("pk"), me=Count("pk", filter=Q(user_id=rater.pk))
    )
    return not listed["n"] or bool(listed["me"])


def _lock_round_for_rating(
    round: Round, *, rater: Any = None, lock_rater: bool = False
) -> Round:
    """Share-lock the round and check it is open (and, given ``rater``, theirs).

    FOR SHARE lets many raters proceed at once while blocking ``round_close``'s
    FOR UPDATE; SQLite's IMMEDIATE transactions serialise writers anyway.  One
    statement takes the lock and reads status and rater list, so the round is
    not read again.  ``lock_rater`` also takes the rater's user row FOR UPDATE:
    one physician's requests then run one at a time.
    """
    rounds = Round._meta.db_table
    users = get_user_model()._meta.db_table
    listed = Round.raters.through._meta.db_table
    qn = connection.ops.quote_name
    # Only table names from model metadata are formatted in; values are bound.
    ok = (
        f"(NOT EXISTS (SELECT 1 FROM {qn(listed)} l WHERE l.round_id = r.id) "  # noqa: S608
        f"OR EXISTS (SELECT 1 FROM {qn(listed)} l "
        "WHERE l.round_id = r.id AND l.user_id = %s))"
    )
    sql = f"SELECT r.status, r.raters_per_image, {ok} FROM {qn(rounds)} r"  # noqa: S608
    params: list[Any] = [rater.pk if rater is not None else None]
    postgres = connection.vendor == "postgresql"
    if lock_rater and postgres:
        sql += f" JOIN {qn(users)} u ON u.id = %s"
        params.append(rater.pk)
    sql += " WHERE r.id = %s"
    params.append(round.pk)
    if postgres:
        sql += " FOR SHARE OF r" + (" FOR UPDATE OF u" if lock_rater else "")
    with connection.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
    if row is None:
        raise Round.DoesNotExist("no such round")
    round.status, round.raters_per_image, listed_ok = row
    if round.status != RoundStatus.RATING:
        raise RoundNotOpen("this round is not open for rating")
    if rater is not None and not (is_physician(rater) and listed_ok):
        raise NotAllowed("you are not a rater of this round")
    return round


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
        .select_related("image")
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
    # Locking the rater too makes one request per rater at a time: two tabs
    # must not take two images.
    rnd = _lock_round_for_rating(round, rater=rater, lock_rater=True)
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
    _lock_round_for_rating(round)
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
    rnd = _lock_round_for_rating(round, rater=rater)
    # The assignment is unique per (image, rater) in a round, so its row lock
    # makes two submits of one rating take turns; the second then sees the
    # first's committed row below and returns it.
    assignment = (
        Assignment.objects.select_for_update()
        .filter(round=rnd, rater=rater, round_image__image=image)
        .select_related("round_image")
        .first()
    )
    live = Rating.objects.filter(rater=rater, image=image, round=rnd, retracted_at=None)
    existing = live.first()
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
    rnd = _lock_round_for_rating(round)
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
