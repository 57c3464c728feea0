"""A random Stable Diffusion v1-layout folder for the benchmark's CPU smoke check.

Real figures need a real SD folder and a GPU; this only proves the ``sd`` path
of ``bench/engine.py`` runs end to end.
"""

from __future__ import annotations

import json
from pathlib import Path


def write_tiny_sd_folder(folder: Path) -> Path:
    """Save a tiny random SD pipeline (UNet, VAE, CLIP text model, tokenizer).

    The tokenizer has single characters only, so its length limit is raised
    to take the demo prompts whole.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        DDPMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    letters = "abcdefghijklmnopqrstuvwxyz:-,()0123456789"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in letters:
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    words = folder / "vocab"
    words.mkdir(parents=True, exist_ok=True)
    (words / "vocab.json").write_text(json.dumps(vocab))
    (words / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(
        vocab_file=str(words / "vocab.json"),
        merges_file=str(words / "merges.txt"),
        model_max_length=256,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=256,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
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
        scheduler=DDPMScheduler(num_train_timesteps=1000),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    target = folder / "sd"
    pipeline.save_pretrained(target, safe_serialization=True)
    return target
