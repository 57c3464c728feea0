"""The prompts a generating round draws: pasted one a line, or sampled from a
dataset. One implementation for the Retraining page and
``POST /api/rounds/generate/``, so the same input gives the same round."""

from __future__ import annotations

import random

from annotations.errors import DomainError
from annotations.models import Dataset
from models_ml.engine.readers import InvalidModalityError, normalize_modality

from ..selectors import real_images_for_training

MAX_PASTED_PROMPTS = 500


def prompts_parse(text: str, *, modality: str = "") -> list[tuple[str, str]]:
    """One prompt a line, kept whole as the dataset's texts are ("CT: axial
    slice of the head"); its modality is the text before the first ':' when
    that names one, else ``modality``. Blank lines are skipped."""
    default = ""
    if modality.strip():
        try:
            default = normalize_modality(modality)
        except InvalidModalityError as exc:
            raise DomainError(f"modality: {exc}") from exc
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        head, sep, _ = line.partition(":")
        try:
            found = normalize_modality(head.strip()) if sep else ""
        except InvalidModalityError:
            found = ""
        if not (found or default):
            raise DomainError(
                f"line {number}: no modality; start it with one "
                "(“CT: axial head”) or give the modality of such lines"
            )
        pairs.append((line, found or default))
    if not pairs:
        raise DomainError("no prompt in the pasted text")
    if len(pairs) > MAX_PASTED_PROMPTS:
        raise DomainError(
            f"{len(pairs)} prompts; at most {MAX_PASTED_PROMPTS} may be pasted"
        )
    return pairs


def prompts_sample(
    *, dataset: Dataset, per_modality: int, modalities: list[str], seed: int | None
) -> list[tuple[str, str]]:
    """Up to ``per_modality`` distinct texts of the dataset's real images for
    each of ``modalities`` (every modality of the dataset when empty), drawn
    with ``seed`` (a fresh draw when None)."""
    images = real_images_for_training(dataset_ids=[dataset.pk])
    wanted = modalities or sorted(set(images.values_list("modality", flat=True)))
    if not wanted:
        raise DomainError(f"dataset {dataset.name!r} has no usable images")
    rng = random.Random(seed)  # noqa: S311 (a reproducible draw, not a secret)
    pairs = []
    for modality in wanted:
        texts = sorted(
            set(images.filter(modality=modality).values_list("prompt", flat=True))
        )
        if not texts:
            raise DomainError(
                f"dataset {dataset.name!r} has no usable {modality} images"
            )
        pairs += [
            (text, modality)
            for text in rng.sample(texts, min(per_modality, len(texts)))
        ]
    return pairs
