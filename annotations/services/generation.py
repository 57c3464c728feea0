"""Generated images as Image rows, and rounds whose images a job generates.

Pictures come from the engine as 8-bit RGB; those of a grayscale modality are
stored as one channel (their luminance), as imports store them.
The PNG and the preview go through the readers' encoders, so a generated
image is stored exactly like an imported one.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from django.core.files.base import ContentFile

from models_ml.engine.readers import DecodedImage, encode_png, encode_preview_png

from ..models import (
    Image,
    ImageSource,
    Round,
)
from ..presentation import modality_is_colour


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
