"""Rounds: which images are rated, by how many physicians, and when."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ..audit import audit_record
from ..design import PLAIN, ServingDesign, agreement_items_needed
from ..errors import DomainError
from ..models import (
    Assignment,
    Image,
    ImageSource,
    Round,
    RoundImage,
    RoundStatus,
)
from ..presentation import display_size_check, round_display_prepare
from ..signals import round_closed, round_created
from ..tasks import round_display_prepare_task
from ..users import User

if TYPE_CHECKING:
    from models_ml.models import ModelVersion


def _shuffle_key() -> int:
    return secrets.randbits(62)


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


def _design_checked(
    *, name: str, raters_per_image: int, serving: ServingDesign
) -> ServingDesign:
    """Check a round's design before anything is written."""
    if not name.strip():
        raise DomainError("a round needs a name")
    if raters_per_image < 1:
        raise DomainError("raters_per_image must be at least 1")
    return serving.checked()


def _controls_drawn(
    *, chosen: Sequence[Image], control_pool: Iterable[Image], control_share: float
) -> list[Image]:
    """The round's real controls, drawn at random from ``control_pool``
    (real, not quarantined, not among the round's own images)."""
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
    return secrets.SystemRandom().sample(pool, n_controls)


def _images_and_controls(
    images: Sequence[Image],
    control_pool: Iterable[Image],
    *,
    control_share: float,
    generating: bool,
) -> tuple[list[Image], list[Image]]:
    """The round's images (not quarantined) and its real controls; a
    generating round has neither yet, but its control share is checked."""
    if generating:
        controls_needed(n_images=1, control_share=control_share)
        return [], []
    chosen = [im for im in images if not im.quarantined]
    if not chosen:
        raise DomainError("a round needs at least one image that is not quarantined")
    return chosen, _controls_drawn(
        chosen=chosen, control_pool=control_pool, control_share=control_share
    )


def _items_add(
    *, round: Round, chosen: Sequence[Image], controls: Sequence[Image]
) -> None:
    RoundImage.objects.bulk_create(
        [
            RoundImage(
                round=round, image=im, is_control=is_control, shuffle_key=_shuffle_key()
            )
            for im, is_control in [(im, False) for im in chosen]
            + [(im, True) for im in controls]
        ],
        batch_size=2000,
    )


@transaction.atomic
def round_create(
    *,
    name: str,
    images: Sequence[Image],
    created_by: User | None,
    raters_per_image: int = 1,
    control_share: float = 0.0,
    control_pool: Iterable[Image] = (),
    raters: Iterable[User] = (),
    description: str = "",
    model_version: ModelVersion | None = None,
    compare_model_version: ModelVersion | None = None,
    settings: dict[str, Any] | None = None,
    open_now: bool = False,
    serving: ServingDesign = PLAIN,
    display_size: int | None = None,
    generating: bool = False,
) -> Round:
    """Create a round over ``images`` plus real controls drawn from ``control_pool``.

    ``serving`` (``design.ServingDesign``): its agreement share of all items
    (controls included) go to every physician of the round; its repeat share
    of each physician's images come back to them later; its serving policy
    orders the rest (see ``rating.serving``), and most informative first is
    scored again every ``rescore_every`` new ratings.

    With ``generating``, the round has no images yet: it waits, in
    ``generating``, for its generation job, and ``round_generated_fill`` puts
    the images and controls in (the only other place a round's items are
    written). Every round of the product is created here.
    """
    serving = _design_checked(
        name=name, raters_per_image=raters_per_image, serving=serving
    )
    chosen, controls = _images_and_controls(
        images, control_pool, control_share=control_share, generating=generating
    )
    rnd = Round.objects.create(
        name=name.strip(),
        description=description,
        status=RoundStatus.GENERATING if generating else RoundStatus.DRAFT,
        raters_per_image=raters_per_image,
        control_share=control_share,
        model_version=model_version,
        compare_model_version=compare_model_version,
        settings=settings or {},
        created_by=created_by,
        display_size=display_size or None,
        **serving.as_fields(),
    )
    rnd.raters.set(list(raters))
    if generating:
        audit_record(action="round_generating_create", actor=created_by, obj=rnd)
        return rnd
    _items_add(round=rnd, chosen=chosen, controls=controls)
    display_size_check(rnd)
    n_agreement = round_items_mark_agreement(round=rnd)
    audit_record(
        action="round_create",
        actor=created_by,
        obj=rnd,
        detail={
            "images": len(chosen),
            "controls": len(controls),
            "agreement_items": n_agreement,
            "repeat_share": serving.repeat_share,
            "serving_policy": serving.serving_policy,
            "rescore_every": serving.rescore_every,
        },
    )
    if open_now:
        rnd = round_open(round=rnd, actor=created_by)
    round_created.send(sender=Round, round=rnd, created_by=created_by)
    return rnd


@transaction.atomic
def round_generated_fill(
    *,
    round: Round,
    images: Sequence[Image],
    control_pool: Iterable[Image],
    actor: User | None,
    open_now: bool,
) -> Round:
    """Put a generating round's images and real controls in it, draw its
    agreement set as ``round_create`` does, then open it.

    Runs once: a round that has left ``generating`` is returned unchanged, so
    a job that is retried after this commits does nothing twice.
    """
    rnd = Round.objects.select_for_update().get(pk=round.pk)
    if rnd.status != RoundStatus.GENERATING:
        return rnd
    chosen = [im for im in images if not im.quarantined]
    if not chosen:
        raise DomainError(f"round {rnd.name!r}: no generated image to rate")
    controls = _controls_drawn(
        chosen=chosen, control_pool=control_pool, control_share=rnd.control_share
    )
    _items_add(round=rnd, chosen=chosen, controls=controls)
    n_agreement = round_items_mark_agreement(round=rnd)
    rnd.status = RoundStatus.DRAFT
    rnd.save(update_fields=["status", "updated_at"])
    audit_record(
        action="round_generated_fill",
        actor=actor,
        obj=rnd,
        detail={
            "images": len(chosen),
            "controls": len(controls),
            "agreement_items": n_agreement,
        },
    )
    if open_now:
        rnd = round_open(round=rnd, actor=actor)
    return rnd


PREPARE_INLINE_MAX = 2000
"""Rounds up to this many images get their renditions in the request that
opens them; larger ones from the worker."""


@transaction.atomic
def round_open(*, round: Round, actor: User | None) -> Round:
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
def round_close(*, round: Round, actor: User) -> Round:
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
def assignments_expire(*, older_than: datetime) -> int:
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
