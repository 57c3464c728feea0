"""Resource limits that every reader enforces before allocating memory."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class ReadLimits:
    """Upper bounds on what one file or manifest may cost to read."""

    max_file_bytes: int = 512 * MIB
    max_pixels: int = 100_000_000
    max_frames: int = 2048
    max_decompressed_bytes: int = 2048 * MIB
    max_decoded_bytes: int = 2048 * MIB
    # Voxels of one volume (NIfTI): 512 x 512 x 1024. The work a volume costs
    # grows with its voxels whatever their type, and a gzip of a mostly
    # empty volume is tiny, so the count is bounded before decompressing.
    max_voxels: int = 512 * 512 * 1024
    max_csv_rows: int = 200_000
    max_csv_bytes: int = 64 * MIB
    max_text_chars: int = 4000
    max_folder_depth: int = 16


DEFAULT_LIMITS = ReadLimits()
