"""Training loop: learning, repeatability, data errors, validation, SD training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models_ml.engine.backends import load_backend
from models_ml.engine.errors import DatasetError, EngineError
from models_ml.engine.train import normalise_weights_per_prompt, train
from models_ml.engine.train_config import TrainConfig, TrainConfigError
from tests.engine.helpers import (
    tiny_config,
    unet_weights,
    write_tiny_dataset,
    write_tiny_sd_folder,
)


def test_training_loss_decreases_on_a_tiny_synthetic_set(tmp_path: Path) -> None:
    result = train(tiny_config(tmp_path, max_steps=30, learning_rate=3e-3))

    first, last = np.mean(result.losses[:5]), np.mean(result.losses[-5:])
    assert result.steps == 30
    assert last < 0.8 * first
    assert (
        result.final_dir is not None
        and (result.final_dir / "unet.safetensors").is_file()
    )


def test_two_runs_with_the_same_seed_give_identical_weights(tmp_path: Path) -> None:
    data = write_tiny_dataset(tmp_path / "data")
    first = train(
        tiny_config(tmp_path, data_csv=str(data), output_dir=str(tmp_path / "a"))
    )
    second = train(
        tiny_config(tmp_path, data_csv=str(data), output_dir=str(tmp_path / "b"))
    )

    a, b = unet_weights(first.final_dir), unet_weights(second.final_dir)
    assert first.losses == second.losses
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_different_seeds_give_different_weights(tmp_path: Path) -> None:
    data = write_tiny_dataset(tmp_path / "data")
    first = train(
        tiny_config(tmp_path, data_csv=str(data), output_dir=str(tmp_path / "a"))
    )
    other = train(
        tiny_config(
            tmp_path, data_csv=str(data), output_dir=str(tmp_path / "b"), seed=1
        )
    )

    a, b = unet_weights(first.final_dir), unet_weights(other.final_dir)
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_empty_dataset_raises_dataset_error_naming_the_csv(tmp_path: Path) -> None:
    csv_path = tmp_path / "empty.csv"
    csv_path.write_text("path,Text,modality\n")

    with pytest.raises(DatasetError, match="empty.csv"):
        train(tiny_config(tmp_path, data_csv=str(csv_path)))


def test_missing_image_file_is_reported_with_its_csv_line(tmp_path: Path) -> None:
    csv_path = write_tiny_dataset(tmp_path / "data")
    (tmp_path / "data" / "img3.png").unlink()

    with pytest.raises(DatasetError, match=r"line 5: .*img3\.png"):
        train(tiny_config(tmp_path, data_csv=str(csv_path)))


def test_csv_without_text_column_names_the_column(tmp_path: Path) -> None:
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text("path,caption\nimg.png,hello\n")

    with pytest.raises(DatasetError, match="text column"):
        train(tiny_config(tmp_path, data_csv=str(csv_path)))


def test_lora_on_the_tiny_backend_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TrainConfigError, match="use_lora"):
        train(tiny_config(tmp_path, use_lora=True))


def test_validation_grids_are_written_per_validation_step(tmp_path: Path) -> None:
    config = tiny_config(
        tmp_path,
        validation_steps=2,
        validation_prompts=["CT: grey slice", "Fundus: red retina"],
        validation_inference_steps=2,
    )
    result = train(config)

    run = Path(config.output_dir)
    assert result.validation_images == [
        run / "validation" / "step-2" / "grid.png",
        run / "validation" / "step-4" / "grid.png",
    ]
    with Image.open(result.validation_images[0]) as grid:
        assert grid.size == (2 * 16, 2 * 16)


def test_ema_model_is_saved_when_requested(tmp_path: Path) -> None:
    result = train(tiny_config(tmp_path, use_ema=True, ema_decay=0.5, snr_gamma=5.0))

    assert result.final_dir is not None
    assert load_backend(result.final_dir).version == result.version


def test_weights_are_normalised_to_mean_one_within_each_prompt() -> None:
    rows = [("a", 1.0), ("a", 3.0), ("b", 0.0), ("b", 0.0), ("c", 5.0)]

    assert normalise_weights_per_prompt(rows) == [0.5, 1.5, 0.0, 0.0, 1.0]


def test_negative_weight_is_refused() -> None:
    with pytest.raises(EngineError, match="prompt .a."):
        normalise_weights_per_prompt([("a", -1.0)])


def sd_config(tmp_path: Path, **overrides: object) -> TrainConfig:
    base = write_tiny_sd_folder(tmp_path / "base")
    return tiny_config(
        tmp_path, backend="sd", model_path=str(base), max_steps=2, **overrides
    )


def test_sd_lora_training_saves_only_adapters_that_load_back(tmp_path: Path) -> None:
    result = train(
        sd_config(tmp_path, use_lora=True, lora_rank=2, train_text_encoder=True)
    )

    model = result.final_dir
    assert model is not None
    assert sorted(p.name for p in model.iterdir()) == [
        "medrlhf_model.json",
        "text_encoder_lora.safetensors",
        "unet_lora.safetensors",
    ]
    from safetensors.torch import load_file

    saved = load_file(model / "unet_lora.safetensors")
    loaded = load_backend(model)
    from peft.utils import get_peft_model_state_dict

    restored = get_peft_model_state_dict(loaded.unet)
    assert saved.keys() == restored.keys()
    assert all(torch.equal(saved[k], restored[k]) for k in saved)


def test_sd_full_unet_training_with_ema_and_min_snr_runs(tmp_path: Path) -> None:
    result = train(
        sd_config(tmp_path, use_ema=True, snr_gamma=5.0, gradient_checkpointing=True)
    )

    assert result.final_dir is not None
    assert (result.final_dir / "unet.safetensors").is_file()
    assert load_backend(result.final_dir).name == "sd"
