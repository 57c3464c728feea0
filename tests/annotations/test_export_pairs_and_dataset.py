"""Preference pairs and the dataset zip, on hand-built ratings."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.utils import timezone

from annotations.export_dataset import dataset_zip_stream, ratings_for_dataset
from annotations.export_pairs import PAIR_COLUMNS, pair_rows, ratings_for_pairs
from annotations.models import (
    AuditEvent,
    ImageSource,
    RaterProfile,
    Rating,
    Round,
    RoundStatus,
)
from models_ml.engine.readers.manifest import parse_manifest
from models_ml.engine.reward_data import read_ratings_csv
from models_ml.models import ModelKind, ModelVersion
from tests.factories import ImageFactory, UserFactory

pytestmark = pytest.mark.django_db

HOSTILE = '=HYPERLINK("http://evil")'


def _doctor(name: str, level: str) -> Any:
    user = UserFactory(role="physician", username=name)
    RaterProfile.objects.filter(user=user).update(expert_level=level)
    return user


def _rate(rnd: Round, rater: Any, image: Any, score: int, **fields: Any) -> Rating:
    return Rating.objects.create(
        round=rnd, rater=rater, image=image, score=score, **fields
    )


@pytest.fixture
def world() -> dict[str, Any]:
    """Two physicians, two prompts, two rounds, with ties, a retracted rating
    and a repeat that would each make a wrong pair if they counted."""
    dr_a = _doctor("dr_a", "expert")
    dr_b = _doctor("@dr_b", "trainee")
    model = ModelVersion.objects.create(
        name="tiny v2", kind=ModelKind.DIFFUSION, path="/m"
    )
    gen = {"source": ImageSource.GENERATED, "model_version": model}
    a, b, c, d = (ImageFactory(prompt=HOSTILE, modality="ct", **gen) for _ in "abcd")
    other = ImageFactory(prompt="axial head", modality="ct")
    later = ImageFactory(prompt=HOSTILE, modality="ct", **gen)
    r1 = Round.objects.create(name="round one", status=RoundStatus.RATING)
    r2 = Round.objects.create(name="round two", status=RoundStatus.RATING)
    _rate(r1, dr_a, a, 3)
    _rate(r1, dr_a, b, 1)
    _rate(r1, dr_a, c, 2)
    _rate(r1, dr_a, d, 2)  # ties with c: no pair between them
    _rate(r1, dr_a, a, 1, is_repeat=True)  # would make c over a, d over a
    _rate(r1, dr_a, other, 3)  # another prompt: no pair with a..d
    _rate(r1, dr_b, a, 1)
    _rate(r1, dr_b, b, 3, retracted_at=timezone.now())  # would make b over a
    _rate(r1, dr_b, c, 2)  # across physicians never: only dr_b's own c over a
    _rate(r2, dr_a, later, 1)  # another round: no pair with round one
    return {
        "dr_a": dr_a,
        "dr_b": dr_b,
        "images": {"a": a, "b": b, "c": c, "d": d, "other": other, "later": later},
        "r1": r1,
        "r2": r2,
    }


def _pairs(round_id: int | None = None) -> list[dict[str, str]]:
    text = "".join(pair_rows(ratings_for_pairs(round_id=round_id)))
    return list(csv.DictReader(io.StringIO(text)))


def _named(world: dict[str, Any], rows: list[dict[str, str]]) -> list[tuple]:
    by_uid = {im.uid.hex: name for name, im in world["images"].items()}
    return [
        (
            row["rater"],
            by_uid[row["chosen_image_uid"]],
            by_uid[row["rejected_image_uid"]],
            row["chosen_score"],
            row["rejected_score"],
        )
        for row in rows
    ]


def test_pairs_are_one_physicians_higher_over_lower_score_within_prompt_and_round(
    world,
):
    rows = _pairs()
    assert list(rows[0]) == list(PAIR_COLUMNS)
    assert _named(world, rows) == [
        ("dr_a", "a", "b", "3", "1"),
        ("dr_a", "a", "c", "3", "2"),
        ("dr_a", "a", "d", "3", "2"),
        ("dr_a", "c", "b", "2", "1"),
        ("dr_a", "d", "b", "2", "1"),
        ("'@dr_b", "c", "a", "2", "1"),
    ]


def test_pair_rows_carry_round_provenance_and_rater_level(world):
    row = _pairs()[0]
    a, b = world["images"]["a"], world["images"]["b"]
    assert row["round"] == "round one" and row["round_id"] == str(world["r1"].pk)
    assert row["expert_level"] == "expert" and row["modality"] == "ct"
    assert row["chosen_image_path"] == a.file.name
    assert row["rejected_image_path"] == b.file.name
    assert row["chosen_model_version"] == row["rejected_model_version"] == "tiny v2"
    assert row["chosen_source"] == "generated"


def test_pair_prompts_and_names_that_look_like_formulas_are_escaped(world):
    rows = _pairs()
    assert {row["prompt"] for row in rows} == {"'" + HOSTILE}
    assert rows[-1]["rater"] == "'@dr_b"


def test_pairs_of_one_round_and_of_a_round_without_pairs(world):
    assert len(_pairs(world["r1"].pk)) == 6
    assert _pairs(world["r2"].pk) == []


def test_pairs_come_in_the_same_order_every_time(world):
    first = "".join(pair_rows(ratings_for_pairs()))
    assert first == "".join(pair_rows(ratings_for_pairs()))


def test_pairs_export_with_no_ratings_is_a_header_only_csv():
    text = "".join(pair_rows(ratings_for_pairs()))
    assert text == ",".join(PAIR_COLUMNS) + "\n"


# --- dataset zip --------------------------------------------------------------


def _zip(round_id: int | None = None, scope: str = "all rounds") -> zipfile.ZipFile:
    data = b"".join(
        dataset_zip_stream(ratings_for_dataset(round_id=round_id), scope=scope)
    )
    return zipfile.ZipFile(io.BytesIO(data))


def _metadata(archive: zipfile.ZipFile) -> list[dict[str, Any]]:
    lines = archive.read("metadata.jsonl").decode().splitlines()
    return [json.loads(line) for line in lines]


def test_dataset_zip_holds_each_rated_image_once_with_its_metadata(world):
    archive = _zip()
    images = world["images"]
    names = set(archive.namelist())
    expected = {f"images/{im.uid.hex}.png" for im in images.values()}
    assert names == expected | {"README.txt", "metadata.jsonl", "ratings.csv"}
    for name, im in images.items():
        with default_storage.open(im.file.name, "rb") as handle:
            assert archive.read(f"images/{im.uid.hex}.png") == handle.read(), name
    assert archive.testzip() is None


def test_dataset_metadata_lists_every_physicians_first_live_score(world):
    rows = {row["image_uid"]: row for row in _metadata(_zip())}
    a = rows[world["images"]["a"].uid.hex]
    assert a["file_name"] == f"images/{a['image_uid']}.png"
    assert a["prompt"] == HOSTILE  # JSON, not a spreadsheet: kept verbatim
    assert a["modality"] == "ct" and a["source"] == "generated"
    assert a["model_version"] == "tiny v2" and a["round"] == "round one"
    assert a["ratings"] == [
        {"rater": "dr_a", "score": 3, "expert_level": "expert", "round": "round one"},
        {"rater": "@dr_b", "score": 1, "expert_level": "trainee", "round": "round one"},
    ]
    assert a["n_ratings"] == 2 and a["mean_score"] == 2.0
    b = rows[world["images"]["b"].uid.hex]  # dr_b's 3 was retracted
    assert [r["score"] for r in b["ratings"]] == [1] and b["mean_score"] == 1.0
    other = rows[world["images"]["other"].uid.hex]
    assert other["source"] == "real" and other["model_version"] == ""


def test_dataset_metadata_lines_share_keys_and_types_for_imagefolder(world, tmp_path):
    archive = _zip()
    archive.extractall(tmp_path)
    rows = _metadata(archive)
    shapes = {tuple((k, type(v).__name__) for k, v in row.items()) for row in rows}
    assert len(shapes) == 1
    # imagefolder resolves file_name against the folder metadata.jsonl is in.
    for row in rows:
        assert (tmp_path / row["file_name"]).is_file()
    # Other files are ignored by imagefolder; only one metadata file exists.
    assert [p.name for p in tmp_path.glob("metadata.*")] == ["metadata.jsonl"]


def test_dataset_ratings_csv_trains_the_engine_and_reads_as_a_manifest(world, tmp_path):
    _zip().extractall(tmp_path)
    records = read_ratings_csv(tmp_path / "ratings.csv")
    assert len(records) == 8  # live first ratings only
    assert all(Path(r.image_path).is_file() for r in records)
    assert sorted(r.rating for r in records) == [1, 1, 1, 2, 2, 2, 3, 3]
    # The import reader takes one row per image: the second physician's row of
    # an image is reported as a duplicate, never as a bad path or column.
    manifest = parse_manifest(tmp_path / "ratings.csv")
    assert len(manifest.rows) == 6
    assert {e.message.split(" (")[0][:12] for e in manifest.errors} == {"duplicate of"}


def test_dataset_zip_of_one_round_holds_only_its_images(world):
    rows = _metadata(_zip(world["r2"].pk, scope="round round two"))
    assert [r["image_uid"] for r in rows] == [world["images"]["later"].uid.hex]


def test_empty_dataset_export_is_a_zip_that_says_it_is_empty():
    archive = _zip()
    assert archive.read("metadata.jsonl") == b""
    assert archive.read("ratings.csv").decode().startswith("image_path,rating,")
    assert "This export is empty" in archive.read("README.txt").decode()


def test_image_missing_from_storage_is_left_out_and_named_in_the_readme(world):
    gone = world["images"]["d"]
    default_storage.delete(gone.file.name)
    archive = _zip()
    assert f"images/{gone.uid.hex}.png" not in archive.namelist()
    assert gone.uid.hex not in {r["image_uid"] for r in _metadata(archive)}
    assert gone.uid.hex in archive.read("README.txt").decode()


def test_dataset_zip_names_images_by_uid_not_by_uploaded_file_name(world):
    names = _zip().namelist()
    assert not any("image" in Path(n).stem for n in names if n.endswith(".png"))


# --- management command --------------------------------------------------------


def test_export_command_writes_pairs_and_audits(world, tmp_path):
    out = tmp_path / "pairs.csv"
    call_command("export_ratings", "--format", "pairs", "-o", str(out))
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 6
    assert AuditEvent.objects.filter(action="export_pairs").exists()


def test_export_command_writes_the_dataset_zip_and_audits(world, tmp_path):
    out = tmp_path / "dataset.zip"
    call_command(
        "export_ratings",
        "--format",
        "dataset",
        "--round",
        str(world["r1"].pk),
        "-o",
        str(out),
    )
    with zipfile.ZipFile(out) as archive:
        assert len(_metadata(archive)) == 5
    assert AuditEvent.objects.filter(action="export_dataset").exists()


def test_export_command_refuses_a_dataset_to_stdout_and_an_unknown_round():
    with pytest.raises(CommandError, match="--output"):
        call_command("export_ratings", "--format", "dataset")
    with pytest.raises(CommandError, match="no such round"):
        call_command("export_ratings", "--round", "999999")


def _noise_png(side: int, seed: int) -> bytes:
    import numpy as np
    from PIL import Image as PILImage

    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), "uint8")
    buf = io.BytesIO()
    PILImage.fromarray(pixels, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def test_dataset_zip_memory_stays_near_one_image_not_the_whole_export():
    import tracemalloc

    from django.core.files.base import ContentFile

    rater = _doctor("dr_mem", "expert")
    rnd = Round.objects.create(name="big", status=RoundStatus.RATING)
    for seed in range(24):
        image = ImageFactory(file=ContentFile(_noise_png(400, seed), name="n.png"))
        _rate(rnd, rater, image, 1 + seed % 3)
    one_image = len(_noise_png(400, 0))  # ~480 KB, incompressible
    tracemalloc.start()
    total = 0
    try:
        for piece in dataset_zip_stream(ratings_for_dataset(round_id=rnd.pk)):
            total += len(piece)
            del piece
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total > 24 * one_image  # the images really went through
    assert peak < 4 * one_image + 2 * 1024 * 1024, (peak, total)
