"""Builders shared by the engine tests: tiny datasets, configs, SD folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models_ml.engine.backends import load_backend
from models_ml.engine.train import TrainConfig


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
    from diffusers import (
        AutoencoderKL,
        DDPMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in "abcdefghijklmnopqrstuvwxyz:-":
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    (folder / "vocab").mkdir(parents=True)
    (folder / "vocab" / "vocab.json").write_text(json.dumps(vocab))
    (folder / "vocab" / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(
        vocab_file=str(folder / "vocab" / "vocab.json"),
        merges_file=str(folder / "vocab" / "merges.txt"),
        model_max_length=32,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=32,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=16,
    )
    pipeline = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=DDPMScheduler(num_train_timesteps=100),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    target = folder / "sd"
    pipeline.save_pretrained(target, safe_serialization=True)
    return target
