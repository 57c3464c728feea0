"""One way to open an image file for training, scoring and metrics.

Every format the shared readers know (PNG, JPEG, DICOM, NIfTI) is decoded by
``read_image_file`` and windowed to 8-bit with ``to_display_uint8``, so a 16-bit
CT trains and scores the way a viewer shows it. Reader errors become
``DatasetError`` so callers handle one error type.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .errors import DatasetError
from .readers import ReaderError, read_image_file, to_display_uint8


def load_frames(path: str | Path) -> list[Image.Image]:
    """Every 2-D picture in the file: one for PNG/JPEG, all DICOM frames,
    all non-constant NIfTI slices; 8-bit grayscale (``L``) or ``RGB``."""
    try:
        decoded = read_image_file(path)
    except ReaderError as exc:
        raise DatasetError(str(exc)) from exc
    if not decoded:
        raise DatasetError(f"{path}: file holds no picture")
    return [
        Image.fromarray(np.ascontiguousarray(to_display_uint8(image)))
        for image in decoded
    ]


def load_pil(path: str | Path) -> Image.Image:
    """One picture of the file: the middle frame or slice of a multi-frame one,
    which for a volume is the most representative."""
    frames = load_frames(path)
    return frames[len(frames) // 2]
