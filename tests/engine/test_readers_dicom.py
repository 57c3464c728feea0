"""DICOM decoding over pydicom's and pydicom-data's real test files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from models_ml.engine.readers import (
    CorruptFileError,
    ReaderError,
    ReadLimits,
    TooLargeError,
    UnsupportedFormatError,
    encode_png,
    encode_preview_png,
    read_image_file,
)
from tests.dicom_files import local_dicom_test_files

# One file per transfer syntax / photometric case worth guarding.
DECODABLE = {
    "CT_small.dcm": "explicit VR little endian, CT rescale",
    "MR_small_implicit.dcm": "implicit VR little endian",
    "MR_small_bigendian.dcm": "explicit VR big endian",
    "image_dfl.dcm": "deflated explicit VR little endian",
    "MR_small_RLE.dcm": "RLE lossless",
    "SC_rgb_jpeg_dcmtk.dcm": "JPEG baseline, YBR_FULL",
    "SC_rgb_dcmtk_+eb+cy+np.dcm": "JPEG baseline, YBR_FULL_422",
    "JPGExtended.dcm": "JPEG extended 12-bit",
    "SC_rgb_jpeg_gdcm.dcm": "JPEG lossless process 14",
    "MR_small_jpeg_ls_lossless.dcm": "JPEG-LS lossless",
    "JPEGLSNearLossless_16.dcm": "JPEG-LS near-lossless",
    "MR_small_jp2klossless.dcm": "JPEG 2000 lossless",
    "JPEG2000.dcm": "JPEG 2000",
    "GDCMJ2K_TextGBR.dcm": "JPEG 2000 YBR_RCT",
    "emri_small_RLE.dcm": "multi-frame RLE",
    "SC_rgb_rle_16bit_2frame.dcm": "multi-frame 16-bit RGB",
    "examples_palette.dcm": "PALETTE COLOR",
    "OBXXXX1A_expb.dcm": "PALETTE COLOR big endian",
    "SC_ybr_full_uncompressed.dcm": "uncompressed YBR_FULL",
    "vlut_04.dcm": "VOI LUT sequence",
    "mlut_18.dcm": "modality LUT sequence",
    "OT-PAL-8-face.dcm": "no preamble or file meta",
}


def _path(name: str) -> Path:
    return Path(get_testdata_file(name))


@pytest.mark.parametrize("name", sorted(DECODABLE))
def test_known_transfer_syntaxes_decode_to_sane_images(name: str) -> None:
    images = read_image_file(_path(name))
    ds = pydicom.dcmread(_path(name), force=True)
    assert len(images) == int(ds.get("NumberOfFrames", 1) or 1)
    for image in images:
        assert image.source_format == "dicom"
        assert image.pixels.shape[:2] == (ds.Rows, ds.Columns)
        assert image.pixels.dtype == (np.uint16 if image.bit_depth == 16 else np.uint8)
        assert image.pixels.max() > image.pixels.min()
        assert image.window_width > 0
    preview = Image.open(io.BytesIO(encode_preview_png(images[0], max_side=64)))
    assert max(preview.size) <= 64


def test_every_test_file_decodes_or_is_rejected_naming_it() -> None:
    small = local_dicom_test_files(max_bytes=100_000)
    decoded = rejected = 0
    for path in small:
        try:
            images = read_image_file(path)
        except ReaderError as exc:
            assert exc.path == path
            assert str(path) in str(exc)
            rejected += 1
            continue
        assert images
        assert all(img.pixels.ndim in (2, 3) for img in images)
        decoded += 1
    assert decoded >= 100
    assert rejected >= 30


def test_ct_modality_rescale_keeps_hounsfield_units_recoverable() -> None:
    path = _path("CT_small.dcm")
    ds = pydicom.dcmread(path)
    (image,) = read_image_file(path)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    offset = image.metadata["value_offset"]
    step = image.metadata["value_step"]
    recovered = offset + image.pixels.astype(np.float64) * step
    assert np.abs(recovered - hu).max() <= step
    assert image.bit_depth == 16
    assert image.modality_hint == "ct"


def test_header_window_is_converted_to_stored_pixel_units() -> None:
    path = _path("693_UNCI.dcm")
    ds = pydicom.dcmread(path)
    (image,) = read_image_file(path)
    offset, step = image.metadata["value_offset"], image.metadata["value_step"]
    center = float(ds.WindowCenter)
    assert image.window_center == pytest.approx((center - offset) / step)
    assert image.window_width == pytest.approx(float(ds.WindowWidth) / step)


def test_monochrome1_is_inverted_so_high_values_are_bright() -> None:
    path = _path("dicomdirtests/77654033/CR1/6154")
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    (image,) = read_image_file(path)
    raw = ds.pixel_array
    assert image.metadata["inverted"] is True
    # The darkest stored value must become the brightest displayed one.
    assert image.pixels[raw == raw.min()].min() == image.pixels.max()
    # A CR of the cervical spine is an X-ray but not a chest X-ray.
    assert image.modality_hint == "xray"


def test_multiframe_gives_one_image_per_frame_with_index() -> None:
    images = read_image_file(_path("emri_small.dcm"))
    assert [img.frame_index for img in images] == list(range(10))
    assert not np.array_equal(images[0].pixels, images[5].pixels)


def test_max_slices_keeps_an_evenly_spaced_subset_of_frames() -> None:
    images = read_image_file(_path("emri_small.dcm"), max_slices=3)
    assert [img.frame_index for img in images] == [0, 4, 9]


def test_compressed_and_uncompressed_copies_decode_identically() -> None:
    plain = read_image_file(_path("MR_small.dcm"))[0].pixels
    for name in ("MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"):
        assert np.array_equal(read_image_file(_path(name))[0].pixels, plain)


def test_ybr_jpeg_becomes_rgb_close_to_the_uncompressed_original() -> None:
    rgb = read_image_file(_path("SC_rgb.dcm"))[0].pixels.astype(int)
    ybr = read_image_file(_path("SC_rgb_jpeg_dcmtk.dcm"))[0].pixels.astype(int)
    assert ybr.shape == rgb.shape == (100, 100, 3)
    assert np.abs(ybr - rgb).mean() < 8


def test_palette_color_becomes_rgb_uint8() -> None:
    (image,) = read_image_file(_path("examples_palette.dcm"))
    assert image.is_rgb and image.pixels.dtype == np.uint8
    assert image.pixels.max() > 200


def test_truncated_pixel_data_is_rejected_naming_the_file() -> None:
    path = _path("MR_truncated.dcm")
    with pytest.raises(CorruptFileError, match="MR_truncated.dcm"):
        read_image_file(path)


def test_dicom_truncated_mid_header_is_rejected(tmp_path: Path) -> None:
    data = _path("CT_small.dcm").read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[:700])
    with pytest.raises(ReaderError, match="cut.dcm"):
        read_image_file(cut)


def test_non_image_dicom_is_rejected_as_unsupported() -> None:
    with pytest.raises(UnsupportedFormatError, match="RT Plan"):
        read_image_file(_path("rtplan.dcm"))


def test_frame_larger_than_the_pixel_limit_is_rejected_before_decoding() -> None:
    with pytest.raises(TooLargeError, match="pixels"):
        read_image_file(_path("CT_small.dcm"), limits=ReadLimits(max_pixels=100))


def test_too_many_frames_are_rejected() -> None:
    with pytest.raises(TooLargeError, match="frames"):
        read_image_file(_path("emri_small.dcm"), limits=ReadLimits(max_frames=4))


def test_deflate_bomb_is_stopped_at_the_decompression_limit(tmp_path: Path) -> None:
    with pytest.raises(TooLargeError, match="deflated"):
        read_image_file(
            _path("image_dfl.dcm"), limits=ReadLimits(max_decompressed_bytes=10_000)
        )


def test_sixteen_bit_png_keeps_full_range(tmp_path: Path) -> None:
    (image,) = read_image_file(_path("MR_small.dcm"))
    decoded = Image.open(io.BytesIO(encode_png(image)))
    assert decoded.mode == "I;16"
    assert np.array_equal(np.asarray(decoded), image.pixels)
