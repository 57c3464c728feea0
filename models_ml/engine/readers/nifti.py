"""NIfTI-1/2 volumes (.nii, .nii.gz) sliced into 2-D images.

The header is parsed and checked before any voxel is read, and gzip data is
decompressed only up to the bytes the (checked) header says are needed, so
neither absurd dimensions nor gzip bombs can allocate more than the limits.
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models_ml.engine.readers.errors import (
    CorruptFileError,
    TooLargeError,
    UnsupportedFormatError,
)
from models_ml.engine.readers.image import DecodedImage
from models_ml.engine.readers.limits import DEFAULT_LIMITS, ReadLimits

if TYPE_CHECKING:
    from nibabel.nifti1 import Nifti1Header

_HEADER_BYTES = 540


def nifti_version(head: bytes) -> int | None:
    """1 or 2 for a single-file NIfTI header, else None."""
    if len(head) >= 348 and head[344:348] == b"n+1\x00":
        return 1
    if len(head) >= 12 and head[4:8] == b"n+2\x00":
        return 2
    return None


def read_gzip_prefix(path: Path, size: int) -> bytes:
    """The first ``size`` decompressed bytes of a gzip file."""
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read(size)
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptFileError(path, f"gzip data is corrupt: {exc}") from exc


def _parse_header(path: Path, head: bytes) -> Nifti1Header:
    """The checked header (a Nifti2Header is a Nifti1Header)."""
    from nibabel.nifti1 import Nifti1Header
    from nibabel.nifti2 import Nifti2Header

    version = nifti_version(head)
    if version is None:
        if len(head) >= 348 and head[344:348] == b"ni1\x00":
            raise UnsupportedFormatError(
                path, "two-file NIfTI (.hdr/.img) is not supported; use .nii"
            )
        raise UnsupportedFormatError(path, "not a NIfTI-1 or NIfTI-2 file")
    header_class = Nifti1Header if version == 1 else Nifti2Header
    try:
        header: Nifti1Header = header_class.from_fileobj(io.BytesIO(head), check=True)
        return header
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types here
        raise CorruptFileError(path, f"NIfTI header is invalid: {exc}") from exc


def _volume_geometry(
    path: Path, header: Nifti1Header, axis: int, limits: ReadLimits
) -> tuple[tuple[int, int, int], np.dtype, int]:
    """Shape of the first 3-D volume, voxel dtype and data offset; all checked
    against the limits before anything is allocated."""
    shape = tuple(int(d) for d in header.get_data_shape())
    if not shape or any(d < 1 for d in shape):
        raise CorruptFileError(path, f"NIfTI header has invalid dimensions {shape}")
    padded = shape + (1, 1)
    volume = (padded[0], padded[1], padded[2])
    dtype = np.dtype(header.get_data_dtype())
    if dtype.kind not in "iuf" or dtype.fields is not None:
        raise UnsupportedFormatError(
            path, f"NIfTI voxel type {dtype} is not supported (need int or float)"
        )
    if axis not in (0, 1, 2):
        raise ValueError(f"nifti_axis must be 0, 1 or 2, got {axis}")
    in_plane = [volume[a] for a in range(3) if a != axis]
    if in_plane[0] * in_plane[1] > limits.max_pixels:
        raise TooLargeError(
            path,
            f"NIfTI slice is {in_plane[0]}x{in_plane[1]} pixels, "
            f"more than {limits.max_pixels}",
        )
    if volume[axis] > limits.max_frames:
        raise TooLargeError(
            path, f"NIfTI has {volume[axis]} slices, more than {limits.max_frames}"
        )
    voxels = volume[0] * volume[1] * volume[2]
    if voxels > limits.max_voxels:
        raise TooLargeError(
            path,
            f"NIfTI volume {volume} has {voxels} voxels, "
            f"more than max_voxels={limits.max_voxels}",
        )
    nbytes = voxels * dtype.itemsize
    for limit, what in (
        (limits.max_decoded_bytes, "max_decoded_bytes"),
        (limits.max_decompressed_bytes, "max_decompressed_bytes"),
    ):
        if nbytes > limit:
            raise TooLargeError(
                path,
                f"NIfTI volume {volume} of {dtype} needs {nbytes} bytes, "
                f"more than {what}={limit}",
            )
    offset = int(header.get_data_offset())
    if offset < len(header.binaryblock) or offset > limits.max_file_bytes:
        raise CorruptFileError(path, f"NIfTI data offset {offset} is invalid")
    return volume, dtype, offset


def _read_payload(path: Path, *, gz: bool, offset: int, nbytes: int) -> bytes:
    needed = offset + nbytes
    try:
        if gz:
            with gzip.open(path, "rb") as handle:
                data = handle.read(needed)
        else:
            with path.open("rb") as handle:
                data = handle.read(needed)
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptFileError(path, f"NIfTI data cannot be read: {exc}") from exc
    if len(data) < needed:
        raise CorruptFileError(
            path, f"NIfTI data is truncated ({len(data)} of {needed} bytes)"
        )
    return data[offset:needed]


def _to_ras(volume: np.ndarray, header: Nifti1Header) -> np.ndarray:
    from nibabel.orientations import (
        apply_orientation,
        axcodes2ornt,
        io_orientation,
        ornt_transform,
    )

    try:
        current = io_orientation(header.get_best_affine())
    except Exception:  # noqa: BLE001 - a degenerate affine keeps voxel order
        return volume
    if np.isnan(current).any():
        return volume
    oriented: np.ndarray = apply_orientation(
        volume, ornt_transform(current, axcodes2ornt("RAS"))
    )
    return oriented


def _plane(volume: np.ndarray, index: int, axis: int) -> np.ndarray:
    """Slice ``index`` along ``axis`` as a view. (``np.take`` copies the
    whole of a volume that is not C-contiguous, as a NIfTI's Fortran-ordered
    voxels are, once per slice.)"""
    where: list[int | slice] = [slice(None)] * volume.ndim
    where[axis] = index
    return volume[tuple(where)]


def _display(slice_2d: np.ndarray, axis: int) -> np.ndarray:
    """Rows run superior/anterior to inferior/posterior, patient right on the
    viewer's left, as radiologists expect."""
    shown = slice_2d.T[::-1]
    return shown if axis == 0 else shown[:, ::-1]


def read_nifti(
    path: Path,
    *,
    gz: bool,
    limits: ReadLimits = DEFAULT_LIMITS,
    axis: int = 2,
    max_slices: int | None = None,
) -> list[DecodedImage]:
    """Decode the non-constant slices of the first volume along ``axis``."""
    head = read_gzip_prefix(path, _HEADER_BYTES) if gz else _read_head(path)
    header = _parse_header(path, head)
    shape, dtype, offset = _volume_geometry(path, header, axis, limits)
    nbytes = shape[0] * shape[1] * shape[2] * dtype.itemsize
    if not gz and path.stat().st_size < offset + nbytes:
        raise CorruptFileError(
            path,
            f"NIfTI file is truncated ({path.stat().st_size} bytes, "
            f"header needs {offset + nbytes})",
        )
    payload = _read_payload(path, gz=gz, offset=offset, nbytes=nbytes)
    raw = np.frombuffer(payload, dtype=dtype).reshape(shape, order="F")
    raw = _to_ras(raw, header)
    slope, inter = header.get_slope_inter()
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else slope
    inter = 0.0 if inter is None or not np.isfinite(inter) else inter
    finite = np.isfinite(raw) if dtype.kind == "f" else None
    if finite is not None and not finite.any():
        raise CorruptFileError(path, "NIfTI volume holds no finite values")
    valid = raw[finite] if finite is not None else raw
    low_raw, high_raw = float(valid.min()), float(valid.max())
    low, high = sorted((low_raw * slope + inter, high_raw * slope + inter))
    step = (high - low) / 65535.0 if high > low else 1.0
    window = _percentile_window(valid, slope, inter, low)
    images = []
    kept: list[int] = []
    for index in range(shape[axis]):
        plane = _plane(raw, index, axis)
        if plane.size == 0 or np.nanmin(plane) == np.nanmax(plane):
            continue
        kept.append(index)
    if max_slices is not None and len(kept) > max_slices:
        picks = np.linspace(0, len(kept) - 1, num=max(max_slices, 0))
        kept = [kept[i] for i in sorted({int(round(p)) for p in picks})]
    metadata = {
        "shape": list(int(d) for d in header.get_data_shape()),
        "axis": axis,
        "zooms": [float(z) for z in header.get_zooms()[:3]],
        "value_offset": low,
        "value_step": step,
        "slice_count": shape[axis],
    }
    for index in kept:
        plane = _plane(raw, index, axis).astype(np.float64) * slope + inter
        plane = np.nan_to_num(plane, nan=low, posinf=high, neginf=low)
        pixels = np.clip(np.rint((plane - low) / step), 0, 65535).astype(np.uint16)
        images.append(
            DecodedImage(
                pixels=np.ascontiguousarray(_display(pixels, axis)),
                bit_depth=16,
                window_center=(window[0] - low) / step,
                window_width=max(window[1] / step, 1e-3),
                frame_index=index,
                source_format="nifti",
                metadata=dict(metadata),
            )
        )
    return images


def _read_head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(_HEADER_BYTES)


def _percentile_window(
    valid: np.ndarray, slope: float, inter: float, low: float
) -> tuple[float, float]:
    flat = valid.ravel()
    sample = flat[:: max(1, flat.size // 2_000_000)].astype(np.float64) * slope + inter
    # Background voxels at the minimum would pull the window towards black,
    # so the foreground decides unless it is too small or flat.
    for candidate in (sample[sample > low], sample):
        if candidate.size < 100:
            continue
        lo, hi = (float(v) for v in np.percentile(candidate, [0.5, 99.5]))
        if hi > lo:
            return (lo + hi) / 2.0, hi - lo
    lo, hi = float(sample.min()), float(sample.max())
    return (lo + hi) / 2.0, max(hi - lo, 1e-6)
