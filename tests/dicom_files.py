"""Real DICOM files shipped by pydicom and pydicom-data, found on disk.

``pydicom.data.get_testdata_files`` tries to download missing files first,
which fails slowly without a network; these helpers only list what is local.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def ct_small_hu() -> Any:
    """CT_small.dcm's pixels in Hounsfield units (RescaleSlope/Intercept)."""
    import numpy as np
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    return ds.pixel_array.astype(np.float64) * slope + intercept


def import_ct_controls(folder: Path, *, n: int, prompt: str) -> list[Any]:
    """``n`` real 16-bit CT images imported as a dataset: copies of
    CT_small.dcm (128 px, HU by rescale), the first as shipped and each next
    one with a brighter band, so none is a duplicate of another."""
    import numpy as np
    import pydicom
    from pydicom.data import get_testdata_file

    from annotations.services.imports import dataset_import

    rows = ["path,Text,modality"]
    for i in range(n):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        pixels = ds.pixel_array.astype(np.int16)
        pixels[: 10 * i] += np.int16(60)
        ds.PixelData = pixels.tobytes()
        ds.save_as(folder / f"ct{i}.dcm")
        rows.append(f"ct{i}.dcm,{prompt},CT")
    (folder / "data.csv").write_text("\n".join(rows) + "\n")
    dataset, report = dataset_import(
        name=f"ct {folder.name}", source=folder / "data.csv", on_error="skip"
    )
    assert not report.errors, report.errors
    return list(dataset.images.all())
