"""Serving images to physicians and recording their ratings."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Sequence
from typing import Any

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import (
    Count,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.utils import timezone

from .. import leansql
from ..audit import audit_record
from ..errors import (
    AlreadyRated,
    DomainError,
    NotAllowed,
    NothingToUndo,
    NotServed,
    RoundNotOpen,
)
from ..models import (
    Assignment,
    AssignmentPolicy,
    Flag,
    Image,
    Rating,
    Role,
    Round,
    RoundImage,
    RoundStatus,
    ServingPolicy,
    informativeness,
)
from ..roles import is_physician
from ..serving_rules import REPEAT_GAP, agreement_target, repeats_owed
from ..signals import first_rating_committed

logger = logging.getLogger(__name__)

MAX_TIME_TAKEN_MS = 60 * 60 * 1000


ROUND_FIELDS_FOR_RATING = (
    "name",
    "status",
    "raters_per_image",
    "control_share",
    "agreement_share",
    "repeat_share",
    "serving_policy",
    "rescore_every",
    "display_size",
)


def round_for_rating(round_id: int, rater: Any) -> Round:
    """The round with what serving and rating read, and whether ``rater`` may
    rate it, in one statement (``rater_may_rate`` then answers from the row).

    Other fields are deferred.  Raises ``Round.DoesNotExist``.
    """
    cols = leansql.Columns(Round, "r", ROUND_FIELDS_FOR_RATING)
    listed = leansql.table(Round.raters.through)
    sql = (
        f"SELECT {cols.sql()}, "  # noqa: S608
        f"(NOT EXISTS (SELECT 1 FROM {listed} l WHERE l.round_id = r.id) "
        f"OR EXISTS (SELECT 1 FROM {listed} l WHERE l.round_id = r.id "
        f"AND l.user_id = %s)) FROM {leansql.table(Round)} r WHERE r.id = %s"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [rater.pk, round_id])
        row = cur.fetchone()
    if row is None:
        raise Round.DoesNotExist("no such round")
    rnd = cols.instance(row[:-1])
    rnd.rater_check_for, rnd.rater_check = rater.pk, bool(row[-1])
    return rnd


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
    sql = (
        "SELECT r.status, r.raters_per_image, r.serving_policy, r.rescore_every, "  # noqa: S608
        f"{ok} FROM {qn(rounds)} r"
    )
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
    (
        round.status,
        round.raters_per_image,
        round.serving_policy,
        round.rescore_every,
        listed_ok,
    ) = row
    if round.status != RoundStatus.RATING:
        raise RoundNotOpen("this round is not open for rating")
    if rater is not None and not (is_physician(rater) and listed_ok):
        raise NotAllowed("you are not a rater of this round")
    return round


def _open_assignments(round: Round, rater: Any) -> QuerySet[Assignment]:
    return Assignment.objects.filter(
        round=round, rater=rater, completed_at=None, skipped_at=None, expired_at=None
    )


# --- the hot statements, written out (annotations.leansql says why) ---------------

IMAGE_FIELDS_SERVED = (
    "uid",
    "file",
    "preview",
    "width",
    "height",
    "bit_depth",
    "channels",
    "window_center",
    "window_width",
    "modality",
    "prompt",
    "quarantined",
)
_A = leansql.Columns(Assignment, "a")
_RI = leansql.Columns(RoundImage, "ri")
_IMG = leansql.Columns(Image, "i", IMAGE_FIELDS_SERVED)
_RATING = leansql.Columns(Rating, "x")


def _showings_sql(where: str, *, lock: bool = False) -> str:
    """A physician's showings joined with their items and images."""
    sql = (
        f"SELECT {_A.sql()}, {_RI.sql()}, {_IMG.sql()} "  # noqa: S608
        f"FROM {leansql.table(Assignment)} a "
        f"JOIN {leansql.table(RoundImage)} ri ON ri.id = a.round_image_id "
        f"JOIN {leansql.table(Image)} i ON i.id = ri.image_id "
        f"WHERE a.round_id = %s AND a.rater_id = %s AND {where}"
    )
    if lock and connection.features.has_select_for_update_of:
        sql += " FOR UPDATE OF a"
    return sql


def _linked(row: tuple[Any, ...]) -> Assignment:
    assignment, item, image = row
    item.image = image
    assignment.round_image = item
    return assignment


def _current_showing(round: Round, rater: Any) -> Assignment | None:
    """The physician's open showing served last (a reload shows it again),
    else the one held as their next (``upcoming`` set), in one query."""
    sql = _showings_sql(
        "a.completed_at IS NULL AND a.skipped_at IS NULL AND a.expired_at IS NULL"
    )
    rows = leansql.fetch(
        sql + " ORDER BY a.upcoming, a.served_at DESC LIMIT 1",
        [round.pk, rater.pk],
        _A,
        _RI,
        _IMG,
    )
    return _linked(rows[0]) if rows else None


def _showings_of_image(
    round: Round, rater: Any, *, image: Image | None, image_uid: Any
) -> list[Assignment]:
    """Every showing of one image to the physician, locked (FOR UPDATE)."""
    if image is not None:
        where, param = "ri.image_id = %s", image.pk
    else:
        where, param = "i.uid = %s", leansql.prep(Image, "uid", image_uid)
    rows = leansql.fetch(
        _showings_sql(where, lock=True), [round.pk, rater.pk, param], _A, _RI, _IMG
    )
    return [_linked(row) for row in rows]


# --- what comes next -------------------------------------------------------------
#
# A new image is chosen in this order (see docs in the README notes):
#  1. a self-consistency repeat, when one is due;
#  2. an agreement-set image, when this physician's share of them so far is
#     below the share that spreads the set evenly over their session;
#  3. an image that still needs raters, in the round's serving order;
#  4. what is left of 2 (and 3) when the other kind has run out.

REPEAT_WINDOW = 100
"""The repeat is drawn at random from this many most recent candidates."""
PHYSICIANS_TTL_S = 60


def _physicians_allowed(round: Round) -> int:
    """Physicians who may rate the round (listed ones, or every active one)."""

    def count() -> int:
        listed = Round.raters.through.objects.filter(round_id=round.pk).count()
        if listed:
            return listed
        return (
            get_user_model()
            .objects.filter(groups__name=Role.PHYSICIAN, is_active=True)
            .count()
        )

    key = f"round-physicians:{round.pk}"
    return int(cache.get_or_set(key, count, PHYSICIANS_TTL_S))


def _lockable(qs: QuerySet[RoundImage]) -> QuerySet[RoundImage]:
    if connection.features.has_select_for_update_skip_locked:
        return qs.select_for_update(skip_locked=True, of=("self",))
    return qs


def _regular_items(round: Round, rater: Any) -> QuerySet[RoundImage]:
    return (
        RoundImage.objects.filter(
            round=round,
            in_agreement_set=False,
            assigned_count__lt=round.raters_per_image,
            image__quarantined=False,
        )
        .exclude(assignments__rater=rater)
        .select_related("image")
    )


def _candidate(round: Round, rater: Any, start: int) -> RoundImage | None:
    """Random order: the first free image at or after ``start`` in shuffled order.

    ``_regular_items`` written out: one walk of ``round_shuffle_idx`` from
    ``start``, then from the beginning.  Items another physician is being
    served right now are skipped, not waited for.
    """
    sql = (
        f"SELECT {_RI.sql()}, {_IMG.sql()} "  # noqa: S608
        f"FROM {leansql.table(RoundImage)} ri "
        f"JOIN {leansql.table(Image)} i ON i.id = ri.image_id "
        "WHERE ri.round_id = %s AND NOT ri.in_agreement_set "
        "AND ri.assigned_count < %s AND NOT i.quarantined "
        f"AND NOT EXISTS (SELECT 1 FROM {leansql.table(Assignment)} a "
        "WHERE a.round_image_id = ri.id AND a.rater_id = %s) "
        "AND ri.shuffle_key {op} %s ORDER BY ri.shuffle_key LIMIT 1"
    )
    if connection.features.has_select_for_update_skip_locked:
        sql += " FOR UPDATE OF ri SKIP LOCKED"
    params = [round.pk, round.raters_per_image, rater.pk, start]
    for op in (">=", "<"):
        rows = leansql.fetch(sql.replace("{op}", op), params, _RI, _IMG)
        if rows:
            item, image = rows[0]
            item.image = image
            return item
    return None


MODALITY_SHARES_REFRESH_S = 10
"""How old the per-modality counts of ``modalities_by_lag`` may get."""


def _modality_shares_key(round: Round) -> str:
    return f"round-modality-shares:{round.pk}"


def _modality_shares(round: Round) -> dict[str, list[int]]:
    """``{modality: [items, showings]}`` over the round's regular items.

    Counting them is a grouped scan of the round (60 ms at 100,000 items on
    PostgreSQL), so the counts are cached and read again from the database
    every ``MODALITY_SHARES_REFRESH_S`` seconds; in between each showing
    served adds itself (``_modality_served``).  Balance needs them roughly
    right, not exact.
    """
    key = _modality_shares_key(round)
    cached = cache.get(key)
    if cached is not None and time.time() - cached["at"] < MODALITY_SHARES_REFRESH_S:
        return cached["shares"]
    rows = (
        RoundImage.objects.filter(
            round=round, in_agreement_set=False, image__quarantined=False
        )
        .values_list("image__modality")
        .annotate(n=Count("pk"), served=Sum("assigned_count"))
    )
    shares = {m: [int(n), int(served or 0)] for m, n, served in rows}
    cache.set(key, {"at": time.time(), "shares": shares}, MODALITY_SHARES_REFRESH_S)
    return shares


def _modality_served(round: Round, modality: str) -> None:
    key = _modality_shares_key(round)
    cached = cache.get(key)
    if cached is not None and modality in cached["shares"]:
        cached["shares"][modality][1] += 1
        left = MODALITY_SHARES_REFRESH_S - (time.time() - cached["at"])
        if left > 0:
            cache.set(key, cached, left)


def modalities_by_lag(round: Round) -> list[str]:
    """The round's modalities, the one furthest behind its share first.

    A modality's lag is its share of the showings so far (``assigned_count``
    over the round's regular items) minus its share of those items; ties go
    in random order.  Most informative first takes images from the first
    modality that has one for the physician, so the ensemble's most uncertain
    images cannot all come from one modality: in the noisy-physician
    experiments that skew cost ratings early in a round (docs/engine.md,
    "Scored once or re-scored, and balanced by modality").
    """
    shares = _modality_shares(round)
    if len(shares) < 2:
        return list(shares)
    items = sum(n for n, _ in shares.values())
    served = sum(s for _, s in shares.values()) or 1
    tiebreak = secrets.SystemRandom()
    return [
        m
        for _, _, m in sorted(
            (s / served - n / items, tiebreak.random(), m)
            for m, (n, s) in shares.items()
        )
    ]


def _informative_candidate(round: Round, rater: Any) -> RoundImage | None:
    """Uncertainty order: within the modality furthest behind its share
    (``modalities_by_lag``, the next one when it has nothing left for this
    physician), fewest raters so far, then the most informative
    (``models.informativeness``), ties by shuffle key; one index walk each."""
    ordered = _regular_items(round, rater).order_by(
        "assigned_count", informativeness().desc(), "shuffle_key"
    )
    modalities = modalities_by_lag(round)
    if len(modalities) < 2:
        return _lockable(ordered).first()
    for modality in modalities:
        item = _lockable(ordered.filter(image__modality=modality)).first()
        if item is not None:
            _modality_served(round, modality)
            return item
    return None


def _agreement_candidate(round: Round, rater: Any) -> RoundImage | None:
    """An agreement item this physician has not had (or whose lease expired)."""
    mine = Assignment.objects.filter(
        round_image=OuterRef("pk"), rater=rater, is_repeat=False
    )
    base = (
        RoundImage.objects.filter(
            round=round, in_agreement_set=True, image__quarantined=False
        )
        .exclude(Exists(mine.filter(expired_at=None)))
        .annotate(served_before=Exists(mine))
        .select_related("image")
        .order_by("shuffle_key")
    )
    start = secrets.randbits(62)
    return (
        base.filter(shuffle_key__gte=start).first()
        or base.filter(shuffle_key__lt=start).first()
    )


def _repeat_candidate(round: Round, rater: Any) -> Assignment | None:
    """A first showing rated at least ``REPEAT_GAP`` showings ago, not repeated.

    The gap is counted in this physician's showings served since the rating
    (``served_at`` of the GAP-th most recent one), so images brought back by
    an undo or an expired lease count from when they were last shown.  The
    candidates are found on the physician's own assignments alone; only the
    few kept are joined with their images.
    """
    mine = Assignment.objects.filter(round=round, rater=rater)
    gap_start = Subquery(
        mine.order_by("-served_at", "-id").values("served_at")[
            REPEAT_GAP - 1 : REPEAT_GAP
        ]
    )
    repeated = mine.filter(is_repeat=True, expired_at=None).values("round_image_id")
    recent = (
        mine.filter(is_repeat=False, completed_at__lt=gap_start)
        .exclude(round_image_id__in=repeated)
        .order_by("-completed_at")
        .values("pk")[:REPEAT_WINDOW]
    )
    expired = Assignment.objects.filter(
        round_image=OuterRef("round_image"), rater=rater, is_repeat=True
    )
    rows = [
        a
        for a in Assignment.objects.filter(pk__in=recent)
        .select_related("round_image__image")
        .annotate(expired_repeat=Subquery(expired.values("pk")[:1]))
        if not a.round_image.image.quarantined
    ]
    return secrets.choice(rows) if rows else None


def _serve(
    *,
    round: Round,
    rater: Any,
    item: RoundImage,
    policy: str,
    is_repeat: bool = False,
    revive: int | None = None,
) -> Assignment:
    """Record the showing; an expired one of the same kind is brought back."""
    if not is_repeat:
        leansql.execute(
            f"UPDATE {leansql.table(RoundImage)} "  # noqa: S608
            "SET assigned_count = assigned_count + 1 WHERE id = %s",
            [item.pk],
        )
    if revive is not None:
        assignment = Assignment.objects.get(pk=revive)
        assignment.served_at = timezone.now()
        assignment.expired_at = assignment.skipped_at = assignment.completed_at = None
        assignment.policy = policy
        assignment.upcoming = False
        assignment.save(
            update_fields=[
                "served_at",
                "expired_at",
                "skipped_at",
                "completed_at",
                "policy",
                "upcoming",
            ]
        )
        assignment.round_image = item
        return assignment
    return leansql.insert(
        Assignment(
            round_image=item,
            round=round,
            rater=rater,
            policy=policy,
            is_repeat=is_repeat,
        )
    )


def _mine(round: Round, rater: Any) -> dict[str, int]:
    """This physician's showings so far, in one query."""
    live = Q(expired_at=None)
    return Assignment.objects.filter(round=round, rater=rater).aggregate(
        firsts_rated=Count("pk", filter=Q(is_repeat=False, completed_at__isnull=False)),
        firsts=Count("pk", filter=live & Q(is_repeat=False)),
        # The policy says it, so the count needs no join with the items.
        agreement=Count(
            "pk", filter=live & Q(is_repeat=False, policy=AssignmentPolicy.AGREEMENT)
        ),
        repeats=Count("pk", filter=live & Q(is_repeat=True)),
    )


def _next_new(rnd: Round, rater: Any) -> Assignment | None:
    mine = (
        _mine(rnd, rater) if rnd.agreement_share > 0 or rnd.repeat_share > 0 else None
    )
    if mine is not None and mine["repeats"] < repeats_owed(
        repeat_share=rnd.repeat_share, firsts_rated=mine["firsts_rated"]
    ):
        original = _repeat_candidate(rnd, rater)
        if original is not None:
            return _serve(
                round=rnd,
                rater=rater,
                item=original.round_image,
                policy=AssignmentPolicy.REPEAT,
                is_repeat=True,
                revive=original.expired_repeat,
            )
    agreement_tried = False
    if mine is not None and rnd.agreement_share > 0:
        target = agreement_target(
            agreement_share=rnd.agreement_share,
            raters_per_image=rnd.raters_per_image,
            physicians=_physicians_allowed(rnd),
        )
        if mine["agreement"] < target * (mine["firsts"] + 1):
            agreement_tried = True
            item = _agreement_candidate(rnd, rater)
            if item is not None:
                return _serve_agreement(rnd, rater, item)
    if rnd.serving_policy == ServingPolicy.UNCERTAINTY:
        item = _informative_candidate(rnd, rater)
        policy = AssignmentPolicy.UNCERTAINTY
    else:
        item = _candidate(rnd, rater, secrets.randbits(62))
        policy = AssignmentPolicy.RANDOM
    if item is not None:
        return _serve(round=rnd, rater=rater, item=item, policy=policy)
    if rnd.agreement_share > 0 and not agreement_tried:
        item = _agreement_candidate(rnd, rater)
        if item is not None:
            return _serve_agreement(rnd, rater, item)
    return None


def _serve_agreement(rnd: Round, rater: Any, item: RoundImage) -> Assignment:
    revive = None
    if item.served_before:
        revive = (
            Assignment.objects.filter(round_image=item, rater=rater, is_repeat=False)
            .values_list("pk", flat=True)
            .first()
        )
    return _serve(
        round=rnd,
        rater=rater,
        item=item,
        policy=AssignmentPolicy.AGREEMENT,
        revive=revive,
    )


@transaction.atomic
def assignment_next(*, round: Round, rater: Any) -> Assignment | None:
    """The image this physician should rate next, or None when nothing is left.

    An image already served and not yet rated is served again, so a reload
    shows the same image.  Otherwise a due repeat, a due agreement-set image,
    or a new image in the round's serving order (random: from a random point
    of the shuffled order, so the order differs between raters; uncertainty:
    fewest raters, then most informative first).  Agreement-set images go to
    every physician; the others stop at ``raters_per_image``.
    """
    # Locking the rater too makes one request per rater at a time: two tabs
    # must not take two images.
    rnd = _lock_round_for_rating(round, rater=rater, lock_rater=True)
    current = _current_showing(rnd, rater)
    if current is not None and current.upcoming:
        # The image held as next is shown now: its clock starts here.
        current.upcoming = False
        current.served_at = timezone.now()
        leansql.execute(
            f"UPDATE {leansql.table(Assignment)} SET upcoming = %s, "  # noqa: S608
            "served_at = %s WHERE id = %s",
            [
                leansql.prep(Assignment, "upcoming", False),
                leansql.prep(Assignment, "served_at", current.served_at),
                current.pk,
            ],
        )
    if current is not None:
        return current
    return _next_new(rnd, rater)


def _upcoming(round: Round, rater: Any) -> Assignment | None:
    return (
        _open_assignments(round, rater)
        .filter(upcoming=True)
        .select_related("round_image__image")
        .order_by("served_at", "pk")
        .first()
    )


@transaction.atomic
def assignment_upcoming(*, round: Round, rater: Any) -> Assignment | None:
    """The image held for this physician as their next one, chosen now if
    none is held, so the browser can load it while the current one is rated.

    It is chosen by the same rules as ``assignment_next`` and takes its place
    in the round the same way (another physician will not get it); it becomes
    current, and its time starts, when the current one is rated or skipped.
    None when nothing is left after the current image.
    """
    rnd = _lock_round_for_rating(round, rater=rater, lock_rater=True)
    held = _upcoming(rnd, rater)
    if held is not None:
        return held
    current = _current_showing(rnd, rater)
    if current is None or current.upcoming:
        return None
    chosen = _next_new(rnd, rater)
    if chosen is None:
        return None
    chosen.upcoming = True
    Assignment.objects.filter(pk=chosen.pk).update(upcoming=True)
    return chosen


@transaction.atomic
def assignment_skip(*, round: Round, rater: Any, image: Image) -> Assignment:
    _lock_round_for_rating(round)
    assignment = (
        _open_assignments(round, rater)
        .filter(round_image__image=image)
        .order_by("-served_at")
        .first()
    )
    if assignment is None:
        raise NotServed("this image is not waiting for your rating")
    assignment.skipped_at = timezone.now()
    assignment.save(update_fields=["skipped_at"])
    if not assignment.is_repeat:
        # The place goes back to others; a repeat never held one.
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


def _showing_rated(showings: list[Assignment]) -> Assignment | None:
    """Which showing a submit rates: the open one served last, else the latest
    showing (the repeat once there is one)."""
    open_ = [a for a in showings if a.is_open]
    if open_:
        return max(open_, key=lambda a: (a.served_at, a.pk))
    return max(showings, key=lambda a: (a.is_repeat, a.pk), default=None)


def _live_rating(
    round: Round, rater: Any, image: Image, *, is_repeat: bool
) -> Rating | None:
    sql = (
        f"SELECT {_RATING.sql()} FROM {leansql.table(Rating)} x "  # noqa: S608
        "WHERE x.rater_id = %s AND x.image_id = %s AND x.round_id = %s "
        "AND x.is_repeat = %s AND x.retracted_at IS NULL LIMIT 1"
    )
    params = [
        rater.pk,
        image.pk,
        round.pk,
        leansql.prep(Rating, "is_repeat", is_repeat),
    ]
    rows = leansql.fetch(sql, params, _RATING)
    if not rows:
        return None
    (rating,) = rows[0]
    rating.image = image
    return rating


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
    rater: Any,
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
    if score not in (1, 2, 3):
        raise DomainError("score must be 1, 2 or 3")
    flags = _clean_flags(flags)
    comment = comment.strip()
    if len(comment) > 2000:
        raise DomainError("comment must be at most 2000 characters")
    rnd = _lock_round_for_rating(round, rater=rater)
    # A physician has at most two showings of an image in a round (the first
    # and a repeat).  Their row locks make two submits of one rating take
    # turns; the second then sees the first's committed row below.
    showings = _showings_of_image(rnd, rater, image=image, image_uid=image_uid)
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
    existing = _live_rating(rnd, rater, image, is_repeat=is_repeat)
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
    rating = leansql.insert(
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
    leansql.execute(
        f"UPDATE {leansql.table(Assignment)} SET completed_at = %s, "  # noqa: S608
        "skipped_at = NULL, expired_at = NULL WHERE id = %s",
        [leansql.prep(Assignment, "completed_at", now), assignment.pk],
    )
    if not is_repeat:
        # Repeats stay out of the image's counts and score sums.
        leansql.execute(
            f"UPDATE {leansql.table(RoundImage)} SET "  # noqa: S608
            "rating_count = rating_count + 1, score_sum = score_sum + %s, "
            "score_sq_sum = score_sq_sum + %s, assigned_count = assigned_count + %s "
            "WHERE id = %s",
            [score, score * score, 0 if was_open else 1, assignment.round_image_id],
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
