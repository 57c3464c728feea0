"""What watches a training run: validation grids and the drift guard
(diversity of fresh samples, distance to the real images)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .backends.base import DiffusionBackend, GenerationRequest
from .data import (
    TrainingSet,
)
from .train_config import TrainConfig

# Real images the drift guard's distance is measured against, spread over the
# real data (the first few would be one modality).
DRIFT_REAL_IMAGES = 256


def spread_evenly(items: Sequence[Any], count: int) -> list[Any]:
    """``count`` items taken at even steps through ``items`` (all, if fewer),
    so samples sorted by modality cover every modality, not the first few."""
    if len(items) <= count:
        return list(items)
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


def cheap_features(pixels: torch.Tensor) -> torch.Tensor:
    """8x8 colour thumbnail plus per-channel contrast: a space cheap enough to
    watch drift in every few steps."""
    pixels = pixels.float()
    thumb = F.adaptive_avg_pool2d(pixels, 8).flatten(1)
    contrast = pixels.flatten(2).std(dim=2)
    return torch.cat([thumb, contrast * 4], dim=1)


def diversity(features: torch.Tensor) -> float:
    if len(features) < 2:
        return 0.0
    distances = torch.cdist(features, features)
    count = len(features)
    return float(distances.sum() / (count * (count - 1)))


def validation_requests(
    cfg: TrainConfig, prompt_set: TrainingSet, count: int
) -> list[GenerationRequest]:
    """The validation prompts (the config's, else the training prompts spread
    over every modality), ``count`` seeds each."""
    prompts = list(cfg.validation_prompts)
    modalities = list(cfg.validation_modalities)
    if not prompts:
        seen: dict[tuple[str, str | None], None] = {}
        for p, m in zip(prompt_set.prompts, prompt_set.modalities, strict=True):
            seen.setdefault((p, m), None)
        pairs = spread_evenly(
            sorted(seen, key=lambda pm: (str(pm[1]), pm[0])),
            max(1, cfg.drift_samples),
        )
        prompts = [p for p, _ in pairs]
        modalities = [m for _, m in pairs]
    if len(modalities) < len(prompts):
        modalities += [
            infer_modality(prompt_set, p) for p in prompts[len(modalities) :]
        ]
    return [
        GenerationRequest(prompt=p, modality=m, seed=cfg.seed + k)
        for p, m in zip(prompts, modalities, strict=True)
        for k in range(count)
    ]


def infer_modality(prompt_set: TrainingSet, prompt: str) -> str | None:
    """'CT: ...' takes modality CT when the training data knows CT."""
    head = prompt.split(":", 1)[0].strip().lower()
    for modality in prompt_set.modalities:
        if modality and modality.lower() == head:
            return modality
    return None


def validation_grid(
    cfg: TrainConfig,
    backend: DiffusionBackend,
    accelerator: Any,
    prompt_set: TrainingSet,
    folder: Path,
) -> Path:
    """Sample the validation prompts and save them as one grid in ``folder``."""
    requests = validation_requests(cfg, prompt_set, cfg.validation_images_per_prompt)
    with accelerator.autocast():
        images = backend.generate(
            requests, steps=cfg.validation_inference_steps, batch_size=16
        )
    folder.mkdir(parents=True, exist_ok=True)
    grid = image_grid(
        [g.image for g in images], columns=cfg.validation_images_per_prompt
    )
    grid_path = folder / "grid.png"
    grid.save(grid_path)
    return grid_path


def measure_drift(
    cfg: TrainConfig,
    backend: DiffusionBackend,
    accelerator: Any,
    prompt_set: TrainingSet,
    real_set: TrainingSet | None,
) -> dict[str, float]:
    """Diversity of fresh samples, and their distance to the real images."""
    requests = validation_requests(cfg, prompt_set, 1)[: cfg.drift_samples]
    while len(requests) < cfg.drift_samples:
        last = requests[-1]
        requests.append(
            GenerationRequest(last.prompt, last.modality, last.seed + len(requests))
        )
    with accelerator.autocast():
        images = backend.generate(requests, steps=10, batch_size=16)
    generated = _pil_to_tensor([g.image for g in images])
    held_out = real_set or prompt_set
    rows = spread_evenly(range(len(held_out)), DRIFT_REAL_IMAGES)
    real = held_out.pixels[list(rows)].float() / 127.5 - 1
    gen_features = cheap_features(generated)
    real_features = cheap_features(real)
    distance = float((gen_features.mean(0) - real_features.mean(0)).norm())
    return {"diversity": diversity(gen_features), "distance": distance}


def drift_verdict(
    cfg: TrainConfig, baseline: dict[str, float], now: dict[str, float], step: int
) -> str | None:
    """Why the drift guard stops training at ``step``, or None."""
    assert cfg.max_drift is not None
    floor = cfg.min_diversity_fraction * baseline["diversity"]
    if now["diversity"] < floor:
        return (
            f"drift guard at step {step}: sample diversity {now['diversity']:.4f} "
            f"fell below {cfg.min_diversity_fraction} x initial "
            f"{baseline['diversity']:.4f}"
        )
    ceiling = cfg.max_drift * max(baseline["distance"], 1e-6)
    if now["distance"] > ceiling:
        return (
            f"drift guard at step {step}: distance to real images "
            f"{now['distance']:.4f} exceeds {cfg.max_drift} x initial "
            f"{baseline['distance']:.4f}"
        )
    return None


def _pil_to_tensor(images: list[Any]) -> torch.Tensor:
    import numpy as np

    array = np.stack([np.asarray(i.convert("RGB")) for i in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2).float() / 127.5 - 1


def image_grid(images: list[Any], *, columns: int) -> Any:
    """Paste equally sized pictures into a grid, row by row."""
    from PIL import Image

    columns = max(1, min(columns, len(images)))
    rows = math.ceil(len(images) / columns)
    width, height = images[0].size
    grid = Image.new("RGB", (columns * width, rows * height))
    for i, image in enumerate(images):
        grid.paste(
            image.convert("RGB"), ((i % columns) * width, (i // columns) * height)
        )
    return grid
