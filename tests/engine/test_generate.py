"""Generation to disk: PNGs, provenance manifests, baseline side by side."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from PIL import Image

from models_ml.engine.backends.base import GenerationRequest
from models_ml.engine.backends.tiny import TinyConfig, create_tiny_backend
from models_ml.engine.generate import MANIFEST_FIELDS, generate_images


def saved_model(folder: Path, seed: int = 0) -> Path:
    backend = create_tiny_backend(
        TinyConfig(resolution=16, channels=(8, 16), seed=seed)
    )
    return backend.save(folder)


def test_manifest_records_full_provenance_for_every_image(tmp_path: Path) -> None:
    model = saved_model(tmp_path / "model")
    requests = [
        GenerationRequest("CT: slice", "CT", 11),
        GenerationRequest("Fundus: retina", "Fundus", 12),
    ]
    result = generate_images(
        model,
        requests,
        output_dir=tmp_path / "out",
        steps=2,
        guidance=2.5,
        scheduler="dpm",
    )

    rows = [json.loads(line) for line in result.manifest_jsonl.read_text().splitlines()]
    with open(result.manifest_csv, newline="") as handle:
        table = list(csv.DictReader(handle))
    version = json.loads((model / "medrlhf_model.json").read_text())["version"]
    assert [r["seed"] for r in rows] == [11, 12]
    assert {r["modality"] for r in rows} == {"CT", "Fundus"}
    assert all(r["model_version"] == version for r in rows)
    assert all(r["model_path"] == str(model.resolve()) for r in rows)
    assert all(r["scheduler"] == "dpm" and r["steps"] == 2 for r in rows)
    assert all(r["guidance"] == 2.5 and r["created_at"] for r in rows)
    assert tuple(table[0]) == MANIFEST_FIELDS and table[1]["prompt"] == "Fundus: retina"
    assert all((tmp_path / "out" / r["file_name"]).is_file() for r in rows)


def test_baseline_and_finetuned_sets_come_with_a_side_by_side_grid(
    tmp_path: Path,
) -> None:
    baseline = saved_model(tmp_path / "base", seed=0)
    tuned = saved_model(tmp_path / "tuned", seed=1)
    requests = [GenerationRequest("CT: slice", "CT", s) for s in (1, 2, 3)]
    result = generate_images(
        tuned,
        requests,
        output_dir=tmp_path / "out",
        steps=2,
        baseline_model_dir=baseline,
    )

    roles = [f.role for f in result.files]
    assert roles == ["baseline"] * 3 + ["finetuned"] * 3
    assert len(list((tmp_path / "out" / "baseline").glob("*.png"))) == 3
    assert result.side_by_side is not None
    with Image.open(result.side_by_side) as grid:
        assert grid.size[1] == 3 * 16 and grid.size[0] > 2 * 16


def test_progress_reports_reach_the_total(tmp_path: Path) -> None:
    model = saved_model(tmp_path / "model")
    seen: list[tuple[int, int]] = []
    generate_images(
        model,
        [GenerationRequest("x", None, 0)] * 3,
        output_dir=tmp_path / "out",
        steps=2,
        batch_size=2,
        progress=lambda d, t: seen.append((d, t)),
    )

    assert seen[-1] == (6, 6)
