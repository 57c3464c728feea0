"""Generated images as Image rows, and rounds whose images a job generates.

Pictures come from the engine as 8-bit RGB; those of a grayscale modality are
stored as one channel (their luminance), as imports store them.
The PNG and the preview go through the readers' encoders, so a generated
image is stored exactly like an imported one.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from django.core.files.base import ContentFile
from django.db import transaction

from models_ml.engine.readers import DecodedImage, encode_png, encode_preview_png

from ..audit import audit_record
from ..errors import DomainError
from ..models import (
    Image,
    ImageSource,
    Round,
    RoundImage,
    RoundStatus,
    ServingPolicy,
)
from ..presentation import modality_is_colour
from .rounds import (
    controls_needed,
    round_items_mark_agreement,
    round_open,
    serving_check,
)


def _decoded(picture: Any, *, colour: bool) -> DecodedImage:
    if colour:
        pixels = np.asarray(picture.convert("RGB"), dtype=np.uint8)
    else:
        # A grayscale modality is stored as one channel whatever the model
        # drew: colour speckle from a three-channel model would tell a
        # physician the image is generated.
        pixels = np.asarray(picture.convert("L"), dtype=np.uint8)
    return DecodedImage(
        pixels=pixels,
        bit_depth=8,
        window_center=127.5,
        window_width=256.0,
        source_format="generated",
    )


def generated_image_create(
    *,
    picture: Any,
    prompt: str,
    modality: str,
    model_version: Any,
    generation: dict[str, Any],
    round: Round | None = None,
    reward_score: float | None = None,
) -> Image:
    """Store one engine picture (a PIL image) as a generated Image with provenance.

    Files are written before the row; a caller that fails afterwards leaves
    only unreferenced files behind, never a row without its file.
    """
    decoded = _decoded(picture, colour=modality_is_colour(modality))
    full = encode_png(decoded)
    image = Image(
        sha256=hashlib.sha256(full).hexdigest(),
        width=decoded.width,
        height=decoded.height,
        bit_depth=8,
        channels=3 if decoded.is_rgb else 1,
        window_center=decoded.window_center,
        window_width=decoded.window_width,
        modality=modality,
        prompt=prompt,
        source=ImageSource.GENERATED,
        source_format="generated",
        model_version=model_version,
        generation=generation,
        generated_for_round=round,
        reward_score=None
        if reward_score is None
        else min(max(float(reward_score), 0.0), 1.0),
    )
    image.file.save("image.png", ContentFile(full), save=False)
    image.preview.save(
        "preview.png", ContentFile(encode_preview_png(decoded)), save=False
    )
    image.save()
    return image


@transaction.atomic
def round_generating_create(
    *,
    name: str,
    created_by: Any,
    model_version: Any,
    compare_model_version: Any = None,
    raters_per_image: int = 1,
    control_share: float = 0.0,
    settings: dict[str, Any] | None = None,
    description: str = "",
    agreement_share: float = 0.0,
    repeat_share: float = 0.0,
    serving_policy: str = ServingPolicy.RANDOM,
    reward_model_version: Any = None,
    rescore_every: int | None = None,
) -> Round:
    """A round with no images yet, waiting for its generation job.

    It takes the serving design of ``round_create``, checked the same way; the
    agreement set is drawn when ``round_generated_fill`` puts the images in.
    """
    if not name.strip():
        raise DomainError("a round needs a name")
    if raters_per_image < 1:
        raise DomainError("raters_per_image must be at least 1")
    controls_needed(n_images=1, control_share=control_share)
    rescore_every = serving_check(
        agreement_share=agreement_share,
        repeat_share=repeat_share,
        serving_policy=serving_policy,
        reward_model_version=reward_model_version,
        rescore_every=rescore_every,
    )
    rnd = Round.objects.create(
        name=name.strip(),
        description=description,
        status=RoundStatus.GENERATING,
        raters_per_image=raters_per_image,
        control_share=control_share,
        agreement_share=agreement_share,
        repeat_share=repeat_share,
        serving_policy=serving_policy,
        reward_model_version=reward_model_version,
        rescore_every=rescore_every,
        model_version=model_version,
        compare_model_version=compare_model_version,
        settings=settings or {},
        created_by=created_by,
    )
    audit_record(action="round_generating_create", actor=created_by, obj=rnd)
    return rnd


@transaction.atomic
def round_generated_fill(
    *,
    round: Round,
    images: Sequence[Image],
    control_pool: Iterable[Image],
    actor: Any,
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
    chosen_ids = {im.pk for im in chosen}
    pool = [
        im
        for im in control_pool
        if im.source == ImageSource.REAL
        and not im.quarantined
        and im.pk not in chosen_ids
    ]
    n_controls = controls_needed(n_images=len(chosen), control_share=rnd.control_share)
    if n_controls > len(pool):
        raise DomainError(
            f"control_share {rnd.control_share:.0%} needs {n_controls} "
            f"real control images, but only {len(pool)} are available"
        )
    controls = secrets.SystemRandom().sample(pool, n_controls)
    RoundImage.objects.bulk_create(
        [
            RoundImage(
                round=rnd,
                image=im,
                is_control=is_control,
                shuffle_key=secrets.randbits(62),
            )
            for im, is_control in [(im, False) for im in chosen]
            + [(im, True) for im in controls]
        ],
        batch_size=2000,
    )
    n_agreement = round_items_mark_agreement(round=rnd)
    rnd.status = RoundStatus.DRAFT
    rnd.save(update_fields=["status", "updated_at"])
    audit_record(
        action="round_generated_fill",
        actor=actor,
        obj=rnd,
        detail={
            "images": len(chosen),
            "controls": n_controls,
            "agreement_items": n_agreement,
        },
    )
    if open_now:
        rnd = round_open(round=rnd, actor=actor)
    return rnd
