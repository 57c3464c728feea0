"""Modality names and the import cost of the readers package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from models_ml.engine.readers import (
    MODALITY_LABELS,
    InvalidModalityError,
    normalize_modality,
)


@pytest.mark.parametrize(
    ("raw", "slug"),
    [
        ("OCT", "oct"),
        ("Fundus", "fundus"),
        ("X-Ray", "chest_xray"),
        ("CXR", "chest_xray"),
        ("chest x-ray", "chest_xray"),
        ("CR", "chest_xray"),
        ("DX", "chest_xray"),
        ("CT", "ct"),
        ("chest CT", "ct"),
        ("Brain MRI", "brain_mri"),
        ("Breast MRI", "breast_mri"),
        ("MRI", "mri"),
        (" mr ", "mri"),
        ("Knee Ultrasound!", "knee_ultrasound"),
        ("PET/CT", "pet_ct"),
    ],
)
def test_known_names_and_aliases_map_to_slugs(raw: str, slug: str) -> None:
    assert normalize_modality(raw) == slug


@pytest.mark.parametrize("raw", ["", "   ", "---", "é"])
def test_empty_modality_is_an_error(raw: str) -> None:
    with pytest.raises(InvalidModalityError):
        normalize_modality(raw)


def test_every_canonical_slug_has_a_label_and_maps_to_itself() -> None:
    for slug, label in MODALITY_LABELS.items():
        assert label
        assert normalize_modality(slug) == slug
        assert normalize_modality(label) == slug


def test_importing_readers_loads_no_torch_django_pydicom_or_nibabel() -> None:
    code = (
        "import sys, models_ml.engine.readers; "
        "print(sorted(m for m in ('torch', 'django', 'pydicom', 'nibabel') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == "[]"
