"""Errors raised by the format readers; each names the file it is about."""

from __future__ import annotations

from pathlib import Path

from models_ml.engine.errors import EngineError


class ReaderError(EngineError):
    """A file could not be read; ``path`` names it and the message says why."""

    def __init__(self, path: str | Path | None, message: str) -> None:
        self.path = Path(path) if path is not None else None
        self.reason = message
        super().__init__(f"{path}: {message}" if path is not None else message)


class UnsupportedFormatError(ReaderError):
    """The file is not PNG, JPEG, DICOM or NIfTI, or uses an unsupported variant."""


class CorruptFileError(ReaderError):
    """The file claims a known format but is truncated or malformed."""


class TooLargeError(ReaderError):
    """The file, an image in it, or its decompressed payload exceeds a limit."""


class ManifestError(ReaderError):
    """A CSV manifest or an image folder cannot be used as a whole."""


class InvalidModalityError(EngineError, ValueError):
    """A modality name is empty or contains nothing usable."""
