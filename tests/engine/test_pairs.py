"""The DPO pairs CSV: what it accepts, and each bad row named by its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from models_ml.engine.errors import DatasetError
from models_ml.engine.pairs import load_pair_set, read_pairs_csv
from tests.engine.helpers import write_tiny_dataset


def pairs_file(folder: Path, lines: list[str]) -> Path:
    write_tiny_dataset(folder)
    path = folder / "pairs.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_platform_export_columns_read_as_they_are(tmp_path: Path) -> None:
    path = pairs_file(
        tmp_path,
        [
            "prompt,modality,chosen_image_path,chosen_image_uid,rejected_image_path,"
            "rejected_image_uid,chosen_score,rejected_score,rater",
            "'=1+1 retina,fundus,img1.png,a,img0.png,b,3,1,dr_a",
        ],
    )

    (pair,) = read_pairs_csv(path)

    assert pair.text == "=1+1 retina"
    assert pair.modality == "Fundus"
    assert (pair.chosen.name, pair.rejected.name, pair.weight) == (
        "img1.png",
        "img0.png",
        1.0,
    )


def test_pairs_decode_side_by_side_with_their_weights(tmp_path: Path) -> None:
    path = pairs_file(
        tmp_path,
        [
            "chosen_path, rejected_path, Text, weight",
            "img1.png, img0.png, red over grey, 2",
            "img3.png, img1.png, red over red, 0.5",
        ],
    )

    pairs = load_pair_set(path, 16)
    chosen, rejected = pairs.batch([1, 0])

    assert len(pairs) == 2 and tuple(chosen.pixels.shape) == (2, 3, 16, 16)
    assert pairs.weights.tolist() == [2.0, 0.5]
    assert chosen.prompts == ["red over red", "red over grey"]
    assert not bool((chosen.pixels[1] == rejected.pixels[1]).all())


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("img1.png, img1.png, same, 1", "line 2: chosen and rejected are the same"),
        ("../x.png, img1.png, escape, 1", "line 2: chosen: path '../x.png' escapes"),
        ("img1.png, missing.png, gone, 1", "line 2: rejected: file not found"),
        ("img1.png, img0.png, , 1", "line 2: prompt is empty"),
        ("img1.png, img0.png, text, -1", "line 2: weight must be a number above 0"),
        ("img1.png, img0.png, text, lots", "line 2: weight 'lots' is not a number"),
        ("img1.png, img0.png", "line 2: expected 4 columns, found 2"),
        ("http://x/a.png, img0.png, t, 1", "line 2: chosen: URLs are not allowed"),
    ],
)
def test_a_bad_row_fails_the_file_naming_its_line(
    tmp_path: Path, row: str, message: str
) -> None:
    path = pairs_file(tmp_path, ["chosen_path, rejected_path, Text, weight", row])

    with pytest.raises(DatasetError, match=message.replace("(", r"\(")):
        read_pairs_csv(path)


def test_a_repeated_pair_counts_as_two_judgements(tmp_path: Path) -> None:
    header = "chosen_path, rejected_path, Text"
    row = "img1.png, img0.png, t"
    assert len(read_pairs_csv(pairs_file(tmp_path, [header, row, row]))) == 2


def test_missing_columns_and_empty_files_are_refused(tmp_path: Path) -> None:
    header = "chosen_path, rejected_path, Text"
    no_rejected = pairs_file(tmp_path / "b", ["chosen_path, Text", "img1.png, t"])
    with pytest.raises(DatasetError, match="rejected_path or rejected_image_path"):
        read_pairs_csv(no_rejected)
    empty = pairs_file(tmp_path / "c", [header])
    with pytest.raises(DatasetError, match="no pairs"):
        read_pairs_csv(empty)
    binary = tmp_path / "d.csv"
    binary.write_bytes(b"chosen_path,rejected_path,Text\n\xff\xfe,x,y\n")
    with pytest.raises(DatasetError, match="not valid UTF-8"):
        read_pairs_csv(binary)
