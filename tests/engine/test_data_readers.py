"""Training data read through the shared readers: DICOM, NIfTI, exports, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from models_ml.engine.data import (
    conditioning_modality,
    load_training_set,
    read_dataset_csv,
)
from models_ml.engine.errors import DatasetError
from models_ml.engine.images import load_frames, load_pil
from models_ml.engine.reward_data import read_real_csv
from models_ml.engine.train import train
from tests.engine.helpers import tiny_config


def _write_volume(path: Path, slices: int = 4) -> None:
    volume = np.zeros((20, 20, slices), np.int16)
    for k in range(slices):
        volume[4 : 8 + 2 * k, 5:15, k] = 400 + 300 * k
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(path))


def _write_mixed_dataset(folder: Path) -> Path:
    """One PNG, a 10-frame 16-bit MR DICOM and a 4-slice gzipped NIfTI."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((24, 24, 3), 90, np.uint8)).save(folder / "a.png")
    shutil.copy(get_testdata_file("emri_small.dcm"), folder / "mr.dcm")
    _write_volume(folder / "brain.nii.gz")
    csv_path = folder / "data.csv"
    csv_path.write_text(
        "path,Text,modality\n"
        "a.png,Fundus: flat grey,Fundus\n"
        "mr.dcm,MRI: ten frames,MRI\n"
        "brain.nii.gz,Brain MRI: four slices,brain mri\n"
    )
    return csv_path


def test_dicom_rows_give_every_frame_and_nifti_rows_every_slice(
    tmp_path: Path,
) -> None:
    data = load_training_set(_write_mixed_dataset(tmp_path / "d"), 16)

    assert len(data) == 1 + 10 + 4
    assert data.prompts.count("MRI: ten frames") == 10
    assert data.prompts.count("Brain MRI: four slices") == 4
    assert data.pixels.shape == (15, 3, 16, 16)
    # 16-bit frames are windowed into the 8-bit range, not left black or clipped.
    frames = data.pixels[1:11].float()
    assert frames.max() > 200 and frames.std() > 10


def test_csv_with_dicom_and_nifti_rows_trains(tmp_path: Path) -> None:
    csv_path = _write_mixed_dataset(tmp_path / "d")

    result = train(tiny_config(tmp_path, data_csv=str(csv_path), max_steps=2))

    assert result.steps == 2
    assert result.final_dir is not None


def test_bad_rows_fail_with_an_error_listing_every_bad_line(tmp_path: Path) -> None:
    csv_path = _write_mixed_dataset(tmp_path / "d")
    with csv_path.open("a") as handle:
        handle.write("missing.png,CT: gone,CT\nhttp://x.org/a.png,CT: url,CT\n")

    with pytest.raises(DatasetError) as caught:
        read_dataset_csv(csv_path)

    message = str(caught.value)
    assert str(csv_path) in message
    assert "line 5: path: file not found: missing.png" in message
    assert "line 6: path: URLs are not allowed" in message


def test_empty_csv_is_refused_naming_the_file(tmp_path: Path) -> None:
    csv_path = tmp_path / "empty.csv"
    csv_path.write_text("path,Text\n")

    with pytest.raises(DatasetError, match=r"empty\.csv.*no rows"):
        read_dataset_csv(csv_path)


def test_ratings_export_is_accepted_as_training_data(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "g.png")
    csv_path = tmp_path / "ratings.csv"
    csv_path.write_text(
        "image_path,rating,modality,expert_level,prompt\n"
        "g.png,3,chest_xray,senior,Chest X-ray: PA view\n"
    )

    rows = read_dataset_csv(csv_path)

    assert [(r.path.name, r.text, r.modality) for r in rows] == [
        ("g.png", "Chest X-ray: PA view", "Chest X-ray")
    ]


def test_weight_column_is_read_and_a_bad_weight_names_its_line(
    tmp_path: Path,
) -> None:
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "g.png")
    csv_path = tmp_path / "w.csv"
    csv_path.write_text("path,Text,weight\ng.png,CT: a,0.5\n\ng.png,CT: b,x\n")

    with pytest.raises(DatasetError, match=r"line 4: field 'weight' 'x'"):
        read_dataset_csv(csv_path, need_weight=True)
    csv_path.write_text("path,Text,weight\ng.png,CT: a,0.5\n")
    assert read_dataset_csv(csv_path, need_weight=True)[0].weight == 0.5


def test_known_modality_aliases_condition_alike_and_others_stay_as_written() -> None:
    assert conditioning_modality("CXR") == conditioning_modality("chest_xray")
    assert conditioning_modality("chest_xray") == "Chest X-ray"
    assert conditioning_modality("Extremity X-ray") == "Extremity X-ray"
    assert conditioning_modality("  ") is None


def test_shared_loader_reads_volumes_and_names_unreadable_files(
    tmp_path: Path,
) -> None:
    _write_volume(tmp_path / "v.nii.gz", slices=5)
    (tmp_path / "bad.png").write_bytes(b"not an image at all")

    assert len(load_frames(tmp_path / "v.nii.gz")) == 5
    assert load_pil(tmp_path / "v.nii.gz").mode == "L"
    with pytest.raises(DatasetError, match=r"bad\.png"):
        load_pil(tmp_path / "bad.png")


def test_real_csv_for_reward_uses_the_same_rules(tmp_path: Path) -> None:
    csv_path = _write_mixed_dataset(tmp_path / "d")

    real = read_real_csv(csv_path)

    assert [Path(p).name for p, _, _ in real] == ["a.png", "mr.dcm", "brain.nii.gz"]
    assert real[2][2] == "Brain MRI"
