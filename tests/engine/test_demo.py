import argparse
import csv
import subprocess
import sys
from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest
from PIL import Image

from models_ml.engine.commands import demo as demo_command
from models_ml.engine.demo import RGB_MODALITIES, build_demo_dataset

PER_MODALITY = 3
SIZE = 64


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_a")
    summary = build_demo_dataset(out, per_modality=PER_MODALITY, size=SIZE, seed=7)
    return out, summary


def _rows(csv_path: Path) -> list[dict[str, str]]:
    with csv_path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_csv_header_is_exactly_path_text_modality(built):
    out, summary = built
    assert summary.csv_path == out / "metadata.csv"
    first_line = summary.csv_path.read_text(encoding="utf-8").splitlines()[0]
    assert first_line == "path,Text,modality"


def test_every_csv_path_is_relative_and_exists_in_the_output_folder(built):
    out, summary = built
    rows = _rows(summary.csv_path)
    assert rows
    for row in rows:
        assert not Path(row["path"]).is_absolute()
        assert (out / row["path"]).is_file(), row["path"]


def test_each_modality_gets_the_requested_number_of_png_rows(built):
    _, summary = built
    rows = _rows(summary.csv_path)
    png_counts: dict[str, int] = {}
    for row in rows:
        if row["path"].endswith(".png"):
            png_counts[row["modality"]] = png_counts.get(row["modality"], 0) + 1
    assert len(png_counts) >= 4
    assert {"Fundus", "CT", "Brain MRI", "Chest X-ray"} <= set(png_counts)
    assert set(png_counts.values()) == {PER_MODALITY}


def test_summary_counts_match_the_csv_and_name_existing_sources(built):
    _, summary = built
    rows = _rows(summary.csv_path)
    counted: dict[str, int] = {}
    for row in rows:
        counted[row["modality"]] = counted.get(row["modality"], 0) + 1
    assert summary.counts == counted
    assert summary.sources
    assert all(path.is_file() for path in summary.sources)


def test_pngs_have_requested_size_rgb_for_fundus_and_grayscale_otherwise(built):
    out, summary = built
    for row in _rows(summary.csv_path):
        if not row["path"].endswith(".png"):
            continue
        with Image.open(out / row["path"]) as image:
            assert image.size == (SIZE, SIZE), row["path"]
            expected = "RGB" if row["modality"] in RGB_MODALITIES else "L"
            assert image.mode == expected, row["path"]
            assert np.asarray(image).std() > 5, f"{row['path']} is nearly flat"


def test_prompts_follow_modality_colon_description_and_vary(tmp_path):
    summary = build_demo_dataset(tmp_path, per_modality=8, size=32, seed=1)
    texts_by_modality: dict[str, set[str]] = {}
    for row in _rows(summary.csv_path):
        prefix, _, description = row["Text"].partition(": ")
        assert prefix == row["modality"]
        assert len(description) > 20
        texts_by_modality.setdefault(row["modality"], set()).add(row["Text"])
    assert all(len(texts) >= 2 for texts in texts_by_modality.values())


def test_same_seed_gives_byte_identical_csv_and_files(built, tmp_path):
    out, _ = built
    build_demo_dataset(tmp_path, per_modality=PER_MODALITY, size=SIZE, seed=7)
    assert _tree_bytes(tmp_path) == _tree_bytes(out)


def test_different_seed_changes_the_augmented_images(built, tmp_path):
    out, _ = built
    build_demo_dataset(tmp_path, per_modality=PER_MODALITY, size=SIZE, seed=8)
    # The chest X-ray has one source image, so its second PNG is augmented.
    name = "images/chest_xray/chest_xray_0001.png"
    assert (tmp_path / name).read_bytes() != (out / name).read_bytes()


def test_original_format_rows_include_dicom_and_nifti(built):
    out, summary = built
    paths = [row["path"] for row in _rows(summary.csv_path)]
    dicoms = [p for p in paths if p.endswith(".dcm")]
    niftis = [p for p in paths if p.endswith(".nii.gz")]
    assert len(dicoms) >= 2
    assert len(niftis) == 1
    volume = nibabel.load(out / niftis[0])
    assert len(volume.shape) == 3
    assert volume.shape[2] > 1


def test_copied_dicom_files_carry_no_person_names_or_private_tags(built):
    out, _ = built
    copies = sorted((out / "dicom").glob("*.dcm"))
    assert copies
    for path in copies:
        dataset = pydicom.dcmread(path)
        assert str(dataset.PatientName) in ("", "Anonymous"), path.name
        assert not dataset.get("InstitutionName"), path.name
        assert str(dataset.PatientID).startswith("DEMO"), path.name
        assert all(
            element.VR != "PN" or not element.value for element in dataset.iterall()
        )
        assert not any(element.tag.is_private for element in dataset)
        assert dataset.pixel_array.ndim == 2


def test_per_modality_below_one_is_rejected_naming_the_field(tmp_path):
    with pytest.raises(ValueError, match="per_modality"):
        build_demo_dataset(tmp_path, per_modality=0)


def test_cli_demo_subcommand_builds_into_output_dir(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    demo_command.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["demo", "--output_dir", str(tmp_path), "--per_modality", "1", "--size", "32"]
    )
    assert args.seed == 0
    assert demo_command.run(args) == 0
    assert (tmp_path / "metadata.csv").is_file()
    assert "metadata.csv" in capsys.readouterr().out


def test_cli_demo_subcommand_requires_output_dir():
    parser = argparse.ArgumentParser()
    demo_command.add_parser(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        parser.parse_args(["demo"])


def test_importing_the_demo_module_loads_neither_torch_nor_django():
    code = (
        "import sys, models_ml.engine.demo, models_ml.engine.commands.demo;"
        "print(sorted({'torch', 'django'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.stdout.strip() == "[]"
