"""PNG and JPEG decoding, bombs and truncation, and the PNG encoders."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models_ml.engine.readers import (
    CorruptFileError,
    ReadLimits,
    TooLargeError,
    UnsupportedFormatError,
    encode_png,
    encode_preview_png,
    read_image_file,
)


def _save(tmp_path: Path, name: str, image: Image.Image, **kwargs: object) -> Path:
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


def _gradient(width: int = 64, height: int = 48) -> np.ndarray:
    return np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))


def test_grayscale_png_decodes_as_8bit(tmp_path: Path) -> None:
    path = _save(tmp_path, "g.png", Image.fromarray(_gradient()))
    (image,) = read_image_file(path)
    assert image.source_format == "png" and image.bit_depth == 8
    assert np.array_equal(image.pixels, _gradient())


def test_sixteen_bit_png_stays_uint16(tmp_path: Path) -> None:
    data = (np.arange(64 * 32, dtype=np.uint16).reshape(32, 64) * 31).astype(np.uint16)
    path = _save(tmp_path, "g16.png", Image.fromarray(data))
    (image,) = read_image_file(path)
    assert image.bit_depth == 16 and image.pixels.dtype == np.uint16
    assert np.array_equal(image.pixels, data)
    again = np.asarray(Image.open(io.BytesIO(encode_png(image))))
    assert np.array_equal(again, data)


def test_format_comes_from_magic_bytes_not_the_extension(tmp_path: Path) -> None:
    path = _save(tmp_path, "really_png.jpg", Image.fromarray(_gradient()), format="PNG")
    assert read_image_file(path)[0].source_format == "png"


def test_rgb_jpeg_decodes_as_rgb(tmp_path: Path) -> None:
    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[..., 2] = _gradient(40, 40)
    path = _save(tmp_path, "c.jpg", Image.fromarray(rgb), quality=95)
    (image,) = read_image_file(path)
    assert image.source_format == "jpeg" and image.is_rgb
    assert abs(int(image.pixels[..., 0].mean()) - 200) < 6


def test_rgb_file_with_equal_channels_becomes_grayscale(tmp_path: Path) -> None:
    gray = Image.fromarray(_gradient()).convert("RGB")
    (image,) = read_image_file(_save(tmp_path, "x.png", gray))
    assert image.pixels.ndim == 2


@pytest.mark.parametrize("mode", ["P", "LA", "RGBA", "CMYK", "1"])
def test_unusual_modes_become_gray_or_rgb(tmp_path: Path, mode: str) -> None:
    source = Image.fromarray(_gradient()).convert("RGB").convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    path = _save(tmp_path, f"m.{fmt.lower()}", source, format=fmt)
    (image,) = read_image_file(path)
    assert image.pixels.dtype in (np.uint8, np.uint16)
    assert image.pixels.ndim == 2 or image.pixels.shape[2] == 3


def test_transparent_pixels_become_black(tmp_path: Path) -> None:
    rgba = np.full((10, 10, 4), 255, np.uint8)
    rgba[:5, :, 3] = 0
    (image,) = read_image_file(_save(tmp_path, "a.png", Image.fromarray(rgba)))
    assert image.pixels[:5].max() == 0 and image.pixels[5:].min() == 255


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def test_png_decompression_bomb_is_rejected_from_its_header(tmp_path: Path) -> None:
    # 100k x 100k pixels declared; the file itself is tiny.
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * 1_000_000, 9)
    blob = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", body)
        + _png_chunk(b"IEND", b"")
    )
    path = tmp_path / "bomb.png"
    path.write_bytes(blob)
    with pytest.raises(TooLargeError, match="bomb.png"):
        read_image_file(path)


def test_pixel_limit_is_per_call_and_leaves_pillow_global_alone(
    tmp_path: Path,
) -> None:
    before = Image.MAX_IMAGE_PIXELS
    path = _save(tmp_path, "g.png", Image.fromarray(_gradient()))
    with pytest.raises(TooLargeError, match="pixels"):
        read_image_file(path, limits=ReadLimits(max_pixels=1000))
    assert Image.MAX_IMAGE_PIXELS == before


@pytest.mark.parametrize("name", ["t.png", "t.jpg"])
def test_truncated_image_is_rejected_naming_the_file(tmp_path: Path, name: str) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)
    full = _save(tmp_path, "full_" + name, Image.fromarray(noise))
    cut = tmp_path / name
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(CorruptFileError, match=name):
        read_image_file(cut)


def test_unknown_format_and_empty_file_are_rejected(tmp_path: Path) -> None:
    gif = _save(tmp_path, "a.gif", Image.fromarray(_gradient()))
    with pytest.raises(UnsupportedFormatError, match="a.gif"):
        read_image_file(gif)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(CorruptFileError, match="empty"):
        read_image_file(empty)


def test_file_over_the_size_limit_is_rejected(tmp_path: Path) -> None:
    path = _save(tmp_path, "g.png", Image.fromarray(_gradient()))
    with pytest.raises(TooLargeError, match="bytes"):
        read_image_file(path, limits=ReadLimits(max_file_bytes=10))


def test_encoders_drop_source_metadata(tmp_path: Path) -> None:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", "Doe^Jane")
    path = _save(tmp_path, "meta.png", Image.fromarray(_gradient()), pnginfo=info)
    (image,) = read_image_file(path)
    assert b"Doe^Jane" not in encode_png(image)
    assert b"Doe^Jane" not in encode_preview_png(image)


def test_preview_is_downscaled_and_windowed_to_8bit(tmp_path: Path) -> None:
    data = np.tile(np.linspace(1000, 3000, 300).astype(np.uint16), (200, 1))
    (image,) = read_image_file(_save(tmp_path, "w.png", Image.fromarray(data)))
    preview = Image.open(io.BytesIO(encode_preview_png(image, max_side=150)))
    assert preview.mode == "L" and preview.size == (150, 100)
    arr = np.asarray(preview)
    assert arr.min() < 10 and arr.max() > 245
