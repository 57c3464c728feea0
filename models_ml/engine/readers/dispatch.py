"""``read_image_file``: choose a reader from the file's leading bytes."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from models_ml.engine.readers.errors import (
    CorruptFileError,
    ReaderError,
    TooLargeError,
    UnsupportedFormatError,
)
from models_ml.engine.readers.image import DecodedImage
from models_ml.engine.readers.limits import DEFAULT_LIMITS, ReadLimits

_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"
_GZIP = b"\x1f\x8b"
_HEAD_BYTES = 1024


if TYPE_CHECKING:
    from models_ml.engine.readers.deid import UidMap


def sniff_format(path: str | Path) -> str | None:
    """ "png", "jpeg", "dicom", "nifti" or "nifti-gz" from magic bytes, else None."""
    from models_ml.engine.readers.dicom import looks_like_headerless_dicom
    from models_ml.engine.readers.nifti import nifti_version, read_gzip_prefix

    path = Path(path)
    with path.open("rb") as handle:
        head = handle.read(_HEAD_BYTES)
    if head.startswith(_PNG):
        return "png"
    if head.startswith(_JPEG):
        return "jpeg"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if nifti_version(head) is not None or head[344:348] == b"ni1\x00":
        return "nifti"
    if head.startswith(_GZIP):
        inner = read_gzip_prefix(path, 540)
        if nifti_version(inner) is not None or inner[344:348] == b"ni1\x00":
            return "nifti-gz"
        return None
    if looks_like_headerless_dicom(head):
        return "dicom-headerless"
    return None


def _check_file(path: Path, limits: ReadLimits) -> None:
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise ReaderError(path, "file not found") from exc
    except OSError as exc:
        raise ReaderError(path, f"file cannot be opened: {exc.strerror}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise UnsupportedFormatError(path, "not a regular file")
    if info.st_size == 0:
        raise CorruptFileError(path, "file is empty")
    if info.st_size > limits.max_file_bytes:
        raise TooLargeError(
            path,
            f"file is {info.st_size} bytes, more than {limits.max_file_bytes}",
        )
    if not os.access(path, os.R_OK):
        raise ReaderError(path, "file is not readable")


def read_image_file(
    path: str | Path,
    *,
    limits: ReadLimits = DEFAULT_LIMITS,
    nifti_axis: int = 2,
    max_slices: int | None = None,
    uid_map: UidMap | None = None,
) -> list[DecodedImage]:
    """Decode a PNG, JPEG, DICOM or NIfTI file into 2-D images.

    With ``uid_map``, a DICOM file is de-identified before decoding and each
    image's metadata also carries its remapped study and series UIDs and the
    pseudonymous patient ID, so slices and patients can still be grouped.

    The format comes from the file's magic bytes, not its name. DICOM gives
    one image per frame and NIfTI one per non-constant slice along
    ``nifti_axis``; ``max_slices`` keeps an evenly spaced subset. Raises a
    ``ReaderError`` subclass naming the file for anything unreadable.
    """
    path = Path(path)
    _check_file(path, limits)
    kind = sniff_format(path)
    if kind in ("png", "jpeg"):
        from models_ml.engine.readers.raster import read_raster

        return read_raster(path, limits)
    if kind in ("dicom", "dicom-headerless"):
        from models_ml.engine.readers.dicom import decode_dicom, read_dicom_dataset

        ds = read_dicom_dataset(
            path, limits=limits, headerless=kind == "dicom-headerless"
        )
        if uid_map is None:
            return decode_dicom(ds, path, limits=limits, max_slices=max_slices)
        from models_ml.engine.readers.deid import deidentify

        clean = deidentify(ds, uid_map=uid_map).dataset
        images = decode_dicom(clean, path, limits=limits, max_slices=max_slices)
        grouping = {
            key: str(clean.get(key))
            for key in ("StudyInstanceUID", "SeriesInstanceUID", "PatientID")
            if clean.get(key)
        }
        for image in images:
            image.metadata.update(grouping)
        return images
    if kind in ("nifti", "nifti-gz"):
        from models_ml.engine.readers.nifti import read_nifti

        return read_nifti(
            path,
            gz=kind == "nifti-gz",
            limits=limits,
            axis=nifti_axis,
            max_slices=max_slices,
        )
    raise UnsupportedFormatError(
        path, "not a PNG, JPEG, DICOM or NIfTI file (checked the leading bytes)"
    )
