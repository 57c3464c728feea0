"""Canonical modality slugs, their aliases and display names."""

from __future__ import annotations

import re

from models_ml.engine.readers.errors import InvalidModalityError

MODALITY_LABELS: dict[str, str] = {
    "oct": "OCT",
    "fundus": "Fundus",
    "chest_xray": "Chest X-ray",
    "ct": "CT",
    "brain_mri": "Brain MRI",
    "breast_mri": "Breast MRI",
    "mri": "MRI",
    "ultrasound": "Ultrasound",
    "histopathology": "Histopathology",
    "extremity_x_ray": "Extremity X-ray",
}

# Keys are lowercase with everything but letters and digits removed, so that
# "X-Ray", "x ray" and "XRAY" meet the same entry.
_ALIASES: dict[str, str] = {
    "oct": "oct",
    "opticalcoherencetomography": "oct",
    "opt": "oct",
    "fundus": "fundus",
    "fundusphotography": "fundus",
    "retinalfundus": "fundus",
    "cfp": "fundus",
    "xray": "chest_xray",
    "cxr": "chest_xray",
    "chestxray": "chest_xray",
    "chestradiograph": "chest_xray",
    "cr": "chest_xray",
    "dx": "chest_xray",
    "ct": "ct",
    "chestct": "ct",
    "ctchest": "ct",
    "brainmri": "brain_mri",
    "brainmr": "brain_mri",
    "breastmri": "breast_mri",
    "breastmr": "breast_mri",
    "mri": "mri",
    "mr": "mri",
}

_MAX_SLUG = 40


def normalize_modality(raw: str) -> str:
    """Return the canonical slug of a modality name.

    Known names and aliases map to the slugs in ``MODALITY_LABELS``; any other
    name becomes a lowercase ``[a-z0-9_]`` slug so new modalities can be added
    by data alone. Raises ``InvalidModalityError`` when nothing usable remains.
    """
    if not isinstance(raw, str):
        raise InvalidModalityError(f"modality must be text, got {type(raw).__name__}")
    text = raw.strip()
    key = re.sub(r"[^a-z0-9]", "", text.lower())
    if key in _ALIASES:
        return _ALIASES[key]
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:_MAX_SLUG].strip("_")
    if not slug:
        raise InvalidModalityError(f"modality {raw!r} is empty or has no letters")
    return slug


def modality_label(slug: str) -> str:
    """Display name of a slug; unknown slugs get a readable title."""
    return MODALITY_LABELS.get(slug) or slug.replace("_", " ").capitalize()
