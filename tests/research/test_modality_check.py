"""The modality check: per-modality shares from the program, side by side."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models_ml.engine.backends.tiny import TinyConfig, create_tiny_backend
from models_ml.engine.errors import EngineError
from research.modality_check import (
    CheckConfig,
    main,
    modality_table,
    run_check,
)

pytestmark = pytest.mark.research


class _Program:
    """A stand-in for the fitted program: the image's mean brightness decides."""

    classes = ["Dark", "Light"]

    def rate(self, images, modalities):
        taken = self._taken(images)
        return [
            (3 if t == m and np.asarray(im).mean() not in (0, 255) else 2)
            if t == m
            else 1
            for im, t, m in zip(images, taken, modalities, strict=True)
        ]

    def _taken(self, images):
        return ["Light" if np.asarray(im).mean() > 127 else "Dark" for im in images]

    def _features(self, images):
        return self._taken(images)

    class classifier:  # noqa: N801 - mirrors sklearn's attribute
        @staticmethod
        def predict(taken):
            return np.array(taken)


def _gray(value: int) -> Image.Image:
    return Image.new("RGB", (8, 8), (value,) * 3)


def test_table_gives_recognised_realistic_and_what_else_each_was_seen_as() -> None:
    images = [_gray(10), _gray(0), _gray(200), _gray(250), _gray(255), _gray(30)]
    modalities = ["Dark", "Dark", "Light", "Light", "Light", "Light"]

    table = modality_table(_Program(), images, modalities)

    assert list(table) == ["Dark", "Light"]
    assert table["Dark"] == {
        "n": 2,
        "recognised": 1.0,
        "realistic": 0.5,
        "seen_as": {},
    }
    assert table["Light"]["recognised"] == 0.75
    assert table["Light"]["realistic"] == 0.5
    assert table["Light"]["seen_as"] == {"Dark": 1}


@pytest.fixture
def untrained_model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    backend = create_tiny_backend(TinyConfig(resolution=16, channels=(8, 16)))
    return backend.save(tmp_path / "model")


@pytest.mark.slow  # builds the demo data: about 15 s
def test_check_compares_models_on_the_same_prompts_and_writes_a_report(
    tmp_path: Path, untrained_model: Path
) -> None:
    torch.set_num_threads(1)
    config = CheckConfig(
        model_paths=(untrained_model, untrained_model),
        output_dir=tmp_path / "out",
        images_per_modality=3,
        demo_per_modality=10,
        sample_steps=2,
        modalities=("CT", "Fundus"),
    )

    report = run_check(config)

    assert set(report["ceiling"]) == {"CT", "Fundus"}
    assert report["rater"]["classes"] == ["CT", "Fundus"]
    assert report["config"]["resolution"] == 16
    [only] = report["models"].values()  # the same folder twice is checked once
    for row in only["per_modality"].values():
        assert row["n"] == 3 and 0 <= row["realistic"] <= row["recognised"] <= 1
    assert Image.open(only["grid"]).size == (3 * 64, 2 * 64)
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["models"] == report["models"]
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| CT |" in markdown and "| Fundus |" in markdown


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_paths": ()}, "at least one --model_path"),
        ({"images_per_modality": 1}, "at least 2"),
        ({"model_paths": (Path("/nonexistent/model"),)}, "no such model folder"),
        ({"modalities": ("Dermoscopy",)}, "no demo images of"),
    ],
)
def test_check_refuses_what_it_cannot_run(
    tmp_path: Path, untrained_model: Path, change: dict, message: str
) -> None:
    values = {
        "model_paths": (untrained_model,),
        "output_dir": tmp_path / "out",
        "images_per_modality": 2,
        "demo_per_modality": 10,
        "sample_steps": 1,
        **change,
    }
    with pytest.raises(EngineError, match=message):
        run_check(CheckConfig(**values))


def test_command_names_a_missing_model_folder(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--model_path", str(tmp_path / "nope"), "--output_dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "nope: no such model folder" in capsys.readouterr().err
