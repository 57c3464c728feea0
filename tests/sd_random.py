"""A random Stable Diffusion v1-layout folder, small enough for a CPU (a test
fixture, kept out of the engine's package).

Tests and the benchmark's smoke check train and sample from it through the
same ``sd`` backend a real local Stable Diffusion folder uses; its images mean
nothing.  The tokenizer knows single characters only.
"""

from __future__ import annotations

import json
from pathlib import Path

CHARACTERS = "abcdefghijklmnopqrstuvwxyz:-,()0123456789"


def write_random_sd_folder(
    folder: Path,
    *,
    text_width: int = 16,
    text_layers: int = 1,
    unet_channels: tuple[int, int] = (8, 16),
    max_tokens: int = 32,
    train_timesteps: int = 100,
    characters: str = CHARACTERS,
    seed: int = 0,
) -> Path:
    """Save a random pipeline (UNet, VAE, CLIP text model, tokenizer) under
    ``folder/sd`` and return that path."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDPMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in characters:
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    words = folder / "vocab"
    words.mkdir(parents=True, exist_ok=True)
    (words / "vocab.json").write_text(json.dumps(vocab))
    (words / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(
        vocab_file=str(words / "vocab.json"),
        merges_file=str(words / "merges.txt"),
        model_max_length=max_tokens,
    )
    heads = max(1, text_width // 8)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=text_width,
            intermediate_size=2 * text_width,
            num_hidden_layers=text_layers,
            num_attention_heads=heads,
            max_position_embeddings=max_tokens,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=unet_channels,
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=text_width,
        attention_head_dim=max(2, unet_channels[0] // 4),
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
        scheduler=DDPMScheduler(num_train_timesteps=train_timesteps),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    target = folder / "sd"
    pipeline.save_pretrained(target, safe_serialization=True)
    return target
