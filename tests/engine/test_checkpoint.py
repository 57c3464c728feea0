"""Checkpoints: atomic safetensors folders, pruning, exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models_ml.engine.checkpoint import CheckpointError, list_checkpoints
from models_ml.engine.train import train
from tests.engine.helpers import tiny_config, unet_weights, write_tiny_dataset


def test_checkpoints_are_complete_folders_of_safetensors_and_json(
    tmp_path: Path,
) -> None:
    config = tiny_config(tmp_path, max_steps=4, checkpointing_steps=2, use_ema=True)
    train(config)

    run = Path(config.output_dir)
    checkpoints = list_checkpoints(run)
    assert [c.name for c in checkpoints] == ["checkpoint-2", "checkpoint-4"]
    assert not [p for p in run.iterdir() if p.name.startswith(".")]
    suffixes = {p.suffix for p in checkpoints[-1].rglob("*") if p.is_file()}
    assert suffixes == {".safetensors", ".json"}


def test_only_the_newest_checkpoints_are_kept(tmp_path: Path) -> None:
    config = tiny_config(
        tmp_path, max_steps=6, checkpointing_steps=2, checkpoints_total_limit=2
    )
    result = train(config)

    assert [c.name for c in result.checkpoints] == ["checkpoint-4", "checkpoint-6"]


def test_resumed_run_matches_an_uninterrupted_one(tmp_path: Path) -> None:
    data = str(write_tiny_dataset(tmp_path / "data"))
    whole = train(
        tiny_config(
            tmp_path, data_csv=data, output_dir=str(tmp_path / "whole"), max_steps=6
        )
    )
    interrupted = tiny_config(
        tmp_path,
        data_csv=data,
        output_dir=str(tmp_path / "parts"),
        max_steps=6,
        checkpointing_steps=2,
    )
    calls = iter(range(100))
    stopped = train(interrupted, should_stop=lambda: next(calls) == 2)
    interrupted.resume = "latest"
    resumed = train(interrupted)

    assert stopped.steps == 3 and stopped.final_dir is None
    assert "stopped on request" in (stopped.stopped_reason or "")
    assert resumed.steps == 6 and resumed.losses == whole.losses
    a, b = unet_weights(whole.final_dir), unet_weights(resumed.final_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_from_a_folder_that_is_not_a_checkpoint_is_refused(
    tmp_path: Path,
) -> None:
    with pytest.raises(CheckpointError, match="trainer_state.json"):
        train(tiny_config(tmp_path, resume=str(tmp_path)))


def test_resume_latest_without_checkpoints_starts_from_scratch(tmp_path: Path) -> None:
    result = train(tiny_config(tmp_path, max_steps=2, resume="latest"))

    assert result.steps == 2 and len(result.losses) == 2
