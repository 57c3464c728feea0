"""Send reward-filtered generations to physicians: a round from a review.

The admin looks at a version's scored images at a threshold, picks some (or
takes every kept one) and opens a rating round on them.  The round records
which version and threshold it came from in ``settings["review"]``.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence

from django.db import transaction

from annotations.audit import audit_record
from annotations.errors import DomainError
from annotations.models import (
    Image,
    Round,
)
from annotations.services.rounds import round_create
from annotations.users import User

from ..models import (
    ModelKind,
    ModelVersion,
)
from ..selectors import (
    ReviewFilter,
    control_pool,
    review_images,
    review_scored_images,
)

MAX_REVIEW_ROUND_IMAGES = 100_000
SHOWN_MISSING = 10


def _chosen_images(
    *,
    review: ReviewFilter,
    image_uids: Sequence[uuid.UUID] | None,
    all_kept: bool,
) -> list[Image]:
    if all_kept == bool(image_uids):
        raise DomainError("choose images, or take every kept image, not both")
    if all_kept:
        images = list(review_images(review=dataclasses.replace(review, show="kept")))
        if not images:
            raise DomainError(
                f"no image of {review.model_version.name} scores at least "
                f"{review.threshold:.2f}; lower the threshold or pick images"
            )
        return images
    wanted = {uuid.UUID(str(u)) for u in image_uids or ()}
    images = list(
        review_scored_images(model_version=review.model_version).filter(uid__in=wanted)
    )
    missing = sorted(str(u) for u in wanted - {im.uid for im in images})
    if missing:
        more = (
            f" and {len(missing) - SHOWN_MISSING} more"
            if len(missing) > SHOWN_MISSING
            else ""
        )
        raise DomainError(
            f"not a scored generated image of {review.model_version.name}: "
            f"{', '.join(missing[:SHOWN_MISSING])}{more}"
        )
    return sorted(images, key=lambda im: (-(im.reward_score or 0.0), -im.pk))


@transaction.atomic
def review_round_create(
    *,
    name: str,
    review: ReviewFilter,
    created_by: User | None,
    image_uids: Sequence[uuid.UUID] | None = None,
    all_kept: bool = False,
    raters_per_image: int = 1,
    control_share: float = 0.0,
    open_now: bool = True,
    description: str = "",
) -> Round:
    """A rating round over the picked images (or every kept one) of a review,
    with real controls from the version's dataset mixed in."""
    version = review.model_version
    if not isinstance(version, ModelVersion) or version.kind != ModelKind.DIFFUSION:
        raise DomainError("model_version must be a diffusion model version")
    if not 0 <= review.threshold <= 1:
        raise DomainError("threshold must be between 0 and 1")
    images = _chosen_images(review=review, image_uids=image_uids, all_kept=all_kept)
    if len(images) > MAX_REVIEW_ROUND_IMAGES:
        raise DomainError(
            f"{len(images)} images chosen; a round holds at most "
            f"{MAX_REVIEW_ROUND_IMAGES}"
        )
    kept = sum(1 for im in images if (im.reward_score or 0.0) >= review.threshold)
    origin = {
        "model_version_id": version.pk,
        "model_version": version.name,
        "threshold": review.threshold,
        "selection": "all_kept" if all_kept else "picked",
        "modality": review.modality,
        "unused_only": review.unused_only,
        "kept": kept,
        "rejected": len(images) - kept,
    }
    pool = (
        control_pool(model_version=version, modalities={im.modality for im in images})
        if control_share > 0
        else ()
    )
    rnd = round_create(
        name=name,
        description=description,
        images=images,
        created_by=created_by,
        raters_per_image=raters_per_image,
        control_share=control_share,
        control_pool=pool,
        model_version=version,
        settings={"review": origin},
        open_now=open_now,
    )
    audit_record(action="review_round_create", actor=created_by, obj=rnd, detail=origin)
    rnd.refresh_from_db()
    return rnd
