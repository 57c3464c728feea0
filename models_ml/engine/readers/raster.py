"""PNG and JPEG through Pillow, normalised to L, I;16 or RGB pixels."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from models_ml.engine.readers.errors import (
    CorruptFileError,
    TooLargeError,
    UnsupportedFormatError,
)
from models_ml.engine.readers.image import DecodedImage
from models_ml.engine.readers.limits import ReadLimits

_FORMATS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg"}


def _open_checked(path: Path, limits: ReadLimits) -> Image.Image:
    """Open lazily and refuse oversized images before any pixel is decoded."""
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb warning uses a process-wide threshold; the size
            # check below applies this call's limit instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path, formats=("PNG", "JPEG", "MPO"))
    except Image.DecompressionBombError as exc:
        raise TooLargeError(path, f"image dimensions are too large ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedFormatError(path, "not a readable PNG or JPEG") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise CorruptFileError(path, f"cannot parse image header: {exc}") from exc
    width, height = image.size
    if width < 1 or height < 1:
        image.close()
        raise CorruptFileError(path, f"image has empty size {width}x{height}")
    if width * height > limits.max_pixels:
        image.close()
        raise TooLargeError(
            path,
            f"image is {width}x{height} = {width * height} pixels, "
            f"more than the limit of {limits.max_pixels}",
        )
    return image


def _to_array(image: Image.Image) -> tuple[np.ndarray, int]:
    """Convert any Pillow mode to uint8 L/RGB or uint16 grayscale."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(image).astype(np.uint16), 16
    if mode in ("I", "F"):
        arr = np.asarray(image)
        low, high = float(arr.min()), float(arr.max())
        if mode == "I" and low >= 0 and high <= 65535:
            return arr.astype(np.uint16), 16
        span = max(high - low, 1e-12)
        scaled = np.rint((arr.astype(np.float64) - low) * (65535.0 / span))
        return scaled.astype(np.uint16), 16
    if mode in ("1", "L"):
        return np.asarray(image.convert("L")), 8
    if mode in ("LA", "La", "PA", "RGBA", "RGBa") or (
        mode == "P" and "transparency" in image.info
    ):
        # Transparent regions become black, the background of medical images.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba).convert("RGB")
    elif mode != "RGB":
        image = image.convert("RGB")
    rgb = np.asarray(image)
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(
        rgb[..., 0], rgb[..., 2]
    ):
        return np.ascontiguousarray(rgb[..., 0]), 8
    return rgb, 8


def read_raster(path: Path, limits: ReadLimits) -> list[DecodedImage]:
    """Decode a PNG or JPEG file into one ``DecodedImage``."""
    image = _open_checked(path, limits)
    fmt = _FORMATS.get(image.format or "", "")
    try:
        image.verify()
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types here
        raise CorruptFileError(path, f"image data fails verification: {exc}") from exc
    finally:
        image.close()
    image = _open_checked(path, limits)
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        pixels, bit_depth = _to_array(image)
    except Image.DecompressionBombError as exc:
        raise TooLargeError(path, f"image is too large to decode ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise CorruptFileError(
            path, f"image data is truncated or corrupt: {exc}"
        ) from exc
    finally:
        image.close()
    if bit_depth == 16:
        low, high = float(pixels.min()), float(pixels.max())
        center, width = (low + high) / 2.0, max(high - low, 1.0)
    else:
        center, width = 127.5, 256.0
    return [
        DecodedImage(
            pixels=np.ascontiguousarray(pixels),
            bit_depth=bit_depth,
            window_center=center,
            window_width=width,
            source_format=fmt or "png",
            metadata={"width": pixels.shape[1], "height": pixels.shape[0]},
        )
    ]
