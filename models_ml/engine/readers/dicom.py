"""DICOM pixel decoding through pydicom and its pixel-data plugins.

Grayscale frames keep their full dynamic range: modality values (after the
Modality LUT or rescale) are mapped linearly onto uint16 using the file's
value range, and the display window is converted into those units. 8-bit
data without a rescale stays 8-bit. Colour data becomes RGB uint8.
"""

from __future__ import annotations

import warnings
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models_ml.engine.readers.deid import (
    burned_in_reason,
    first_number,
    is_burned_in,
    kept_header,
)
from models_ml.engine.readers.errors import (
    CorruptFileError,
    ReaderError,
    TooLargeError,
    UnsupportedFormatError,
)
from models_ml.engine.readers.image import DecodedImage
from models_ml.engine.readers.limits import DEFAULT_LIMITS, ReadLimits
from models_ml.engine.readers.modality import normalize_modality

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

_DEFLATED = "1.2.840.10008.1.2.1.99"
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_CHUNK = 1 << 20


def looks_like_headerless_dicom(head: bytes) -> bool:
    """Guess whether bytes start a DICOM dataset written without a preamble.

    Such files begin with a group 0x0002 or 0x0008 tag in either byte order
    followed by an explicit VR or a small implicit length.
    """
    if len(head) < 8:
        return False
    if head[:2] in (b"\x02\x00", b"\x08\x00"):
        element = int.from_bytes(head[2:4], "little")
    elif head[:2] in (b"\x00\x02", b"\x00\x08"):
        element = int.from_bytes(head[2:4], "big")
    else:
        return False
    return element < 0x0100 and (head[4:6].isalpha() or head[6:8] == b"\x00\x00")


def _check_deflated_size(path: Path, limits: ReadLimits) -> None:
    """Inflate a deflated dataset in bounded chunks before pydicom inflates it
    all at once, so a deflate bomb costs at most ``max_decompressed_bytes``."""
    from pydicom.filereader import read_file_meta_info

    try:
        meta = read_file_meta_info(path)
    except Exception:  # noqa: BLE001 - pydicom will report the real problem
        return
    if str(meta.get("TransferSyntaxUID", "")) != _DEFLATED:
        return
    group_length = meta.get("FileMetaInformationGroupLength")
    if group_length is None:
        raise CorruptFileError(path, "deflated DICOM without a meta group length")
    offset = 128 + 4 + 12 + int(group_length)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    with path.open("rb") as handle:
        handle.seek(offset)
        while chunk := handle.read(_CHUNK):
            data = inflater.decompress(chunk, _CHUNK)
            while True:
                total += len(data)
                if total > limits.max_decompressed_bytes:
                    raise TooLargeError(
                        path,
                        "deflated DICOM expands beyond "
                        f"{limits.max_decompressed_bytes} bytes",
                    )
                if not inflater.unconsumed_tail:
                    break
                data = inflater.decompress(inflater.unconsumed_tail, _CHUNK)


def read_dicom_dataset(
    path: Path, *, limits: ReadLimits = DEFAULT_LIMITS, headerless: bool = False
) -> Dataset:
    """Parse a DICOM file (pixels stay encoded until ``decode_dicom``)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not headerless:
        _check_deflated_size(path, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=headerless)
    except InvalidDicomError as exc:
        raise UnsupportedFormatError(path, f"not a DICOM file: {exc}") from exc
    except ReaderError:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types here
        raise CorruptFileError(path, f"DICOM header cannot be parsed: {exc}") from exc
    if headerless and "TransferSyntaxUID" not in ds.file_meta:
        _set_transfer_syntax(ds)
    return ds


def _set_transfer_syntax(ds: Dataset) -> None:
    """Record the encoding a headerless file was parsed with, so its pixels
    can be decoded."""
    from pydicom import uid

    implicit, little = ds.original_encoding
    if implicit is None or little is None:
        return
    if implicit:
        ds.file_meta.TransferSyntaxUID = uid.ImplicitVRLittleEndian
    else:
        ds.file_meta.TransferSyntaxUID = (
            uid.ExplicitVRLittleEndian if little else uid.ExplicitVRBigEndian
        )


def _int_attr(ds: Dataset, keyword: str, path: Path, default: int | None = None) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = ds.get(keyword, default)
    if value is None or value == "":
        if default is not None:
            return default
        raise CorruptFileError(path, f"DICOM image lacks {keyword}")
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise CorruptFileError(
            path, f"DICOM {keyword} is not a number: {value!r}"
        ) from exc


def _check_size(ds: Dataset, path: Path, limits: ReadLimits) -> int:
    rows = _int_attr(ds, "Rows", path)
    columns = _int_attr(ds, "Columns", path)
    frames = _int_attr(ds, "NumberOfFrames", path, default=1) or 1
    samples = _int_attr(ds, "SamplesPerPixel", path, default=1)
    bits = _int_attr(ds, "BitsAllocated", path, default=16)
    if rows < 1 or columns < 1 or frames < 1 or samples not in (1, 3, 4):
        raise CorruptFileError(
            path,
            f"DICOM image has impossible geometry {rows}x{columns}, "
            f"{frames} frames, {samples} samples per pixel",
        )
    if rows * columns > limits.max_pixels:
        raise TooLargeError(
            path,
            f"DICOM frame is {rows}x{columns} pixels, more than {limits.max_pixels}",
        )
    if frames > limits.max_frames:
        raise TooLargeError(
            path, f"DICOM has {frames} frames, more than {limits.max_frames}"
        )
    decoded = rows * columns * frames * samples * max(1, (bits + 7) // 8)
    if decoded > limits.max_decoded_bytes:
        raise TooLargeError(
            path,
            f"DICOM pixel data decodes to {decoded} bytes, "
            f"more than {limits.max_decoded_bytes}",
        )
    return frames


def _decode_all(ds: Dataset, path: Path) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ds.pixel_array
    except (NotImplementedError, ImportError) as exc:
        raise UnsupportedFormatError(
            path, f"no decoder for this DICOM transfer syntax: {_short(exc)}"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - decoder plugins raise many types
        raise CorruptFileError(
            path, f"DICOM pixel data cannot be decoded: {_short(exc)}"
        ) from exc


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:240]


def _select(count: int, max_slices: int | None) -> list[int]:
    if max_slices is None or count <= max_slices:
        return list(range(count))
    if max_slices < 1:
        return []
    picks = np.linspace(0, count - 1, num=max_slices)
    return sorted({int(round(p)) for p in picks})


def _functional_item(ds: Dataset, frame: int, sequence: str) -> Dataset | None:
    """An item of ``sequence`` from per-frame, else shared, functional groups."""
    for groups, index in (
        ("PerFrameFunctionalGroupsSequence", frame),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        items = ds.get(groups)
        if items and len(items) > index:
            inner = items[index].get(sequence)
            if inner:
                first: Dataset = inner[0]
                return first
    return None


def _modality_values(ds: Dataset, raw: np.ndarray, frame: int) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut

    if "ModalityLUTSequence" in ds or "RescaleSlope" in ds:
        return np.asarray(apply_modality_lut(raw, ds), dtype=np.float64)
    item = _functional_item(ds, frame, "PixelValueTransformationSequence")
    if item is not None and "RescaleSlope" in item:
        slope = float(item.RescaleSlope)
        intercept = float(item.get("RescaleIntercept", 0.0) or 0.0)
        return raw.astype(np.float64) * slope + intercept
    return raw.astype(np.float64)


def _header_window(ds: Dataset, frame: int) -> tuple[float, float] | None:
    sources = [ds]
    item = _functional_item(ds, frame, "FrameVOILUTSequence")
    if item is not None:
        sources.insert(0, item)
    for source in sources:
        center = first_number(source.get("WindowCenter"))
        width = first_number(source.get("WindowWidth"))
        if center is not None and width is not None and width > 0:
            return center, width
    lut = ds.get("VOILUTSequence")
    if lut:
        descriptor = lut[0].get("LUTDescriptor")
        if descriptor and len(descriptor) == 3:
            entries = int(descriptor[0]) or 65536
            first = float(descriptor[1])
            # A linear window over the LUT's input range approximates it.
            return first + entries / 2.0, float(entries)
    return None


def _robust_window(values: np.ndarray) -> tuple[float, float]:
    flat = values.ravel()
    step = max(1, flat.size // 1_000_000)
    low, high = np.percentile(flat[::step], [0.5, 99.5])
    if high <= low:
        low, high = float(flat.min()), float(flat.max())
    return (float(low) + float(high)) / 2.0, max(float(high) - float(low), 1.0)


def _modality_hint(ds: Dataset) -> str | None:
    modality = str(ds.get("Modality", "") or "").strip().upper()
    body = str(ds.get("BodyPartExamined", "") or "").strip().upper()
    if not modality:
        return None
    if modality == "MR":
        if body in ("BRAIN", "HEAD"):
            return "brain_mri"
        if body == "BREAST":
            return "breast_mri"
        return "mri"
    if modality in ("CR", "DX", "RG", "DR"):
        return "chest_xray" if body in ("", "CHEST", "THORAX", "LUNG") else "xray"
    if modality == "OPT":
        return "oct"
    if modality == "OP":
        return "fundus"
    try:
        return normalize_modality(modality)
    except ValueError:
        return None


def _to_rgb8(frame: np.ndarray, ds: Dataset) -> np.ndarray:
    from pydicom.pixels import apply_color_lut

    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric == "PALETTE COLOR":
        descriptor = ds.get("RedPaletteColorLookupTableDescriptor")
        depth = int(descriptor[2]) if descriptor else 8
        frame = apply_color_lut(frame, ds)[..., :3]
        # Some writers store 8-bit entries in 16-bit LUTs; only true 16-bit
        # entries need dividing down.
        if depth > 8 and int(frame.max()) > 255:
            return (frame.astype(np.uint32) // 257).astype(np.uint8)
        return frame.astype(np.uint8)
    if frame.dtype == np.uint8:
        return frame[..., :3]
    stored = int(ds.get("BitsStored", frame.dtype.itemsize * 8) or 8)
    scale = 255.0 / float(2**stored - 1)
    return np.clip(np.rint(frame[..., :3].astype(np.float64) * scale), 0, 255).astype(
        np.uint8
    )


def decode_dicom(
    ds: Dataset,
    path: Path,
    *,
    limits: ReadLimits = DEFAULT_LIMITS,
    max_slices: int | None = None,
) -> list[DecodedImage]:
    """Decode every (or an evenly spaced subset of) frame of a parsed dataset."""
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        sop = ds.get("SOPClassUID")
        kind = getattr(sop, "name", None) or "unknown SOP class"
        raise UnsupportedFormatError(path, f"DICOM file holds no image ({kind})")
    frames = _check_size(ds, path, limits)
    arr = _decode_all(ds, path)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    samples = _int_attr(ds, "SamplesPerPixel", path, default=1)
    if frames == 1 and arr.ndim == (2 if samples == 1 else 3):
        arr = arr[np.newaxis]
    expected = 3 if samples == 1 else 4
    if arr.ndim != expected or arr.shape[0] < frames:
        raise CorruptFileError(
            path, f"decoded DICOM array has unexpected shape {arr.shape}"
        )
    indices = _select(frames, max_slices)
    common: dict[str, Any] = {
        "source_format": "dicom",
        "modality_hint": _modality_hint(ds),
        "burned_in_annotation": is_burned_in(ds),
        "quarantine_reason": burned_in_reason(ds),
    }
    header = kept_header(ds)
    header["frame_count"] = frames
    color = samples > 1 or photometric == "PALETTE COLOR"
    if color:
        return [
            DecodedImage(
                pixels=np.ascontiguousarray(_to_rgb8(arr[i], ds)),
                bit_depth=8,
                window_center=127.5,
                window_width=256.0,
                frame_index=i if frames > 1 else None,
                metadata=dict(header),
                **common,
            )
            for i in indices
        ]
    return _decode_grayscale(ds, arr, indices, frames, photometric, header, common)


def _decode_grayscale(
    ds: Dataset,
    arr: np.ndarray,
    indices: list[int],
    frames: int,
    photometric: str,
    header: dict[str, Any],
    common: dict[str, Any],
) -> list[DecodedImage]:
    # Two passes keep only one float frame alive at a time.
    low, high, rescaled = np.inf, -np.inf, False
    for index in indices:
        value = _modality_values(ds, arr[index], index)
        low = min(low, float(value.min()))
        high = max(high, float(value.max()))
        rescaled = rescaled or not np.array_equal(value, arr[index])
    integral_8bit = arr.dtype.kind in "iu" and low >= 0 and high <= 255
    if integral_8bit and not rescaled and arr.dtype.itemsize == 1:
        bit_depth, full, offset, step = 8, 255.0, 0.0, 1.0
    else:
        bit_depth, full, offset = 16, 65535.0, low
        step = (high - low) / full if high > low else 1.0
    invert = photometric == "MONOCHROME1"
    header["value_offset"] = offset
    header["value_step"] = step
    header["inverted"] = invert
    images = []
    for index in indices:
        value = _modality_values(ds, arr[index], index)
        window = _header_window(ds, index) or _robust_window(value)
        center = (window[0] - offset) / step
        width = window[1] / step
        scaled = np.clip(np.rint((value - offset) / step), 0, full)
        pixel_type: type[np.unsignedinteger[Any]] = (
            np.uint8 if bit_depth == 8 else np.uint16
        )
        pixels = scaled.astype(pixel_type)
        if invert:
            pixels = (full - pixels).astype(pixels.dtype)
            center = full - center
        images.append(
            DecodedImage(
                pixels=np.ascontiguousarray(pixels),
                bit_depth=bit_depth,
                window_center=float(center),
                window_width=float(max(width, 1e-3)),
                frame_index=index if frames > 1 else None,
                metadata=dict(header),
                **common,
            )
        )
    return images
