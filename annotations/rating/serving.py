"""Serving images to physicians: what each one sees next, held next, or
skips. The order and the shares are ``serving_rules``'; the hand-written
statements are ``queries``'."""

from __future__ import annotations

import logging
import secrets
import time

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

from ..audit import audit_record
from ..errors import (
    NotAllowed,
    NotServed,
    RoundNotOpen,
)
from ..models import (
    Assignment,
    AssignmentPolicy,
    Image,
    Role,
    Round,
    RoundImage,
    RoundStatus,
    ServingPolicy,
    informativeness,
)
from ..roles import is_physician
from ..serving_rules import REPEAT_GAP, agreement_target, repeats_owed
from ..users import User
from . import queries

logger = logging.getLogger(__name__)


def lock_round_for_rating(
    round: Round, *, rater: User | None = None, lock_rater: bool = False
) -> Round:
    """Share-lock the round and check it is open (and, given ``rater``, theirs);
    ``lock_rater`` also locks the rater's row, so that one physician's
    requests run one at a time (``queries.round_lock_for_rating``). The
    round's serving fields are refreshed on ``round`` from the same row."""
    row = queries.round_lock_for_rating(
        round.pk,
        rater_id=rater.pk if rater is not None else None,
        lock_rater=lock_rater,
    )
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


def _open_assignments(round: Round, rater: User) -> QuerySet[Assignment]:
    return Assignment.objects.filter(
        round=round, rater=rater, completed_at=None, skipped_at=None, expired_at=None
    )


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
    return int(cache.get_or_set(key, count, PHYSICIANS_TTL_S) or 0)


def _lockable(qs: QuerySet[RoundImage]) -> QuerySet[RoundImage]:
    if connection.features.has_select_for_update_skip_locked:
        return qs.select_for_update(skip_locked=True, of=("self",))
    return qs


def _regular_items(round: Round, rater: User) -> QuerySet[RoundImage]:
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
        kept: dict[str, list[int]] = cached["shares"]
        return kept
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


def _informative_candidate(round: Round, rater: User) -> RoundImage | None:
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


def _agreement_candidate(round: Round, rater: User) -> RoundImage | None:
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


def _repeat_candidate(round: Round, rater: User) -> Assignment | None:
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
    rater: User,
    item: RoundImage,
    policy: str,
    is_repeat: bool = False,
    revive: int | None = None,
) -> Assignment:
    """Record the showing; an expired one of the same kind is brought back."""
    if not is_repeat:
        queries.item_assigned_add(item.pk)
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
    return queries.assignment_insert(
        Assignment(
            round_image=item,
            round=round,
            rater=rater,
            policy=policy,
            is_repeat=is_repeat,
        )
    )


def _mine(round: Round, rater: User) -> dict[str, int]:
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


def _next_new(rnd: Round, rater: User) -> Assignment | None:
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
                # annotated by _repeat_candidate's query
                revive=getattr(original, "expired_repeat", None),
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
        item = queries.item_in_shuffle_order(rnd, rater, secrets.randbits(62))
        policy = AssignmentPolicy.RANDOM
    if item is not None:
        return _serve(round=rnd, rater=rater, item=item, policy=policy)
    if rnd.agreement_share > 0 and not agreement_tried:
        item = _agreement_candidate(rnd, rater)
        if item is not None:
            return _serve_agreement(rnd, rater, item)
    return None


def _serve_agreement(rnd: Round, rater: User, item: RoundImage) -> Assignment:
    revive = None
    if getattr(item, "served_before", False):  # _agreement_candidate's annotation
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
def assignment_next(*, round: Round, rater: User) -> Assignment | None:
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
    rnd = lock_round_for_rating(round, rater=rater, lock_rater=True)
    current = queries.showing_current(rnd, rater)
    if current is not None and current.upcoming:
        # The image held as next is shown now: its clock starts here.
        current.upcoming = False
        current.served_at = timezone.now()
        queries.showing_started(current)
    if current is not None:
        return current
    return _next_new(rnd, rater)


def _upcoming(round: Round, rater: User) -> Assignment | None:
    return (
        _open_assignments(round, rater)
        .filter(upcoming=True)
        .select_related("round_image__image")
        .order_by("served_at", "pk")
        .first()
    )


@transaction.atomic
def assignment_upcoming(*, round: Round, rater: User) -> Assignment | None:
    """The image held for this physician as their next one, chosen now if
    none is held, so the browser can load it while the current one is rated.

    It is chosen by the same rules as ``assignment_next`` and takes its place
    in the round the same way (another physician will not get it); it becomes
    current, and its time starts, when the current one is rated or skipped.
    None when nothing is left after the current image.
    """
    rnd = lock_round_for_rating(round, rater=rater, lock_rater=True)
    held = _upcoming(rnd, rater)
    if held is not None:
        return held
    current = queries.showing_current(rnd, rater)
    if current is None or current.upcoming:
        return None
    chosen = _next_new(rnd, rater)
    if chosen is None:
        return None
    chosen.upcoming = True
    Assignment.objects.filter(pk=chosen.pk).update(upcoming=True)
    return chosen


@transaction.atomic
def assignment_skip(*, round: Round, rater: User, image: Image) -> Assignment:
    lock_round_for_rating(round)
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
