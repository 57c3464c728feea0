"""The denoising loss, split so two models can be scored on the same draw.

``denoising_inputs`` draws one micro-step's noise, timesteps and dropped
prompts from a generator and noises the batch; ``prediction_losses`` runs a
UNet on those inputs and returns one loss per image. A preference objective
calls the second twice, for the model being trained and for its frozen
reference, so both see exactly the same noised images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .backends.base import DiffusionBackend
from .data import TrainingBatch


@dataclass
class DenoisingInputs:
    noisy: torch.Tensor
    timesteps: torch.Tensor
    context: torch.Tensor
    target: torch.Tensor
    # Kept so a second batch (DPO's rejected images) can share the draw.
    noise: torch.Tensor
    drop: list[bool]

    def __len__(self) -> int:
        return len(self.timesteps)

    @staticmethod
    def concat(parts: list[DenoisingInputs]) -> DenoisingInputs:
        return DenoisingInputs(
            noisy=torch.cat([p.noisy for p in parts]),
            timesteps=torch.cat([p.timesteps for p in parts]),
            context=torch.cat([p.context for p in parts]),
            target=torch.cat([p.target for p in parts]),
            noise=torch.cat([p.noise for p in parts]),
            drop=[d for p in parts for d in p.drop],
        )


def step_generator(seed: int, step: int, part: int = 0) -> torch.Generator:
    """The generator behind every random draw of one micro-step."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 7 + part)


def denoising_inputs(
    backend: DiffusionBackend,
    batch: TrainingBatch,
    *,
    generator: torch.Generator,
    cond_dropout: float = 0.0,
    train_text_encoder: bool = False,
    share: DenoisingInputs | None = None,
) -> DenoisingInputs:
    """Noise a batch of uint8 images at random timesteps.

    With ``share`` the noise, timesteps and dropped prompts are those of an
    earlier call (same batch size) instead of fresh draws.
    """
    scheduler = backend.noise_scheduler
    size = len(batch.prompts)
    pixels = batch.pixels.to(backend.device).float() / 127.5 - 1
    with torch.no_grad():
        latents = backend.images_to_latents(pixels, generator).float()
    if share is None:
        noise = torch.randn(latents.shape, generator=generator).to(latents)
        timesteps = torch.randint(
            0, scheduler.config.num_train_timesteps, (size,), generator=generator
        ).to(backend.device)
        drop = (torch.rand(size, generator=generator) < cond_dropout).tolist()
    else:
        noise, timesteps, drop = share.noise, share.timesteps, share.drop
    prompts = ["" if d else p for d, p in zip(drop, batch.prompts, strict=True)]
    modalities = [None if d else m for d, m in zip(drop, batch.modalities, strict=True)]
    context = backend.encode_prompts(
        prompts, modalities, requires_grad=train_text_encoder
    )
    noisy = scheduler.add_noise(latents, noise, timesteps)
    if backend.device.type == "cpu":
        noisy = noisy.contiguous(memory_format=torch.channels_last)
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    return DenoisingInputs(
        noisy=noisy,
        timesteps=timesteps,
        context=context,
        target=target,
        noise=noise,
        drop=drop,
    )


def losses_of_prediction(
    prediction: torch.Tensor,
    inputs: DenoisingInputs,
    scheduler: Any,
    *,
    snr_gamma: float | None = None,
) -> torch.Tensor:
    """Per-sample mean squared error (B,), Min-SNR weighted when asked."""
    losses = F.mse_loss(prediction.float(), inputs.target.float(), reduction="none")
    losses = losses.mean(dim=tuple(range(1, losses.ndim)))
    if snr_gamma:
        from diffusers.training_utils import compute_snr

        snr = compute_snr(scheduler, inputs.timesteps)
        clipped = torch.clamp(snr, max=snr_gamma)
        v = scheduler.config.prediction_type == "v_prediction"
        losses = losses * clipped / (snr + 1 if v else snr)
    return losses


def prediction_losses(
    unet: Any,
    inputs: DenoisingInputs,
    scheduler: Any,
    *,
    snr_gamma: float | None = None,
) -> torch.Tensor:
    """Run ``unet`` on the noised inputs; per-sample loss (B,)."""
    dtype = next(unet.parameters()).dtype
    pred = unet(
        inputs.noisy.to(dtype),
        inputs.timesteps,
        encoder_hidden_states=inputs.context.to(dtype),
    )
    return losses_of_prediction(pred.sample, inputs, scheduler, snr_gamma=snr_gamma)


def denoising_losses(
    backend: DiffusionBackend,
    batch: TrainingBatch,
    *,
    generator: torch.Generator,
    unet: Any | None = None,
    snr_gamma: float | None = None,
    cond_dropout: float = 0.0,
    train_text_encoder: bool = False,
) -> torch.Tensor:
    """Per-sample denoising loss (B,) for a batch of uint8 images."""
    inputs = denoising_inputs(
        backend,
        batch,
        generator=generator,
        cond_dropout=cond_dropout,
        train_text_encoder=train_text_encoder,
    )
    return prediction_losses(
        unet or backend.unet, inputs, backend.noise_scheduler, snr_gamma=snr_gamma
    )
