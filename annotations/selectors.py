"""Reads of the rating platform."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from django.core.cache import cache
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum, Value
from django.db.models.functions import Least

from .models import (
    Assignment,
    AssignmentPolicy,
    Dataset,
    Image,
    ImageSource,
    Rating,
    Round,
    RoundImage,
    RoundStatus,
)
from .rating.access import rounds_rated_by_q
from .rating.queries import ratings_live_count
from .roles import is_admin, is_physician, is_researcher
from .serving_rules import repeats_owed
from .users import AnyUser, User


def control_pool(
    *, modalities: Iterable[str], dataset: Dataset | None = None
) -> QuerySet[Image]:
    """Real images that may stand, blinded, beside a round's images: real,
    not quarantined, of the round's own modalities (a control of another
    modality would be the odd one out at a glance), and from ``dataset`` when
    one is given. The one definition for plain rounds, generating rounds and
    rounds from a review; ``round_create`` leaves out the round's own images.
    """
    pool = Image.objects.filter(
        source=ImageSource.REAL, quarantined=False, modality__in=set(modalities)
    )
    return pool.filter(dataset=dataset) if dataset is not None else pool


def rounds_visible_to(user: AnyUser) -> QuerySet[Round]:
    """Admins and researchers see every round; physicians the open ones they rate."""
    if is_admin(user) or is_researcher(user):
        return Round.objects.all()
    if is_physician(user):
        return (
            Round.objects.filter(status=RoundStatus.RATING)
            .filter(rounds_rated_by_q(user))
            .distinct()
        )
    return Round.objects.none()


def datasets_visible_to(user: AnyUser) -> QuerySet[Dataset]:
    if is_admin(user) or is_researcher(user):
        return Dataset.objects.all()
    return Dataset.objects.none()


def image_visible_to(*, image: Image, user: AnyUser) -> bool:
    """Physicians see only images served to them; admins and researchers all."""
    if is_admin(user) or is_researcher(user):
        return True
    if is_physician(user):
        return image.round_items.filter(assignments__rater=user).exists()
    return False


def image_files_visible_to(*, user: AnyUser) -> bool:
    """Stored files (full range and preview) are for admins and researchers.
    A physician sees an image only as its round's display rendition
    (``presentation``), so nothing about the stored file reaches them."""
    return is_admin(user) or is_researcher(user)


def display_image_for(*, round: Round, uid: UUID, user: AnyUser) -> Image | None:
    """The image of ``round`` with ``uid`` when ``user`` may see its display
    rendition: a physician only an image served to them in this round, an
    admin or researcher any image of the round. None otherwise."""
    images = Image.objects.filter(uid=uid, round_items__round=round)
    if is_admin(user) or is_researcher(user):
        return images.first()
    if not is_physician(user):
        return None
    return (
        images.filter(
            quarantined=False,
            round_items__assignments__rater=user,
            round_items__assignments__round=round,
        )
        .distinct()
        .first()
    )


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


# A physician's finished-but-still-open count costs a join over everything
# they rated; in large rounds it is kept this long and brought forward with
# their own ratings in between.  What it misses is items of theirs that other
# raters filled meanwhile: a few among thousands still open.
ROUND_RATER_TTL_S = 300


def _my_finished_open(round: Round, user: User) -> int:
    """Items outside the agreement set this physician rated or skipped (first
    showings) that still need other raters.

    Such items cannot come back to them, so they are taken off what is left.
    """
    still_open = RoundImage.objects.filter(
        pk=OuterRef("round_image_id"),
        rating_count__lt=round.raters_per_image,
        in_agreement_set=False,
    )
    return (
        Assignment.objects.filter(round=round, rater=user, is_repeat=False)
        .exclude(completed_at=None, skipped_at=None)
        .filter(Exists(still_open))
        .count()
    )


def _my_showings(round: Round, user: User) -> dict[str, int]:
    """What a physician did in a round with an agreement set or repeats, from
    their own assignments alone (the policy names agreement showings)."""
    finished = Q(completed_at__isnull=False) | Q(skipped_at__isnull=False)
    rated_first = Q(is_repeat=False, completed_at__isnull=False)
    agreement = Q(policy=AssignmentPolicy.AGREEMENT)
    return Assignment.objects.filter(round=round, rater=user).aggregate(
        firsts_rated=Count("pk", filter=rated_first),
        others_rated=Count("pk", filter=rated_first & ~agreement),
        agreement=Count("pk", filter=Q(is_repeat=False) & finished & agreement),
        repeats=Count("pk", filter=Q(is_repeat=True) & finished),
    )


def round_progress(*, round: Round, user: AnyUser | None = None) -> RoundProgress:
    """The round's progress, and the user's own.

    A physician's count of what is left holds the images outside the agreement
    set that still need raters and they have not finished, the agreement
    images they have not finished, and the repeats still owed to them
    (``serving_rules.repeats_owed`` of the first ratings they will have made).
    Their rated count includes repeats, so each rating, first or repeat, moves
    their bar by one step and it reaches the end with the last one.
    """
    totals = _round_totals(round)
    needed = totals.items * round.raters_per_image
    done = min(totals.done, needed)
    mine = my_remaining = 0
    if user is not None and user.is_authenticated:
        mine = ratings_live_count(round.pk, user.pk)
        showings = (
            _my_showings(round, user)
            if round.agreement_share > 0 or round.repeat_share > 0
            else None
        )
        # What moves when one of their first ratings outside the set is added.
        mark = showings["others_rated"] if showings else mine
        if totals.items >= ROUND_TOTALS_CACHE_MIN_ITEMS:
            key = f"round-rater:{round.pk}:{user.pk}:{round.raters_per_image}"
            cached = cache.get(key)
            if cached is None:
                cached = (_my_finished_open(round, user), mark)
                cache.set(key, cached, ROUND_RATER_TTL_S)
            # Each rating since then finished one item that was open: the
            # same error bound as the cached round totals above.
            finished_open = max(0, cached[0] + mark - cached[1])
        else:
            finished_open = _my_finished_open(round, user)
        my_remaining = max(0, totals.open_regular - finished_open)
        if showings is not None:
            firsts_left = my_remaining + max(
                0, totals.agreement - showings["agreement"]
            )
            owed = repeats_owed(
                repeat_share=round.repeat_share,
                firsts_rated=showings["firsts_rated"] + firsts_left,
            )
            my_remaining = firsts_left + max(0, owed - showings["repeats"])
    return RoundProgress(
        total_items=totals.items,
        needed=needed,
        done=done,
        mine=mine,
        my_remaining=my_remaining,
    )


def ratings_of_user(*, user: User, round: Round | None = None) -> QuerySet[Rating]:
    qs = Rating.objects.filter(rater=user).select_related("image", "round")
    if round is not None:
        qs = qs.filter(round=round)
    return qs.order_by("-created_at")
