"""Builders shared by the engine tests: tiny datasets, configs, SD folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models_ml.engine.backends import load_backend
from models_ml.engine.train_config import TrainConfig
from tests.sd_random import write_random_sd_folder


def write_tiny_dataset(
    folder: Path, *, count: int = 8, weights: list[float] | None = None
) -> Path:
    """Two easily told apart 'modalities': red discs and grey bars."""
    folder.mkdir(parents=True, exist_ok=True)
    header = "path, Text, modality" + (", weight" if weights else "")
    lines = [header]
    for i in range(count):
        pixels = np.zeros((24, 24, 3), np.uint8)
        if i % 2:
            pixels[..., 0] = 200
            pixels[6:18, 6:18, 1] = 120
            text, modality = "Fundus: red retina", "Fundus"
        else:
            pixels[...] = 50
            pixels[4:20, 9:15] = 230
            text, modality = "CT: grey slice", "CT"
        Image.fromarray(pixels).save(folder / f"img{i}.png")
        row = f"img{i}.png, {text}, {modality}"
        if weights:
            row += f", {weights[i]}"
        lines.append(row)
    csv_path = folder / ("weights.csv" if weights else "data.csv")
    csv_path.write_text("\n".join(lines) + "\n")
    return csv_path


def tiny_config(tmp_path: Path, **overrides: object) -> TrainConfig:
    values: dict[str, object] = {
        "output_dir": str(tmp_path / "run"),
        "resolution": 16,
        "channels": (8, 16),
        "batch_size": 4,
        "max_steps": 4,
        "learning_rate": 1e-3,
        "lr_warmup_steps": 0,
        "device": "cpu",
    }
    values.update(overrides)
    if "data_csv" not in values and "weights_csv" not in values:
        values["data_csv"] = str(write_tiny_dataset(tmp_path / "data"))
    return TrainConfig(**values)  # type: ignore[arg-type]


def unet_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in load_backend(model_dir).unet.state_dict().items()}


def write_tiny_sd_folder(folder: Path) -> Path:
    """A random Stable Diffusion v1 layout small enough for CPU tests."""
    return write_random_sd_folder(folder, characters="abcdefghijklmnopqrstuvwxyz:-")


def command_line_refusal(main: Callable[..., object], argv: list[str], capsys) -> str:
    """Run a command's ``main`` expecting argparse to refuse ``argv`` (exit 2);
    what it printed to stderr."""
    import pytest

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err
