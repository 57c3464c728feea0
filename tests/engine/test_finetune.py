"""Reward-weighted fine-tuning: weights, filtering, real-image anchor, drift guard."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models_ml.engine.backends import load_backend
from models_ml.engine.backends.tiny import TinyBackend, TinyConfig, create_tiny_backend
from models_ml.engine.data import (
    TrainingBatch,
    load_training_set,
    weighted_batch_indices,
)
from models_ml.engine.errors import DatasetError
from models_ml.engine.train import (
    denoising_losses,
    step_generator,
    train,
    weighted_mean,
)
from models_ml.engine.train_config import TrainConfig, TrainConfigError
from tests.engine.helpers import tiny_config, write_tiny_dataset


def gradients(backend: TinyBackend, batch: TrainingBatch) -> list[torch.Tensor]:
    backend.unet.zero_grad()
    losses = denoising_losses(backend, batch, generator=step_generator(0, 0))
    weighted_mean(losses, batch.weights).backward()
    return [p.grad.clone() for p in backend.unet.parameters() if p.grad is not None]


def test_a_sample_with_weight_zero_does_not_change_the_gradient(tmp_path: Path) -> None:
    backend = create_tiny_backend(TinyConfig(resolution=16, channels=(8, 16)))
    data = load_training_set(write_tiny_dataset(tmp_path), 16)
    batch = data.batch([0, 1])
    batch.weights = torch.tensor([1.0, 0.0])
    altered = data.batch([0, 2])
    altered.weights = torch.tensor([1.0, 0.0])

    first, second = gradients(backend, batch), gradients(backend, altered)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    batch.weights = torch.tensor([1.0, 1.0])
    assert any(
        not torch.equal(a, b)
        for a, b in zip(first, gradients(backend, batch), strict=True)
    )


def test_filtered_variant_keeps_only_rows_reaching_the_threshold(
    tmp_path: Path,
) -> None:
    weights = [0.1, 2.0, 0.5, 1.5, 0.0, 1.0, 0.2, 0.9]
    data = load_training_set(
        write_tiny_dataset(tmp_path, weights=weights),
        16,
        need_weight=True,
        min_weight=1.0,
    )

    assert len(data) == 3
    assert data.weights.tolist() == [1.0, 1.0, 1.0]


def test_threshold_that_removes_every_row_names_the_csv(tmp_path: Path) -> None:
    csv_path = write_tiny_dataset(tmp_path, weights=[0.5] * 8)

    with pytest.raises(DatasetError, match="weights.csv.*no row has weight >= 2"):
        load_training_set(csv_path, 16, need_weight=True, min_weight=2.0)


def test_weights_csv_without_weight_column_is_refused(tmp_path: Path) -> None:
    csv_path = write_tiny_dataset(tmp_path)

    with pytest.raises(DatasetError, match="'weight'"):
        load_training_set(csv_path, 16, need_weight=True)


def base_model(tmp_path: Path) -> Path:
    return create_tiny_backend(TinyConfig(resolution=16, channels=(8, 16))).save(
        tmp_path / "base"
    )


def test_finetune_with_real_images_writes_a_child_of_the_base_model(
    tmp_path: Path,
) -> None:
    base = base_model(tmp_path)
    weights = write_tiny_dataset(
        tmp_path / "synthetic", weights=[1, 0, 2, 0, 1, 1, 0, 3]
    )
    real = write_tiny_dataset(tmp_path / "real")
    config = tiny_config(
        tmp_path,
        weights_csv=str(weights),
        real_csv=str(real),
        model_path=str(base),
        beta=0.5,
        max_steps=3,
    )
    result = train(config)

    tuned = load_backend(result.final_dir)
    assert tuned.parent == load_backend(base).version
    assert tuned.version != tuned.parent


def test_drift_guard_stops_with_a_reason_when_forced(tmp_path: Path) -> None:
    weights = write_tiny_dataset(tmp_path / "synthetic", weights=[1.0] * 8)
    config = tiny_config(
        tmp_path,
        weights_csv=str(weights),
        model_path=str(base_model(tmp_path)),
        max_steps=6,
        max_drift=1.0,
        min_diversity_fraction=50.0,
        drift_check_steps=2,
        drift_samples=2,
    )
    result = train(config)

    assert result.steps == 2 and result.final_dir is None
    assert "drift guard at step 2: sample diversity" in (result.stopped_reason or "")
    assert result.drift and result.drift[0]["step"] == 2.0


def test_weighted_batches_draw_in_proportion_to_the_weights_and_repeat_exactly() -> (
    None
):
    weights = torch.tensor([0.0, 1.0, 3.0, 0.0])
    draws = [
        i
        for step in range(500)
        for i in weighted_batch_indices(weights, 8, step, seed=1)
    ]

    assert set(draws) == {1, 2}
    assert draws.count(2) / draws.count(1) == pytest.approx(3.0, rel=0.1)
    assert weighted_batch_indices(weights, 8, 7, seed=1) == draws[56:64]
    other_process = weighted_batch_indices(
        weights, 8, 7, seed=1, num_processes=2, process_index=1
    )
    assert len(other_process) == 8 and set(other_process) <= {1, 2}
    assert weighted_batch_indices(weights, 64, 7, seed=2) != weighted_batch_indices(
        weights, 64, 7, seed=1
    )
    with pytest.raises(DatasetError, match="every weight is 0"):
        weighted_batch_indices(torch.zeros(3), 4, 0, seed=0)


def test_sampled_weighting_never_trains_on_a_zero_weight_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Odd rows (Fundus) weigh 0: sampled batches hold CT rows only, and the
    # loss is their plain mean.
    weights = write_tiny_dataset(tmp_path / "synthetic", weights=[1, 0] * 4)
    seen: list[list[str]] = []
    import models_ml.engine.feedback as feedback_module

    real_inputs = feedback_module.denoising_inputs

    def spy(backend, batch, **kwargs):
        seen.append(list(batch.prompts))
        return real_inputs(backend, batch, **kwargs)

    monkeypatch.setattr(feedback_module, "denoising_inputs", spy)
    config = tiny_config(
        tmp_path,
        weights_csv=str(weights),
        model_path=str(base_model(tmp_path)),
        weighting="sample",
        max_steps=3,
    )
    result = train(config)

    assert result.final_dir is not None and len(seen) == 3
    assert all(p == "CT: grey slice" for batch in seen for p in batch)
    seen.clear()
    train(
        tiny_config(
            tmp_path / "loss",
            weights_csv=str(weights),
            model_path=str(base_model(tmp_path)),
            weighting="loss",
            max_steps=3,
        )
    )
    assert any(p == "Fundus: red retina" for batch in seen for p in batch)


def test_weighting_is_checked_before_anything_runs() -> None:
    assert TrainConfig(output_dir="out", weights_csv="w.csv").weighting == "sample"
    with pytest.raises(TrainConfigError, match="use loss or sample"):
        TrainConfig(output_dir="out", weights_csv="w.csv", weighting="both").validate()


def test_drift_samples_cover_every_modality_not_the_first_prompts() -> None:
    from models_ml.engine.train_monitor import spread_evenly

    pairs = [(f"p{i}", m) for m in ("CT", "Fundus", "MRI") for i in range(4)]
    picked = spread_evenly(pairs, 6)
    assert {m for _, m in picked} == {"CT", "Fundus", "MRI"}
    assert spread_evenly(pairs[:3], 8) == pairs[:3]
