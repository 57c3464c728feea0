"""Stable Diffusion backend: any local diffusers folder in the v1.x layout.

The folder holds ``unet``, ``vae``, ``text_encoder``, ``tokenizer`` and
``scheduler``. Only local safetensors files are read. A fine-tuned model is
saved as a small folder that names its base folder and holds either the whole
UNet or LoRA adapters (UNet, optionally text encoder), always as safetensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import EngineError, PromptTooLongError, WeightsFormatError
from .base import (
    DiffusionBackend,
    ModelInfo,
    check_state_dict,
    load_module_weights,
    load_safetensors,
    new_version_id,
    save_safetensors,
)

UNET_WEIGHTS = "unet.safetensors"
UNET_LORA = "unet_lora.safetensors"
TEXT_LORA = "text_encoder_lora.safetensors"
UNET_LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
TEXT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
SD_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


def fold_modality(prompt: str, modality: str | None) -> str:
    """SD has no modality input: prefix it to the prompt unless already there."""
    if not modality or prompt.lower().startswith(modality.lower()):
        return prompt
    return f"{modality}: {prompt}" if prompt else modality


class SDBackend(DiffusionBackend):
    name = "sd"
    default_steps = 50
    default_guidance = 7.5

    def __init__(
        self,
        base_path: Path | str,
        *,
        device: str | torch.device = "cpu",
        version: str | None = None,
        parent: str | None = None,
    ) -> None:
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        self.base_path = Path(base_path).resolve()
        missing = [p for p in SD_PARTS if not (self.base_path / p).is_dir()]
        if missing:
            raise EngineError(
                f"{self.base_path}: not a Stable Diffusion folder, "
                f"missing {', '.join(missing)}"
            )
        self.device = torch.device(device)
        kwargs: dict[str, Any] = {"local_files_only": True, "use_safetensors": True}
        try:
            self.unet = UNet2DConditionModel.from_pretrained(
                self.base_path, subfolder="unet", **kwargs
            )
            self.vae = AutoencoderKL.from_pretrained(
                self.base_path, subfolder="vae", **kwargs
            )
            self.text_encoder = CLIPTextModel.from_pretrained(
                self.base_path / "text_encoder", **kwargs
            )
        except OSError as exc:
            raise WeightsFormatError(f"{self.base_path}: {exc}") from exc
        self.tokenizer = CLIPTokenizer.from_pretrained(
            self.base_path / "tokenizer", local_files_only=True
        )
        self.noise_scheduler = DDPMScheduler.from_pretrained(
            self.base_path, subfolder="scheduler", local_files_only=True
        )
        self.vae.requires_grad_(False).eval()
        self.text_encoder.requires_grad_(False).eval()
        self.unet.to(self.device)
        self.vae.to(self.device)
        self.text_encoder.to(self.device)
        self.vae_scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.resolution = int(self.unet.config.sample_size) * self.vae_scale
        self.version = version or new_version_id(self.name)
        self.parent = parent
        self.lora_rank: int | None = None
        self.text_lora = False
        self.full_unet = False

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        size = self.resolution // self.vae_scale
        return (int(self.unet.config.in_channels), size, size)

    def set_resolution(self, resolution: int) -> None:
        if resolution % (self.vae_scale * 8):
            raise EngineError(
                f"resolution {resolution} must be divisible by {self.vae_scale * 8}"
            )
        self.resolution = resolution

    def images_to_latents(
        self, pixels: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        dist = self.vae.encode(pixels.to(self.device, self.vae.dtype)).latent_dist
        noise = torch.randn(dist.mean.shape, generator=generator).to(dist.mean)
        latents: torch.Tensor = dist.mean + dist.std * noise
        scale: float = self.vae.config.scaling_factor
        return latents * scale

    def latents_to_images(self, latents: torch.Tensor) -> torch.Tensor:
        latents = latents.to(self.vae.dtype) / self.vae.config.scaling_factor
        pixels: torch.Tensor = self.vae.decode(latents).sample
        return pixels

    def encode_prompts(
        self,
        prompts: Sequence[str],
        modalities: Sequence[str | None],
        *,
        requires_grad: bool = False,
    ) -> torch.Tensor:
        texts = [fold_modality(p, m) for p, m in zip(prompts, modalities, strict=True)]
        limit = self.tokenizer.model_max_length
        for text, ids in zip(texts, self.tokenizer(texts)["input_ids"], strict=True):
            if len(ids) > limit:
                raise PromptTooLongError(
                    f"prompt has {len(ids)} tokens, the encoder takes at most "
                    f"{limit}: {text[:80]!r}"
                )
        ids = self.tokenizer(
            texts,
            padding="max_length",
            max_length=limit,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.device)
        with torch.set_grad_enabled(requires_grad):
            hidden: torch.Tensor = self.text_encoder(ids)[0]
            return hidden

    def add_lora(self, rank: int, *, text_encoder: bool = False) -> None:
        """Attach LoRA adapters; only they train afterwards.

        A model that already carries adapters (a LoRA fine-tune being
        fine-tuned again) keeps them, at their rank, and trains them further.
        """
        from peft import LoraConfig

        self.unet.requires_grad_(False)
        if self.lora_rank:
            for name, param in self.unet.named_parameters():
                param.requires_grad_("lora_" in name)
            if text_encoder and self.text_lora:
                for name, param in self.text_encoder.named_parameters():
                    param.requires_grad_("lora_" in name)
                self.text_encoder.train()
                return
            if not text_encoder:
                return
            rank = self.lora_rank
        else:
            self.unet.add_adapter(
                LoraConfig(
                    r=rank,
                    lora_alpha=rank,
                    init_lora_weights="gaussian",
                    target_modules=UNET_LORA_TARGETS,
                )
            )
        if text_encoder:
            self.text_encoder.add_adapter(
                LoraConfig(
                    r=rank,
                    lora_alpha=rank,
                    init_lora_weights="gaussian",
                    target_modules=TEXT_LORA_TARGETS,
                )
            )
            self.text_encoder.train()
        self.lora_rank = rank
        self.text_lora = text_encoder

    def save(self, directory: Path | str, *, parent: str | None = None) -> Path:
        from peft.utils import get_peft_model_state_dict

        directory = Path(directory)
        weights: dict[str, str] = {}
        if self.lora_rank:
            save_safetensors(
                get_peft_model_state_dict(self.unet), directory / UNET_LORA
            )
            weights["unet_lora"] = UNET_LORA
            if self.text_lora:
                save_safetensors(
                    get_peft_model_state_dict(self.text_encoder), directory / TEXT_LORA
                )
                weights["text_encoder_lora"] = TEXT_LORA
        if self.full_unet or not self.lora_rank:
            save_safetensors(self.unet.state_dict(), directory / UNET_WEIGHTS)
            weights["unet"] = UNET_WEIGHTS
        ModelInfo(
            backend=self.name,
            resolution=self.resolution,
            channels=int(self.unet.config.in_channels),
            config={
                "base_model_path": str(self.base_path),
                "lora_rank": self.lora_rank,
                "text_encoder_lora": self.text_lora,
            },
            version=self.version,
            parent=parent if parent is not None else self.parent,
            weights=weights,
        ).write(directory)
        return directory

    def load_weights(self, directory: Path) -> None:
        info = ModelInfo.read(directory)
        weights = info.weights or {}
        if "unet" in weights:
            load_module_weights(self.unet, directory / weights["unet"])
        if "unet_lora" in weights:
            _load_lora(self.unet, directory / weights["unet_lora"])
        if "text_encoder_lora" in weights:
            _load_lora(self.text_encoder, directory / weights["text_encoder_lora"])


def _load_lora(module: Any, path: Path) -> None:
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

    found = load_safetensors(path)
    check_state_dict(get_peft_model_state_dict(module), found, path)
    set_peft_model_state_dict(module, found)


def load_sd_backend(
    directory: Path, info: ModelInfo | None, *, device: str | torch.device = "cpu"
) -> SDBackend:
    """Load a plain SD folder (``info`` None) or a medrlhf fine-tune of one."""
    if info is None:
        return SDBackend(directory, device=device)
    base = info.config.get("base_model_path")
    if not base:
        raise WeightsFormatError(f"{directory}: config.base_model_path missing")
    backend = SDBackend(base, device=device, version=info.version, parent=info.parent)
    backend.resolution = info.resolution
    rank = info.config.get("lora_rank")
    if rank:
        backend.add_lora(
            int(rank), text_encoder=bool(info.config.get("text_encoder_lora"))
        )
        backend.unet.requires_grad_(False)
        backend.text_encoder.requires_grad_(False).eval()
    backend.full_unet = "unet" in (info.weights or {}) and bool(rank)
    backend.load_weights(directory)
    return backend
