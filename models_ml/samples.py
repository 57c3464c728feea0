"""Sample grids: a few images per prompt on fixed seeds, made when a diffusion
version is created, so that versions can be compared by eye.

Every version draws the same prompts on the same seeds with the platform's
default sampler, so the grids of a parent and its children line up. Grayscale
modalities are drawn gray, as their generated images are stored. A grid that
cannot be made is logged and left out; the version stands without it.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction

from annotations.models import Image, ImageSource
from annotations.presentation import modality_is_colour

from .models import ModelKind, ModelVersion, VersionSample

logger = logging.getLogger(__name__)

SAMPLE_SEEDS_FROM = 0
"""Grid images use seeds 0, 1, 2, ...: the same for every version."""


def sample_prompts(version: ModelVersion, limit: int) -> list[tuple[str, str]]:
    """(modality, prompt) pairs for the grid: the most common prompts of the
    version's dataset (or its nearest ancestor's), in a stable order."""
    node: ModelVersion | None = version
    while node is not None and node.dataset_id is None:
        node = node.parent
    if node is None or node.dataset_id is None:
        return []
    counts = Counter(
        Image.objects.filter(
            dataset_id=node.dataset_id, source=ImageSource.REAL, quarantined=False
        ).values_list("modality", "prompt")
    )
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return sorted(pair for pair, _ in ranked[:limit])


def _row_png(pictures: list[Any], *, colour: bool) -> bytes:
    from PIL import Image as PILImage

    mode = "RGB" if colour else "L"
    tiles = [p.convert(mode) for p in pictures]
    side = max(t.width for t in tiles)
    gap = max(1, side // 16)
    row = PILImage.new(mode, (len(tiles) * side + (len(tiles) - 1) * gap, side))
    for i, tile in enumerate(tiles):
        row.paste(tile.resize((side, side)), (i * (side + gap), 0))
    buffer = io.BytesIO()
    row.save(buffer, format="PNG")
    return buffer.getvalue()


def version_samples_make(
    version: ModelVersion, *, per_prompt: int | None = None, device: str = "cpu"
) -> int:
    """Draw the version's sample grid (one row per prompt); returns the
    number of rows stored. Rows already there are kept."""
    from .engine import GenerationRequest, load_backend

    per_prompt = settings.MODEL_SAMPLE_IMAGES if per_prompt is None else per_prompt
    if version.kind != ModelKind.DIFFUSION or per_prompt < 1:
        return 0
    have = set(version.samples.values_list("prompt", flat=True))
    wanted = [
        (modality, prompt)
        for modality, prompt in sample_prompts(version, settings.MODEL_SAMPLE_PROMPTS)
        if prompt not in have
    ]
    if not wanted:
        return 0
    try:
        backend = load_backend(version.path, device=device)
        seeds = list(range(SAMPLE_SEEDS_FROM, SAMPLE_SEEDS_FROM + per_prompt))
        requests = [
            GenerationRequest(prompt=prompt, modality=modality, seed=seed)
            for modality, prompt in wanted
            for seed in seeds
        ]
        pictures = [g.image for g in backend.generate(requests)]
    except Exception:  # a grid is a convenience: never fail the version
        logger.exception("version %s: no sample grid", version.pk)
        return 0
    with transaction.atomic():
        for i, (modality, prompt) in enumerate(wanted):
            row = pictures[i * per_prompt : (i + 1) * per_prompt]
            sample = VersionSample(
                version=version, modality=modality, prompt=prompt, seeds=seeds
            )
            sample.file.save(
                "grid.png",
                ContentFile(_row_png(row, colour=modality_is_colour(modality))),
                save=True,
            )
    return len(wanted)
