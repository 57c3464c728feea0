"""Rounds: which images are rated, by how many physicians, and when."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ..audit import audit_record
from ..errors import DomainError
from ..models import (
    Assignment,
    Image,
    ImageSource,
    Round,
    RoundImage,
    RoundStatus,
    ServingPolicy,
)
from ..presentation import display_size_check, round_display_prepare
from ..signals import round_closed, round_created
from ..tasks import round_display_prepare_task

# A repeat needs room for this many images between the two showings.
MAX_REPEAT_SHARE = 0.5
# Most informative first re-scores the round after this many new ratings
# unless told otherwise: the interval the serving experiments tested (12 and
# 24; docs/engine.md, "Scored once or re-scored, and balanced by modality").
DEFAULT_RESCORE_EVERY = 24
MAX_RESCORE_EVERY = 100_000


def _shuffle_key() -> int:
    return secrets.randbits(62)


def agreement_items_needed(*, n_items: int, agreement_share: float) -> int:
    """Items of the agreement set: ``agreement_share`` of the round, at least one."""
    if not 0 <= agreement_share <= 1:
        raise DomainError("agreement_share must be between 0 and 1")
    if agreement_share == 0 or n_items == 0:
        return 0
    return min(n_items, max(1, round(n_items * agreement_share)))


def rescore_every_for(*, serving_policy: str, rescore_every: int | None) -> int:
    """The re-scoring interval a round takes: ``None`` means the default
    (``DEFAULT_RESCORE_EVERY`` for most informative first, else 0); a value
    out of range, or one set for random order, is refused by name."""
    if rescore_every is None:
        return (
            DEFAULT_RESCORE_EVERY if serving_policy == ServingPolicy.UNCERTAINTY else 0
        )
    if (
        isinstance(rescore_every, bool)
        or not isinstance(rescore_every, int)
        or not 0 <= rescore_every <= MAX_RESCORE_EVERY
    ):
        raise DomainError(
            f"rescore_every must be a whole number from 0 to {MAX_RESCORE_EVERY}"
        )
    if rescore_every and serving_policy != ServingPolicy.UNCERTAINTY:
        raise DomainError(
            "rescore_every applies to most-informative-first serving only "
            "(serving_policy uncertainty); leave it 0 for random order"
        )
    return rescore_every


def serving_check(
    *,
    agreement_share: float,
    repeat_share: float,
    serving_policy: str,
    reward_model_version: Any,
    rescore_every: int | None = None,
) -> int:
    """Refuse serving settings a round cannot run with, naming the field;
    returns the round's re-scoring interval (``rescore_every_for``)."""
    agreement_items_needed(n_items=1, agreement_share=agreement_share)
    if not 0 <= repeat_share <= MAX_REPEAT_SHARE:
        raise DomainError(
            f"repeat_share must be between 0 and {MAX_REPEAT_SHARE} "
            "(at most half of a physician's images come back)"
        )
    if serving_policy not in ServingPolicy.values:
        raise DomainError(
            f"serving_policy must be one of {', '.join(ServingPolicy.values)}"
        )
    if reward_model_version is not None and (
        getattr(reward_model_version, "kind", None) != "reward"
    ):
        raise DomainError("reward_model_version must be a reward model version")
    return rescore_every_for(serving_policy=serving_policy, rescore_every=rescore_every)


def round_items_mark_agreement(*, round: Round) -> int:
    """Put ``round.agreement_share`` of the round's items in the agreement set.

    Drawn uniformly from all items, real controls included, so the set has
    the round's own mix of sources.  Returns the size of the set.
    """
    ids = list(round.items.order_by("pk").values_list("pk", flat=True))
    n = agreement_items_needed(n_items=len(ids), agreement_share=round.agreement_share)
    chosen = secrets.SystemRandom().sample(ids, n)
    RoundImage.objects.filter(pk__in=chosen).update(in_agreement_set=True)
    return n


def controls_needed(*, n_images: int, control_share: float) -> int:
    """Controls to add so that they are ``control_share`` of the round."""
    if not 0 <= control_share < 1:
        raise DomainError("control_share must be at least 0 and below 1")
    if control_share == 0 or n_images == 0:
        return 0
    return max(1, round(n_images * control_share / (1 - control_share)))


@transaction.atomic
def round_create(
    *,
    name: str,
    images: Sequence[Image],
    created_by: Any,
    raters_per_image: int = 1,
    control_share: float = 0.0,
    control_pool: Iterable[Image] = (),
    raters: Iterable[Any] = (),
    description: str = "",
    model_version: Any = None,
    compare_model_version: Any = None,
    settings: dict[str, Any] | None = None,
    open_now: bool = False,
    agreement_share: float = 0.0,
    repeat_share: float = 0.0,
    serving_policy: str = ServingPolicy.RANDOM,
    reward_model_version: Any = None,
    rescore_every: int | None = None,
    display_size: int | None = None,
) -> Round:
    """Create a round over ``images`` plus real controls drawn from ``control_pool``.

    ``agreement_share`` of all items (controls included) go to every physician
    of the round; ``repeat_share`` of each physician's images come back to
    them later; ``serving_policy`` orders the rest (see ``services.ratings``),
    and most informative first is scored again every ``rescore_every`` new
    ratings (default ``DEFAULT_RESCORE_EVERY``; 0 never).
    """
    if not name.strip():
        raise DomainError("a round needs a name")
    if raters_per_image < 1:
        raise DomainError("raters_per_image must be at least 1")
    rescore_every = serving_check(
        agreement_share=agreement_share,
        repeat_share=repeat_share,
        serving_policy=serving_policy,
        reward_model_version=reward_model_version,
        rescore_every=rescore_every,
    )
    chosen = [im for im in images if not im.quarantined]
    if not chosen:
        raise DomainError("a round needs at least one image that is not quarantined")
    chosen_ids = {im.pk for im in chosen}
    pool = [
        im
        for im in control_pool
        if im.source == ImageSource.REAL
        and not im.quarantined
        and im.pk not in chosen_ids
    ]
    n_controls = controls_needed(n_images=len(chosen), control_share=control_share)
    if n_controls > len(pool):
        raise DomainError(
            f"control_share {control_share:.0%} needs {n_controls} "
            f"real control images, but only {len(pool)} are available"
        )
    controls = secrets.SystemRandom().sample(pool, n_controls)
    rnd = Round.objects.create(
        name=name.strip(),
        description=description,
        raters_per_image=raters_per_image,
        control_share=control_share,
        model_version=model_version,
        compare_model_version=compare_model_version,
        settings=settings or {},
        created_by=created_by,
        agreement_share=agreement_share,
        repeat_share=repeat_share,
        serving_policy=serving_policy,
        reward_model_version=reward_model_version,
        rescore_every=rescore_every,
        display_size=display_size or None,
    )
    rnd.raters.set(list(raters))
    RoundImage.objects.bulk_create(
        [
            RoundImage(
                round=rnd, image=im, is_control=False, shuffle_key=_shuffle_key()
            )
            for im in chosen
        ]
        + [
            RoundImage(round=rnd, image=im, is_control=True, shuffle_key=_shuffle_key())
            for im in controls
        ],
        batch_size=2000,
    )
    display_size_check(rnd)
    n_agreement = round_items_mark_agreement(round=rnd)
    audit_record(
        action="round_create",
        actor=created_by,
        obj=rnd,
        detail={
            "images": len(chosen),
            "controls": n_controls,
            "agreement_items": n_agreement,
            "repeat_share": repeat_share,
            "serving_policy": serving_policy,
            "rescore_every": rescore_every,
        },
    )
    if open_now:
        rnd = round_open(round=rnd, actor=created_by)
    round_created.send(sender=Round, round=rnd, created_by=created_by)
    return rnd


PREPARE_INLINE_MAX = 2000
"""Rounds up to this many images get their renditions in the request that
opens them; larger ones from the worker."""


@transaction.atomic
def round_open(*, round: Round, actor: Any) -> Round:
    rnd = Round.objects.select_for_update().get(pk=round.pk)
    if rnd.status == RoundStatus.CLOSED:
        raise DomainError("a closed round cannot be reopened")
    if rnd.status == RoundStatus.RATING:
        return rnd
    display_size_check(rnd)
    rnd.status = RoundStatus.RATING
    rnd.opened_at = timezone.now()
    rnd.save(update_fields=["status", "opened_at", "updated_at"])
    audit_record(action="round_open", actor=actor, obj=rnd)
    # Every image is rendered as the round shows it before anyone is served,
    # so no first request takes longer for one kind of image than another:
    # here for a round of up to PREPARE_INLINE_MAX images (about 6 ms each),
    # by the worker for a larger one.
    if RoundImage.objects.filter(round=rnd).count() <= PREPARE_INLINE_MAX:
        transaction.on_commit(lambda: round_display_prepare(rnd))
    else:
        round_id = rnd.pk
        transaction.on_commit(lambda: round_display_prepare_task.delay(round_id))
    return rnd


@transaction.atomic
def round_close(*, round: Round, actor: Any) -> Round:
    """Close a round: no rating is accepted after this commits."""
    rnd = Round.objects.select_for_update().get(pk=round.pk)
    if rnd.status == RoundStatus.CLOSED:
        return rnd
    now = timezone.now()
    rnd.status = RoundStatus.CLOSED
    rnd.closed_at = now
    rnd.save(update_fields=["status", "closed_at", "updated_at"])
    Assignment.objects.filter(
        round=rnd, completed_at=None, skipped_at=None, expired_at=None
    ).update(expired_at=now)
    audit_record(action="round_close", actor=actor, obj=rnd)
    round_closed.send(sender=Round, round=rnd)
    return rnd


@transaction.atomic
def assignments_expire(*, older_than: Any) -> int:
    """Return images served but never rated before ``older_than`` to the pool."""
    stale = list(
        Assignment.objects.select_for_update(skip_locked=True)
        .filter(
            served_at__lt=older_than,
            completed_at=None,
            skipped_at=None,
            expired_at=None,
        )
        .values_list("pk", "round_image_id", "is_repeat")
    )
    if not stale:
        return 0
    Assignment.objects.filter(pk__in=[pk for pk, _, _ in stale]).update(
        expired_at=timezone.now()
    )
    # A repeat never counted towards the image's raters, so it frees no place.
    for _, round_image_id, is_repeat in stale:
        if is_repeat:
            continue
        RoundImage.objects.filter(pk=round_image_id, assigned_count__gt=0).update(
            assigned_count=F("assigned_count") - 1
        )
    return len(stale)
