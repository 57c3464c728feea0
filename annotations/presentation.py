"""One presentation per round: every image a physician sees goes through here.

A round shows each image as a *display rendition*: the same pixel size for
every image of the round, the same channel layout and bit depth for every
image of a modality (grayscale modalities as 16-bit single-channel, colour
ones as 8-bit RGB), an uncompressed PNG with no metadata chunks (so a file's
length depends on its size and layout alone), and one value scale per
modality: CT in Hounsfield units on a fixed range, every other grayscale
modality as relative intensity 0..1. Real controls and generated images of
every model version are resampled with the same filter, so nothing in the
file, its URL, its length or the fields beside it tells one source from
another. The viewer applies window/level on these values in the browser.

Renditions are written when a round opens (``round_display_prepare``) and,
for an item added later, on first request; they live under
``display/<round>/<size>/`` in the media storage.
"""

from __future__ import annotations

import io
import logging
import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from .errors import DomainError
from .models import Image, ImageSource, Round, RoundImage

logger = logging.getLogger(__name__)

DISPLAY_SIZE_DEFAULT = 256
"""A round with no generated images shows its real images at this size."""
DISPLAY_SIZE_MIN = 16
DISPLAY_SIZE_MAX = 1024

COLOUR_MODALITIES = frozenset({"fundus", "histopathology", "dermoscopy", "endoscopy"})
"""Modalities shown in colour; any other is shown in colour only when one of
its real images is RGB (a new modality a dataset brings)."""

CT_RANGE_HU = (-1024.0, 3071.0)
"""The values a CT rendition can hold; air below, metal above are clipped."""
CT_REFERENCE_WINDOW = (40.0, 400.0)
"""The window (centre, width) in HU that an 8-bit CT without Hounsfield units
(a PNG import, a generated image) is taken to span when no real CT with
units is stored to take the median window from."""

CT_PRESETS: tuple[tuple[str, str, float, float], ...] = (
    ("lung", "Lung", -600.0, 1500.0),
    ("mediastinum", "Mediastinum", 40.0, 400.0),
    ("bone", "Bone", 400.0, 1800.0),
    ("brain", "Brain", 40.0, 80.0),
)
"""CT window presets (key, label, centre, width) in HU."""

_RESAMPLE = PILImage.Resampling.LANCZOS


@dataclass(frozen=True)
class Presentation:
    """How every image of one modality in a round is shown."""

    size: int
    colour: bool
    unit: str
    offset: float
    step: float
    # HU window an 8-bit CT without units is taken to span (CT only).
    reference: tuple[float, float] = CT_REFERENCE_WINDOW

    @property
    def channels(self) -> int:
        return 3 if self.colour else 1

    @property
    def bit_depth(self) -> int:
        return 8 if self.colour else 16

    @property
    def presets(self) -> tuple[tuple[str, str, float, float], ...]:
        return CT_PRESETS if self.unit == "HU" else ()

    def fields(self) -> dict[str, Any]:
        """What the page and the API say about a rendition; equal for every
        image of a modality in a round."""
        return {
            "width": self.size,
            "height": self.size,
            "channels": self.channels,
            "bit_depth": self.bit_depth,
            "value_unit": self.unit,
            "value_offset": self.offset,
            "value_step": self.step,
        }


def modality_is_colour(modality: str) -> bool:
    if modality in COLOUR_MODALITIES:
        return True
    return Image.objects.filter(
        modality=modality, source=ImageSource.REAL, channels=3
    ).exists()


def presentation_for(*, size: int, modality: str) -> Presentation:
    if modality_is_colour(modality):
        return Presentation(size=size, colour=True, unit="", offset=0.0, step=1 / 255)
    if modality == "ct":
        low, high = CT_RANGE_HU
        return Presentation(
            size=size,
            colour=False,
            unit="HU",
            offset=low,
            step=(high - low) / 65535,
            reference=_reference_window(modality),
        )
    return Presentation(size=size, colour=False, unit="", offset=0.0, step=1 / 65535)


def _generated_sizes(round: Round) -> list[int]:
    return sorted(
        set(
            RoundImage.objects.filter(
                round=round, image__source=ImageSource.GENERATED
            ).values_list("image__width", flat=True)
        )
    )


def round_display_size(round: Round) -> int:
    """The round's display size: the admin's choice, else the smallest
    generator resolution in the round, else ``DISPLAY_SIZE_DEFAULT``."""
    if round.display_size:
        return int(round.display_size)
    sizes = _generated_sizes(round)
    return max(DISPLAY_SIZE_MIN, sizes[0]) if sizes else DISPLAY_SIZE_DEFAULT


def display_size_check(round: Round) -> None:
    """Refuse a display size larger than a generator of the round reaches:
    its images would be upscaled and stand out."""
    if not round.display_size:
        return
    size = int(round.display_size)
    if not DISPLAY_SIZE_MIN <= size <= DISPLAY_SIZE_MAX:
        raise DomainError(
            f"display_size must be between {DISPLAY_SIZE_MIN} and {DISPLAY_SIZE_MAX}"
        )
    sizes = _generated_sizes(round)
    if sizes and sizes[0] < size:
        raise DomainError(
            f"display_size {size} is larger than the {sizes[0]} px images a "
            f"generator of this round makes; use at most {sizes[0]}"
        )


def _reference_window(modality: str) -> tuple[float, float]:
    """The median HU window of stored real images with units (CT)."""
    centres, widths = [], []
    rows = (
        Image.objects.filter(modality=modality, source=ImageSource.REAL)
        .exclude(header__value_step=None)
        .exclude(window_width=None)
        .values_list("window_center", "window_width", "header")[:1000]
    )
    for center, width, header in rows:
        step = (header or {}).get("value_step")
        offset = (header or {}).get("value_offset")
        if not isinstance(step, int | float) or not isinstance(offset, int | float):
            continue
        if (header or {}).get("inverted"):
            continue
        # Both are set together, and rows without a window are excluded.
        assert center is not None and width is not None
        centres.append(offset + step * center)
        widths.append(step * width)
    if not centres:
        return CT_REFERENCE_WINDOW
    return statistics.median(centres), statistics.median(widths)


def _read_stored(image: Image) -> np.ndarray:
    with image.file.open("rb") as handle:
        picture = PILImage.open(io.BytesIO(handle.read()))
        picture.load()
    if picture.mode in ("I;16", "I;16B", "I"):
        return np.asarray(picture, dtype=np.uint16)
    if picture.mode == "RGB":
        return np.asarray(picture, dtype=np.uint8)
    return np.asarray(picture.convert("L"), dtype=np.uint8)


def _values(image: Image, stored: np.ndarray, spec: Presentation) -> np.ndarray:
    """Grayscale pixels in the presentation's units, float32."""
    if stored.ndim == 3:
        # A colour picture of a grayscale modality: its luminance.
        stored = np.asarray(PILImage.fromarray(stored).convert("L"), dtype=np.uint8)
    full = 65535.0 if stored.dtype == np.uint16 else 255.0
    raw = stored.astype(np.float32)
    if spec.unit != "HU":
        return raw / np.float32(full)
    header = image.header or {}
    step, offset = header.get("value_step"), header.get("value_offset")
    if isinstance(step, int | float) and isinstance(offset, int | float):
        if header.get("inverted"):
            raw = np.float32(full) - raw
        return np.float32(offset) + np.float32(step) * raw
    center, width = spec.reference
    return np.float32(center - width / 2) + raw * np.float32(width / full)


def _square(picture: PILImage.Image) -> PILImage.Image:
    """The centred square crop: every rendition is square, as generators are."""
    w, h = picture.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return picture.crop((left, top, left + side, top + side))


def _png(picture: PILImage.Image) -> bytes:
    buffer = io.BytesIO()
    # Uncompressed: the length depends on size and layout only, never on the
    # content. A fresh image carries no text, time or colour-profile chunks.
    picture.save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def render_display(image: Image, spec: Presentation) -> bytes:
    """The display rendition of ``image`` under ``spec``, as PNG bytes."""
    stored = _read_stored(image)
    size = (spec.size, spec.size)
    if spec.colour:
        rgb = stored if stored.ndim == 3 else np.repeat(stored[..., None], 3, axis=2)
        if rgb.dtype != np.uint8:
            rgb = np.clip(np.rint(rgb / 257.0), 0, 255).astype(np.uint8)
        picture = _square(PILImage.fromarray(np.ascontiguousarray(rgb)))
        return _png(picture.resize(size, _RESAMPLE))
    values = _values(image, stored, spec)
    picture = _square(
        PILImage.fromarray(np.ascontiguousarray(values, dtype=np.float32))
    )
    resized = np.asarray(picture.resize(size, _RESAMPLE), dtype=np.float32)
    codes = np.clip(np.rint((resized - spec.offset) / spec.step), 0, 65535)
    return _png(PILImage.fromarray(codes.astype("<u2")))


def _path(round: Round, size: int, image: Image) -> str:
    return f"display/{round.pk}/{size}/{image.uid.hex}.png"


class _Specs:
    """Presentations of one round, one per modality, computed once."""

    def __init__(self, round: Round) -> None:
        self.size = round_display_size(round)
        self._by_modality: dict[str, Presentation] = {}

    def __call__(self, modality: str) -> Presentation:
        if modality not in self._by_modality:
            self._by_modality[modality] = presentation_for(
                size=self.size, modality=modality
            )
        return self._by_modality[modality]


PRESENTATION_TTL_S = 60


def round_presentation(round: Round, modality: str) -> Presentation:
    """The presentation of ``modality`` in ``round``; cached for a minute, as
    it is asked for with every image served."""
    key = f"presentation:{round.pk}:{round.display_size or 0}:{modality}"

    def compute() -> Presentation:
        return presentation_for(size=round_display_size(round), modality=modality)

    presentation = cache.get_or_set(key, compute, PRESENTATION_TTL_S)
    assert presentation is not None  # what compute() returned, or its cached copy
    return presentation


def display_bytes(round: Round, image: Image) -> bytes:
    """The rendition of ``image`` in ``round``, written on first request."""
    spec = round_presentation(round, image.modality)
    path = _path(round, spec.size, image)
    if default_storage.exists(path):
        with default_storage.open(path, "rb") as handle:
            return handle.read()
    data = render_display(image, spec)
    _store(path, data)
    return data


def _store(path: str, data: bytes) -> None:
    if default_storage.exists(path):
        return
    try:
        default_storage.save(path, ContentFile(data))
    except FileExistsError:  # pragma: no cover - a concurrent first request
        pass


def round_display_prepare(round: Round) -> int:
    """Write every rendition of the round that is not there yet; returns how
    many were written. An image whose file cannot be read is logged and left
    to fail on its own request, so one bad file does not stop the round."""
    specs = _Specs(round)
    written = 0
    images = Image.objects.filter(round_items__round=round).only(
        "uid", "file", "modality", "header"
    )
    for image in images.iterator(chunk_size=200):
        path = _path(round, specs.size, image)
        if default_storage.exists(path):
            continue
        try:
            _store(path, render_display(image, specs(image.modality)))
        except (OSError, ValueError) as exc:
            logger.warning("round %s: no rendition of %s (%s)", round.pk, image, exc)
            continue
        written += 1
    return written
