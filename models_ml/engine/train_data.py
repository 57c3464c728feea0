"""What a training run learns from, and which of the model's parameters learn."""

from __future__ import annotations

import torch

from .backends.base import DiffusionBackend
from .data import (
    TrainingSet,
    load_training_set,
)
from .errors import DatasetError
from .feedback import (
    balance_kto_weights,
    check_kto_labels,
)
from .pairs import PairSet, load_pair_set
from .train_config import TrainConfig, TrainConfigError


def training_data(
    cfg: TrainConfig, resolution: int
) -> tuple[TrainingSet | PairSet, TrainingSet | None]:
    """What the run trains on (images with weights, labels or pairs) and the
    real images beside it, read at ``resolution``."""
    objective = cfg.resolved_objective
    main: TrainingSet | PairSet
    if cfg.pairs_csv:
        main = load_pair_set(cfg.pairs_csv, resolution)
    elif cfg.weights_csv:
        main = load_training_set(
            cfg.weights_csv,
            resolution,
            need_weight=objective != "none",
            min_weight=cfg.filter_threshold if objective == "filtered" else None,
            need_label=objective == "kto",
            equal_weights=objective == "none",
        )
        if objective == "kto":
            check_kto_labels(main)
            if cfg.kto_balance:
                assert main.labels is not None
                main.weights = balance_kto_weights(main.weights, main.labels)
    else:
        assert cfg.data_csv
        main = load_training_set(cfg.data_csv, resolution)
    real = None
    if cfg.real_csv:
        real = load_training_set(cfg.real_csv, resolution)
    elif cfg.is_finetune and cfg.data_csv:
        real = load_training_set(cfg.data_csv, resolution)
    if len(main) == 0:
        raise DatasetError(f"{main.source}: dataset is empty")
    return main, real


def trainable_parameters(
    cfg: TrainConfig, backend: DiffusionBackend
) -> list[torch.nn.Parameter]:
    """Make the parts that learn trainable (LoRA adapters or the whole UNet,
    the text encoder if asked) and return their parameters in float32; frozen
    parts run in half precision on a GPU."""
    from .backends.sd import SDBackend

    half = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.mixed_precision)
    if half and backend.device.type == "cuda" and isinstance(backend, SDBackend):
        # Frozen parts run in half precision; trained tensors stay float32.
        backend.vae.to(dtype=half)
        if not cfg.train_text_encoder:
            backend.text_encoder.to(dtype=half)
        if cfg.use_lora:
            backend.unet.to(dtype=half)
    if cfg.use_lora:
        # (validate() refuses LoRA on any other backend)
        if not isinstance(backend, SDBackend):
            raise TrainConfigError("use_lora applies to backend 'sd' only")
        backend.add_lora(cfg.lora_rank, text_encoder=cfg.train_text_encoder)
    else:
        backend.unet.requires_grad_(True)
        if isinstance(backend, SDBackend):
            backend.full_unet = True
    if cfg.gradient_checkpointing:
        backend.unet.enable_gradient_checkpointing()
    backend.unet.train()
    params = [p for p in backend.unet.parameters() if p.requires_grad]
    if cfg.train_text_encoder:
        params += [p for p in backend.text_encoder.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    return params
