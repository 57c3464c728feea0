"""The decoded image every reader returns, and its PNG encodings."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image


@dataclass
class DecodedImage:
    """One 2-D picture: grayscale HxW or RGB HxWx3 pixels plus display hints.

    ``window_center`` and ``window_width`` are in the units of ``pixels``, so a
    viewer can apply them without knowing the source format.
    """

    pixels: np.ndarray
    bit_depth: int
    window_center: float
    window_width: float
    source_format: str
    frame_index: int | None = None
    modality_hint: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    burned_in_annotation: bool = False
    # Why the image must be quarantined until an admin has looked (burned-in
    # text declared, or unknown for a modality that often has it), or "".
    quarantine_reason: str = ""

    def __post_init__(self) -> None:
        arr = self.pixels
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
            raise ValueError(f"pixels must be HxW or HxWx3, got shape {arr.shape}")
        expected = {8: np.uint8, 16: np.uint16}.get(self.bit_depth)
        if expected is None or arr.dtype != expected:
            raise ValueError(
                f"bit_depth {self.bit_depth} does not match dtype {arr.dtype}"
            )
        if arr.ndim == 3 and self.bit_depth != 8:
            raise ValueError("RGB pixels must be 8-bit")
        if self.window_width <= 0:
            raise ValueError("window_width must be positive")

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def is_rgb(self) -> bool:
        return self.pixels.ndim == 3


def window_to_uint8(
    pixels: np.ndarray, center: float, width: float
) -> npt.NDArray[np.uint8]:
    """Map ``[center - width/2, center + width/2]`` linearly onto 0..255."""
    low = center - width / 2.0
    scaled = (pixels.astype(np.float32) - np.float32(low)) * np.float32(
        255.0 / max(width, 1e-6)
    )
    # (numpy types np.rint of a float32 array as returning Any)
    out: npt.NDArray[np.uint8] = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return out


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # A fresh Image carries no text, EXIF or ICC chunks, so nothing from the
    # source header can leak into the stored file.
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def encode_png(img: DecodedImage) -> bytes:
    """Encode the full-range pixels as PNG (16-bit grayscale when bit_depth 16)."""
    pixels = np.ascontiguousarray(img.pixels)
    if img.bit_depth == 16:
        image = Image.fromarray(pixels.astype("<u2", copy=False))
    else:
        image = Image.fromarray(pixels)
    return _png_bytes(image)


def to_display_uint8(img: DecodedImage) -> np.ndarray:
    """The pixels as 8-bit with the default window applied."""
    if img.is_rgb:
        return img.pixels
    if img.bit_depth == 8 and img.window_center == 127.5 and img.window_width == 256:
        return img.pixels
    return window_to_uint8(img.pixels, img.window_center, img.window_width)


def encode_preview_png(img: DecodedImage, *, max_side: int = 1024) -> bytes:
    """Encode an 8-bit, windowed, at most ``max_side`` pixels wide/high PNG."""
    if max_side < 1:
        raise ValueError("max_side must be at least 1")
    display = to_display_uint8(img)
    image = Image.fromarray(np.ascontiguousarray(display))
    if max(image.size) > max_side:
        scale = max_side / max(image.size)
        size = (
            max(1, round(image.width * scale)),
            max(1, round(image.height * scale)),
        )
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return _png_bytes(image)
