"""What every diffusion backend offers: prompt encoding, sampling, saving.

A backend wraps a diffusers ``UNet2DConditionModel`` and the pieces around it.
Sampling lives here so both backends share one classifier-free guidance loop;
backends differ in how prompts become embeddings and how pixels become latents.
"""

from __future__ import annotations

import json
import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import EngineError, WeightsFormatError

MODEL_JSON = "medrlhf_model.json"
SCHEDULERS = ("ddim", "dpm", "euler", "ddpm")
# The sampler every part of medrlhf uses unless told otherwise: rounds, the
# generate page and command, the engine's CLI and the experiments. Chosen on
# the shipped demo model by realistic share and local FD per UNet pass
# (bench/sampler.py; docs/benchmarks.md, "Which sampler"): ancestral DDPM at
# 50 steps was as good as any and cheaper than the rest; DDIM drew noise.
DEFAULT_SCHEDULER = "ddpm"
DEFAULT_STEPS = 50
UNSAFE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    modality: str | None = None
    seed: int = 0


@dataclass
class GeneratedImage:
    image: Image.Image
    prompt: str
    modality: str | None
    seed: int
    steps: int
    guidance: float
    scheduler: str
    model_version: str


@dataclass
class ModelInfo:
    """Contents of ``medrlhf_model.json``, the small file beside the weights."""

    backend: str
    resolution: int
    channels: int
    config: dict[str, Any]
    version: str
    parent: str | None = None
    weights: dict[str, str] | None = None

    def write(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        data = {
            "backend": self.backend,
            "resolution": self.resolution,
            "channels": self.channels,
            "config": self.config,
            "parent": self.parent,
            "version": self.version,
            "weights": self.weights or {},
        }
        (directory / MODEL_JSON).write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def read(cls, directory: Path) -> ModelInfo:
        path = directory / MODEL_JSON
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise WeightsFormatError(f"{path}: model description missing") from exc
        except json.JSONDecodeError as exc:
            raise WeightsFormatError(f"{path}: not valid JSON ({exc})") from exc
        for key in ("backend", "resolution", "channels", "config", "version"):
            if key not in data:
                raise WeightsFormatError(f"{path}: field {key!r} missing")
        return cls(
            backend=data["backend"],
            resolution=int(data["resolution"]),
            channels=int(data["channels"]),
            config=dict(data["config"]),
            version=str(data["version"]),
            parent=data.get("parent"),
            weights=dict(data.get("weights") or {}),
        )


def new_version_id(backend: str) -> str:
    """A readable, unique model version id: backend, UTC time, random suffix."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{backend}-{stamp}-{uuid.uuid4().hex[:8]}"


def save_safetensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Write tensors as safetensors via a temporary file, then rename."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; anything else raises WeightsFormatError naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if path.suffix.lower() in UNSAFE_SUFFIXES:
        raise WeightsFormatError(
            f"{path}: weights must be safetensors; pickle-based files are refused"
        )
    if not path.is_file():
        raise WeightsFormatError(f"{path}: weights file missing")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsFormatError(f"{path}: not a safetensors file ({exc})") from exc


def check_state_dict(
    expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], source: Path
) -> None:
    """Raise WeightsFormatError naming the first tensor that is missing or misfit."""
    for name, tensor in expected.items():
        if name not in found:
            raise WeightsFormatError(f"{source}: tensor {name!r} missing")
        if tuple(found[name].shape) != tuple(tensor.shape):
            raise WeightsFormatError(
                f"{source}: tensor {name!r} has shape {tuple(found[name].shape)}, "
                f"the model needs {tuple(tensor.shape)}"
            )
    extra = sorted(set(found) - set(expected))
    if extra:
        raise WeightsFormatError(
            f"{source}: tensor {extra[0]!r} does not belong to this model"
        )


def load_module_weights(module: torch.nn.Module, path: Path) -> None:
    """Load a whole module's weights from safetensors, checking every tensor."""
    found = load_safetensors(path)
    check_state_dict(module.state_dict(), found, path)
    module.load_state_dict(found)


def make_sampler(noise_scheduler: Any, name: str) -> Any:
    """A fresh inference scheduler sharing the training noise schedule."""
    from diffusers import (
        DDIMScheduler,
        DDPMScheduler,
        DPMSolverMultistepScheduler,
        EulerDiscreteScheduler,
    )

    classes = {
        "ddim": DDIMScheduler,
        "dpm": DPMSolverMultistepScheduler,
        "euler": EulerDiscreteScheduler,
        "ddpm": DDPMScheduler,
    }
    if name not in classes:
        raise EngineError(f"scheduler {name!r} unknown; choose one of {SCHEDULERS}")
    return classes[name].from_config(noise_scheduler.config)


def to_pil(pixels: torch.Tensor) -> list[Image.Image]:
    """Images in [-1, 1], shape (B, C, H, W), to 8-bit RGB pictures."""
    scaled = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    array = scaled.permute(0, 2, 3, 1).cpu().numpy()
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return [Image.fromarray(a, mode="RGB") for a in array]


class DiffusionBackend(ABC):
    """A text-conditioned UNet with its noise schedule and prompt encoder."""

    name: str
    resolution: int
    unet: Any
    noise_scheduler: Any
    text_encoder: Any
    device: torch.device
    version: str
    parent: str | None
    default_steps: int = DEFAULT_STEPS
    default_scheduler: str = DEFAULT_SCHEDULER
    default_guidance: float = 5.0

    @abstractmethod
    def encode_prompts(
        self,
        prompts: Sequence[str],
        modalities: Sequence[str | None],
        *,
        requires_grad: bool = False,
    ) -> torch.Tensor:
        """Encoder hidden states for the UNet, one row per prompt."""

    @property
    @abstractmethod
    def latent_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of what the UNet denoises."""

    @abstractmethod
    def images_to_latents(
        self, pixels: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Map images in [-1, 1] to the UNet's working space."""

    @abstractmethod
    def latents_to_images(self, latents: torch.Tensor) -> torch.Tensor:
        """Map the UNet's working space back to images in [-1, 1]."""

    @abstractmethod
    def save(self, directory: Path | str, *, parent: str | None = None) -> Path:
        """Write ``medrlhf_model.json`` and safetensors weights; return the folder."""

    @abstractmethod
    def load_weights(self, directory: Path) -> None:
        """Load trainable weights written by ``save`` into this backend."""

    def new_version(self) -> None:
        """Give the (changed) model a new version id, remembering the old as parent."""
        self.parent = self.version
        self.version = new_version_id(self.name)

    @torch.no_grad()
    def generate(
        self,
        requests: Sequence[GenerationRequest],
        *,
        steps: int | None = None,
        guidance: float | None = None,
        scheduler: str | None = None,
        batch_size: int = 8,
        progress: ProgressFn | None = None,
    ) -> list[GeneratedImage]:
        """Sample one image per request with classifier-free guidance.

        Each image depends only on its own request and seed: noise comes from
        a per-sample generator, so batch size and neighbours do not matter.
        """
        steps = steps or self.default_steps
        scheduler = scheduler or self.default_scheduler
        guidance = self.default_guidance if guidance is None else guidance
        if batch_size < 1:
            raise EngineError("batch_size must be at least 1")
        was_training = self.unet.training
        self.unet.eval()
        results: list[GeneratedImage] = []
        total = len(requests) * steps
        done = 0
        try:
            for start in range(0, len(requests), batch_size):
                chunk = list(requests[start : start + batch_size])

                def step_done(_: int, n: int = len(chunk)) -> None:
                    nonlocal done
                    done += n
                    if progress:
                        progress(done, total)

                pixels = self._sample(chunk, steps, guidance, scheduler, step_done)
                for req, image in zip(chunk, to_pil(pixels), strict=True):
                    results.append(
                        GeneratedImage(
                            image=image,
                            prompt=req.prompt,
                            modality=req.modality,
                            seed=req.seed,
                            steps=steps,
                            guidance=guidance,
                            scheduler=scheduler,
                            model_version=self.version,
                        )
                    )
        finally:
            self.unet.train(was_training)
        return results

    def _sample(
        self,
        chunk: list[GenerationRequest],
        steps: int,
        guidance: float,
        scheduler_name: str,
        step_done: Callable[[int], None],
    ) -> torch.Tensor:
        sampler = make_sampler(self.noise_scheduler, scheduler_name)
        sampler.set_timesteps(steps, device=self.device)
        generators = [torch.Generator("cpu").manual_seed(r.seed) for r in chunk]
        shape = self.latent_shape
        latents = torch.stack([torch.randn(shape, generator=g) for g in generators]).to(
            self.device, self.unet.dtype
        )
        latents = latents * sampler.init_noise_sigma
        cond = self.encode_prompts(
            [r.prompt for r in chunk], [r.modality for r in chunk]
        )
        use_cfg = guidance > 1.0
        if use_cfg:
            uncond = self.encode_prompts([""], [None]).expand(len(chunk), -1, -1)
            context = torch.cat([uncond, cond]).to(self.unet.dtype)
        else:
            context = cond.to(self.unet.dtype)
        for i, t in enumerate(sampler.timesteps):
            model_in = torch.cat([latents] * 2) if use_cfg else latents
            model_in = sampler.scale_model_input(model_in, t)
            pred = self.unet(model_in, t, encoder_hidden_states=context).sample
            if use_cfg:
                pred_uncond, pred_cond = pred.chunk(2)
                pred = pred_uncond + guidance * (pred_cond - pred_uncond)
            latents = sampler.step(
                pred, t, latents, generator=generators, return_dict=False
            )[0]
            step_done(i)
        return self.latents_to_images(latents.float())
