"""Real DICOM files shipped by pydicom and pydicom-data, found on disk.

``pydicom.data.get_testdata_files`` tries to download missing files first,
which fails slowly without a network; these helpers only list what is local.
"""

from __future__ import annotations

from pathlib import Path

import data_store
import pydicom.data


def local_dicom_test_files(*, max_bytes: int | None = None) -> list[Path]:
    roots = (
        Path(pydicom.data.__file__).parent / "test_files",
        Path(data_store.__file__).parent / "data",
    )
    files = sorted(p for root in roots for p in root.rglob("*") if p.is_file())
    if max_bytes is not None:
        files = [p for p in files if p.stat().st_size <= max_bytes]
    return files
