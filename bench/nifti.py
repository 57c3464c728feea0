"""How reading a NIfTI volume scales with its size.

Builds mostly-empty int16 volumes (they gzip to almost nothing, as the
issue's 1 MB file did) of growing side, reads each with the importer's
reader, and prints seconds, seconds per million voxels, and the ratio to the
smallest volume's per-voxel cost: a reader whose work grows with the volume
once (not once per slice) keeps that ratio near 1. Also times the old
per-slice ``np.take`` on the largest volume, side by side.

    .venv/bin/python bench/nifti.py [--sides 96 192 384]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from models_ml.engine.readers.dispatch import read_image_file


def _volume(side: int, folder: Path) -> Path:
    vol = np.zeros((side, side, side), np.int16)
    quarter = side // 4
    for z in range(side):
        vol[quarter : 3 * quarter, quarter : 3 * quarter, z] = z % 50
    path = folder / f"vol{side}.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.eye(4)), path)
    return path


def _old_per_slice_take(path: Path, slices: int = 16) -> tuple[float, int]:
    """Seconds the old per-slice ``np.take`` would spend on every slice,
    projected from ``slices`` of them, and the slice count."""
    raw = np.asfortranarray(np.asanyarray(nib.load(path).dataobj))
    start = time.perf_counter()
    for index in range(slices):
        float(np.take(raw, index, axis=2).min())
    per_slice = (time.perf_counter() - start) / slices
    return per_slice * raw.shape[2], raw.shape[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[96, 192, 384])
    args = parser.parse_args()
    base = None
    with tempfile.TemporaryDirectory() as folder:
        print("side  file_kB  voxels_M  slices  seconds  s_per_Mvoxel  ratio")
        for side in args.sides:
            path = _volume(side, Path(folder))
            start = time.perf_counter()
            images = read_image_file(path)
            seconds = time.perf_counter() - start
            per = seconds / (side**3 / 1e6)
            base = base or per
            print(
                f"{side:4d}  {path.stat().st_size / 1e3:7.1f}  {side**3 / 1e6:8.2f}"
                f"  {len(images):6d}  {seconds:7.2f}  {per:12.4f}  {per / base:5.2f}"
            )
        old, count = _old_per_slice_take(path)
        print(
            f"side {side}: the old per-slice np.take would spend {old:.1f} s "
            f"slicing alone ({count} slices, projected from 16; it copied the "
            f"whole volume each time): {old / seconds:.0f}x the whole read now"
        )


if __name__ == "__main__":
    main()
