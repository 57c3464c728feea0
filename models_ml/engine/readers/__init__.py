"""Django-free, torch-free readers for images, volumes and import manifests.

Importing this package loads neither pydicom nor nibabel; they are imported
inside the functions that need them.
"""

from models_ml.engine.readers.deid import DeidResult, UidMap, deidentify, kept_header
from models_ml.engine.readers.dispatch import read_image_file, sniff_format
from models_ml.engine.readers.errors import (
    CorruptFileError,
    InvalidModalityError,
    ManifestError,
    ReaderError,
    TooLargeError,
    UnsupportedFormatError,
)
from models_ml.engine.readers.image import (
    DecodedImage,
    encode_png,
    encode_preview_png,
    to_display_uint8,
)
from models_ml.engine.readers.limits import DEFAULT_LIMITS, ReadLimits
from models_ml.engine.readers.manifest import (
    Manifest,
    ManifestRow,
    RowError,
    parse_manifest,
    scan_label_folder,
)
from models_ml.engine.readers.modality import (
    MODALITY_LABELS,
    modality_label,
    normalize_modality,
)

__all__ = [
    "MODALITY_LABELS",
    "CorruptFileError",
    "DEFAULT_LIMITS",
    "DecodedImage",
    "DeidResult",
    "InvalidModalityError",
    "Manifest",
    "ManifestError",
    "ManifestRow",
    "ReadLimits",
    "ReaderError",
    "RowError",
    "TooLargeError",
    "UidMap",
    "UnsupportedFormatError",
    "deidentify",
    "encode_png",
    "encode_preview_png",
    "kept_header",
    "modality_label",
    "normalize_modality",
    "parse_manifest",
    "read_image_file",
    "scan_label_folder",
    "sniff_format",
    "to_display_uint8",
]
