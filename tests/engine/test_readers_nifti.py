"""NIfTI volumes: nibabel's sample data, synthetic volumes, hostile headers."""

from __future__ import annotations

import gzip
import time
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from models_ml.engine.readers import (
    CorruptFileError,
    ReadLimits,
    TooLargeError,
    UnsupportedFormatError,
    read_image_file,
)

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"


@pytest.mark.parametrize(
    "name",
    [
        "anatomical.nii",
        "functional.nii",
        "example4d.nii.gz",
        "example_nifti2.nii.gz",
        "standard.nii.gz",
    ],
)
def test_nibabel_sample_volumes_decode_into_varied_slices(name: str) -> None:
    images = read_image_file(NIBABEL_DATA / name)
    assert images
    for image in images:
        assert image.source_format == "nifti" and image.bit_depth == 16
        assert image.pixels.max() > image.pixels.min()
        assert 0 < image.window_width <= 65535 * 1.01


def _volume() -> np.ndarray:
    volume = np.zeros((20, 24, 10), np.int16)
    for z in range(2, 8):
        volume[5:15, 6:18, z] = 100 * z
    volume[8, 9, 4] = 4000
    return volume


def _save(tmp_path: Path, name: str, volume: np.ndarray, **header: float) -> Path:
    image = nib.Nifti1Image(volume, np.eye(4))
    if header:
        image.header.set_slope_inter(header["slope"], header["inter"])
    path = tmp_path / name
    nib.save(image, path)
    return path


def test_constant_slices_are_skipped(tmp_path: Path) -> None:
    images = read_image_file(_save(tmp_path, "v.nii.gz", _volume()))
    assert [image.frame_index for image in images] == [2, 3, 4, 5, 6, 7]


def test_slices_along_another_axis(tmp_path: Path) -> None:
    images = read_image_file(_save(tmp_path, "v.nii", _volume()), nifti_axis=0)
    assert [image.frame_index for image in images] == list(range(5, 15))
    assert images[0].pixels.shape == (10, 24)


def test_max_slices_keeps_an_evenly_spaced_subset(tmp_path: Path) -> None:
    images = read_image_file(_save(tmp_path, "v.nii.gz", _volume()), max_slices=2)
    assert [image.frame_index for image in images] == [2, 7]


def test_scaled_values_map_linearly_onto_uint16(tmp_path: Path) -> None:
    path = _save(tmp_path, "s.nii.gz", _volume(), slope=0.5, inter=-10.0)
    images = read_image_file(path)
    meta = images[0].metadata
    assert meta["value_offset"] == pytest.approx(-10.0)
    assert meta["value_step"] == pytest.approx((4000 * 0.5) / 65535)
    by_index = {image.frame_index: image for image in images}
    recovered = meta["value_offset"] + by_index[3].pixels.max() * meta["value_step"]
    assert recovered == pytest.approx(300 * 0.5 - 10, abs=meta["value_step"])
    assert by_index[4].pixels.max() == 65535


def test_window_ignores_the_background_and_the_rare_outlier(tmp_path: Path) -> None:
    images = read_image_file(_save(tmp_path, "v.nii.gz", _volume()))
    image = images[0]
    step = image.metadata["value_step"]
    upper = (image.window_center + image.window_width / 2) * step
    assert 600 <= upper < 4000


def _header_bytes(shape: tuple[int, ...], dtype: type = np.uint8) -> bytes:
    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    header.set_data_shape(shape)
    header["vox_offset"] = 352
    return header.binaryblock + b"\x00" * 4


def test_absurd_dimensions_are_rejected_before_reading_voxels(tmp_path: Path) -> None:
    path = tmp_path / "huge.nii"
    path.write_bytes(_header_bytes((30000, 30000, 30000), np.float32) + b"\x00" * 64)
    started = time.perf_counter()
    with pytest.raises(TooLargeError, match="huge.nii"):
        read_image_file(path)
    assert time.perf_counter() - started < 0.5


def _zeros_member(size: int) -> bytes:
    return gzip.compress(b"\x00" * size, compresslevel=9)


def test_gzip_bomb_with_large_declared_volume_is_rejected(tmp_path: Path) -> None:
    member = _zeros_member(16 << 20)
    path = tmp_path / "bomb.nii.gz"
    path.write_bytes(gzip.compress(_header_bytes((1000, 1000, 1000))) + member * 64)
    assert path.stat().st_size < 2_000_000
    started = time.perf_counter()
    with pytest.raises(TooLargeError, match="bomb.nii.gz"):
        read_image_file(path, limits=ReadLimits(max_decompressed_bytes=64 << 20))
    assert time.perf_counter() - started < 1.0


def test_gzip_bomb_behind_a_small_volume_costs_bounded_memory(tmp_path: Path) -> None:
    volume = _volume().astype(np.uint8)
    payload = _header_bytes(volume.shape) + volume.tobytes(order="F")
    path = tmp_path / "tail.nii.gz"
    # About 1 GiB of zeros after the real data, in a file of about 1 MB.
    path.write_bytes(gzip.compress(payload) + _zeros_member(16 << 20) * 64)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        images = read_image_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 1.0
    assert peak < 20 << 20
    assert len(images) == 6


def test_truncated_gzip_volume_is_rejected(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).normal(size=(20, 24, 10)).astype(np.float32)
    full = _save(tmp_path, "v.nii.gz", noise)
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(CorruptFileError, match="cut.nii.gz"):
        read_image_file(cut)


def test_truncated_plain_volume_is_rejected(tmp_path: Path) -> None:
    full = _save(tmp_path, "v.nii", _volume())
    cut = tmp_path / "cut.nii"
    cut.write_bytes(full.read_bytes()[:2000])
    with pytest.raises(CorruptFileError, match="truncated"):
        read_image_file(cut)


def test_gzip_that_is_not_nifti_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "notes.nii.gz"
    path.write_bytes(gzip.compress(b"hello " * 200))
    with pytest.raises(UnsupportedFormatError, match="notes.nii.gz"):
        read_image_file(path)


def test_two_file_analyze_pair_is_unsupported() -> None:
    with pytest.raises(UnsupportedFormatError, match="nifti1.hdr"):
        read_image_file(NIBABEL_DATA / "nifti1.hdr")


def test_volume_over_max_voxels_is_refused_whatever_its_bytes(tmp_path: Path) -> None:
    # 8-bit and empty: 64^3 voxels are 256 kB decompressed and gzip to ~1 kB,
    # under every byte limit; the voxel count still bounds the work.
    path = _save(tmp_path, "flat.nii.gz", np.zeros((64, 64, 64), np.uint8))
    with pytest.raises(TooLargeError, match="262144 voxels, more than max_voxels"):
        read_image_file(path, limits=ReadLimits(max_voxels=64**3 - 1))
    assert read_image_file(path, limits=ReadLimits(max_voxels=64**3)) == []


def test_every_axis_slices_the_fortran_ordered_volume_as_nibabel_does(
    tmp_path: Path,
) -> None:
    volume = np.arange(6 * 7 * 5, dtype=np.int16).reshape(6, 7, 5)
    path = _save(tmp_path, "ramp.nii", volume)
    for axis, count in ((0, 6), (1, 7), (2, 5)):
        images = read_image_file(path, nifti_axis=axis)
        assert [image.frame_index for image in images] == list(range(count))
        for image in images:
            plane = np.take(volume, image.frame_index, axis=axis)
            shown = plane.T[::-1] if axis == 0 else plane.T[::-1, ::-1]
            meta = image.metadata
            values = meta["value_offset"] + image.pixels * meta["value_step"]
            np.testing.assert_allclose(values, shown, atol=meta["value_step"])
