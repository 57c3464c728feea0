"""The built-in tiny backend: a small pixel-space UNet conditioned on MiniLM.

No VAE: the UNet denoises RGB pixels directly (grayscale modalities are
replicated to three channels). The context the UNet attends to is
``[modality token, pooled prompt, prompt tokens]``; the modality token is the
frozen MiniLM embedding of the modality name, so modality conditions the model
without any extra trainable table. The text embedding is also pooled into the
timestep embedding (``addition_embed_type="text"``), which lets the prompt steer
every resolution, not only the attention layers.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data import conditioning_modality
from ..errors import EngineError
from ..readers import InvalidModalityError
from ..text import EMBED_DIM, TextEncoder
from .base import (
    DiffusionBackend,
    ModelInfo,
    load_module_weights,
    new_version_id,
    save_safetensors,
)

UNET_WEIGHTS = "unet.safetensors"
CACHE_LIMIT = 4096


@dataclass
class TinyConfig:
    # 32 px: on the demo data a 2-core CPU gets recognisable modalities within
    # about 15 minutes at this size (docs/engine.md, "Tiny model defaults").
    resolution: int = 32
    channels: tuple[int, ...] = (32, 64, 128)
    # How many of the lowest-resolution levels carry cross-attention; attention
    # at high resolution costs most of the CPU time for little gain.
    attention_levels: int = 1
    layers_per_block: int = 1
    max_prompt_tokens: int = 64
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    # v-prediction: with epsilon-prediction a small, briefly trained UNet gives
    # wild x0 estimates at high noise and deterministic samplers (DDIM, Euler)
    # then end in visible noise; v keeps those estimates bounded.
    prediction_type: str = "v_prediction"
    seed: int = 0
    text_encoder_path: str | None = field(default=None)

    def validate(self) -> None:
        factor = 2 ** (len(self.channels) - 1)
        if not 8 <= self.resolution <= 512 or self.resolution % factor:
            raise EngineError(
                f"resolution {self.resolution} must be 8-512 and divisible by "
                f"{factor} for channels {self.channels}"
            )
        if not 1 <= self.attention_levels <= len(self.channels):
            raise EngineError(
                f"attention_levels must be between 1 and {len(self.channels)}"
            )


@functools.lru_cache(maxsize=4)
def shared_text_encoder(path: str | None, device: str, max_tokens: int) -> TextEncoder:
    """One frozen MiniLM per (path, device, length): it never trains, so share it."""
    return TextEncoder(path, device=device, max_tokens=max_tokens)


def _modality_key(modality: str | None) -> str | None:
    """The name a modality token is encoded from: slug, alias and display name
    of one modality ("chest_xray", "CXR", "Chest X-ray") give the same token,
    so a platform round asking for a slug samples what training learned."""
    if modality is None or not modality.strip():
        return None
    try:
        name = conditioning_modality(modality) or modality
    except InvalidModalityError:
        name = modality
    return name.strip().lower()


def _group_count(channels: Sequence[int]) -> int:
    groups = 8
    while any(c % groups for c in channels):
        groups //= 2
    return groups


def build_unet(config: TinyConfig) -> Any:
    from diffusers import UNet2DConditionModel

    levels = len(config.channels)
    plain = levels - config.attention_levels
    down = ["DownBlock2D"] * plain + ["CrossAttnDownBlock2D"] * config.attention_levels
    up = ["CrossAttnUpBlock2D"] * config.attention_levels + ["UpBlock2D"] * plain
    heads = tuple(max(1, c // 32) for c in config.channels)
    torch.manual_seed(config.seed)
    return UNet2DConditionModel(
        sample_size=config.resolution,
        in_channels=3,
        out_channels=3,
        block_out_channels=tuple(config.channels),
        layers_per_block=config.layers_per_block,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        cross_attention_dim=EMBED_DIM,
        attention_head_dim=heads,
        norm_num_groups=_group_count(config.channels),
        addition_embed_type="text",
        addition_embed_type_num_heads=4,
    )


def build_noise_scheduler(config: TinyConfig) -> Any:
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule=config.beta_schedule,
        clip_sample=True,
        prediction_type=config.prediction_type,
    )


class TinyBackend(DiffusionBackend):
    name = "tiny"
    # Unguided: on the demo model it was as realistic as guidance 3 and
    # closer to the real images (bench/sampler.py), at half the UNet passes;
    # and a fine-tune learns from samples of the model's own distribution.
    default_guidance = 1.0

    def __init__(
        self,
        config: TinyConfig,
        *,
        unet: Any | None = None,
        device: str | torch.device = "cpu",
        version: str | None = None,
        parent: str | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.resolution = config.resolution
        self.device = torch.device(device)
        self.unet = (unet or build_unet(config)).to(self.device)
        if self.device.type == "cpu":
            self.unet = self.unet.to(memory_format=torch.channels_last)
        self.noise_scheduler = build_noise_scheduler(config)
        self.text_encoder = shared_text_encoder(
            config.text_encoder_path, str(self.device), config.max_prompt_tokens
        )
        self.version = version or new_version_id(self.name)
        self.parent = parent
        self._cache: dict[tuple[str, str | None], torch.Tensor] = {}

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (3, self.resolution, self.resolution)

    def images_to_latents(
        self, pixels: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return pixels

    def latents_to_images(self, latents: torch.Tensor) -> torch.Tensor:
        return latents

    def encode_prompts(
        self,
        prompts: Sequence[str],
        modalities: Sequence[str | None],
        *,
        requires_grad: bool = False,
    ) -> torch.Tensor:
        if len(prompts) != len(modalities):
            raise EngineError("prompts and modalities differ in length")
        keys = [(p, _modality_key(m)) for p, m in zip(prompts, modalities, strict=True)]
        missing = sorted({k for k in keys if k not in self._cache}, key=str)
        if missing:
            self._encode_missing(missing)
        return torch.stack([self._cache[k] for k in keys]).to(self.device)

    def _encode_missing(self, keys: list[tuple[str, str | None]]) -> None:
        texts = sorted({p for p, _ in keys})
        names = sorted({m for _, m in keys if m})
        encoded = self.text_encoder.encode(texts)
        by_text = {
            t: torch.cat([encoded.pooled[i : i + 1], encoded.hidden[i]]).cpu()
            for i, t in enumerate(texts)
        }
        by_modality: dict[str | None, torch.Tensor] = {None: torch.zeros(1, EMBED_DIM)}
        if names:
            pooled = self.text_encoder.encode(names).pooled.cpu()
            by_modality.update({n: pooled[i : i + 1] for i, n in enumerate(names)})
        if len(self._cache) + len(keys) > CACHE_LIMIT:
            self._cache.clear()
        for prompt, modality in keys:
            self._cache[(prompt, modality)] = torch.cat(
                [by_modality[modality], by_text[prompt]]
            )

    def save(
        self, directory: Path | str, *, parent: str | None = None, half: bool = False
    ) -> Path:
        """Write the model; ``half`` stores float16 weights (half the size), which
        load back into the float32 UNet."""
        directory = Path(directory)
        config = dataclasses.asdict(self.config)
        config["channels"] = list(self.config.channels)
        state = self.unet.state_dict()
        if half:
            state = {
                k: v.half() if v.is_floating_point() else v for k, v in state.items()
            }
        save_safetensors(state, directory / UNET_WEIGHTS)
        ModelInfo(
            backend=self.name,
            resolution=self.resolution,
            channels=3,
            config=config,
            version=self.version,
            parent=parent if parent is not None else self.parent,
            weights={"unet": UNET_WEIGHTS},
        ).write(directory)
        return directory

    def load_weights(self, directory: Path) -> None:
        info = ModelInfo.read(directory)
        name = (info.weights or {}).get("unet", UNET_WEIGHTS)
        load_module_weights(self.unet, directory / name)


def tiny_config_from_dict(data: dict[str, Any]) -> TinyConfig:
    known = {f.name for f in dataclasses.fields(TinyConfig)}
    values = {k: v for k, v in data.items() if k in known}
    if "channels" in values:
        values["channels"] = tuple(int(c) for c in values["channels"])
    return TinyConfig(**values)


def create_tiny_backend(
    config: TinyConfig | None = None, *, device: str | torch.device = "cpu"
) -> TinyBackend:
    """A freshly initialised tiny backend; weights depend only on ``config.seed``."""
    return TinyBackend(config or TinyConfig(), device=device)


def load_tiny_backend(
    directory: Path, info: ModelInfo, *, device: str | torch.device = "cpu"
) -> TinyBackend:
    config = tiny_config_from_dict(info.config)
    backend = TinyBackend(
        config, device=device, version=info.version, parent=info.parent
    )
    backend.load_weights(directory)
    return backend
