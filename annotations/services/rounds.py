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
)


def _shuffle_key() -> int:
    return secrets.randbits(62)


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
) -> Round:
    """Create a round over ``images`` plus real controls drawn from ``control_pool``."""
    if not name.strip():
        raise DomainError("a round needs a name")
    if raters_per_image < 1:
        raise DomainError("raters_per_image must be at least 1")
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
    audit_record(
        action="round_create",
        actor=created_by,
        obj=rnd,
        detail={"images": len(chosen), "controls": n_controls},
    )
    if open_now:
        rnd = round_open(round=rnd, actor=created_by)
    return rnd


@transaction.atomic
def round_open(*, round: Round, actor: Any) -> Round:
    rnd = Round.objects.select_for_update().get(pk=round.pk)
    if rnd.status == RoundStatus.CLOSED:
        raise DomainError("a closed round cannot be reopened")
    if rnd.status == RoundStatus.RATING:
        return rnd
    rnd.status = RoundStatus.RATING
    rnd.opened_at = timezone.now()
    rnd.save(update_fields=["status", "opened_at", "updated_at"])
    audit_record(action="round_open", actor=actor, obj=rnd)
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
        .values_list("pk", "round_image_id")
    )
    if not stale:
        return 0
    Assignment.objects.filter(pk__in=[pk for pk, _ in stale]).update(
        expired_at=timezone.now()
    )
    for _, round_image_id in stale:
        RoundImage.objects.filter(pk=round_image_id, assigned_count__gt=0).update(
            assigned_count=F("assigned_count") - 1
        )
    return len(stale)
