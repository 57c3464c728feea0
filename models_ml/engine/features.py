"""Frozen image features for the reward model and the set metrics.

Every extractor maps a list of PIL images to a float32 array ``[N, F]`` and
describes itself with ``config()`` so a saved reward model can rebuild it.
Three kinds exist: ``handcrafted`` (no weights, deterministic), ``unet`` (the
encoder half of any diffusers ``UNet2DConditionModel``) and ``hf`` (any local
transformers vision model). Specs on the command line read ``handcrafted``,
``unet:<model_dir>`` or ``hf:<folder>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from .errors import EngineError, WeightsFormatError

if TYPE_CHECKING:
    import torch


class FeatureSpecError(EngineError):
    """A feature extractor spec or saved config cannot be understood."""


@runtime_checkable
class FeatureExtractor(Protocol):
    def extract(self, images: list[Image.Image]) -> Any:
        """Return features ``[N, F]`` (numpy array or tensor) for the images."""
        ...

    def config(self) -> dict[str, Any]:
        """JSON-serialisable description from which the extractor is rebuilt."""
        ...


def as_numpy_features(features: Any) -> np.ndarray:
    """Features from any extractor as a float32 ``[N, F]`` numpy array."""
    if hasattr(features, "detach"):
        features = features.detach().cpu().float().numpy()
    array = np.asarray(features, dtype=np.float32)
    if array.ndim != 2:
        raise EngineError(f"features must be 2-D [N, F], got shape {array.shape}")
    return array


def _to_rgb_array(image: Image.Image, size: int) -> np.ndarray:
    """RGB float array in [0, 1] of shape (size, size, 3)."""
    rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.float32) / 255.0


class HandcraftedFeatures:
    """Intensity histogram, gradient statistics, colour statistics and a thumbnail.

    Needs no weights and gives identical output on every machine, which makes it
    the baseline and the extractor for tests.
    """

    def __init__(self, *, size: int = 64, bins: int = 16, thumbnail: int = 8) -> None:
        self.size = size
        self.bins = bins
        self.thumbnail = thumbnail

    def config(self) -> dict[str, Any]:
        return {
            "kind": "handcrafted",
            "size": self.size,
            "bins": self.bins,
            "thumbnail": self.thumbnail,
        }

    def extract(self, images: list[Image.Image]) -> np.ndarray:
        return np.stack([self._one(image) for image in images]).astype(np.float32)

    def _one(self, image: Image.Image) -> np.ndarray:
        rgb = _to_rgb_array(image, self.size)
        gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        hist, _ = np.histogram(gray, bins=self.bins, range=(0.0, 1.0))
        hist = hist.astype(np.float32) / gray.size
        gy, gx = np.gradient(gray)
        magnitude = np.hypot(gx, gy)
        # Edge density at two thresholds separates smooth blobs from fine texture.
        gradient = [
            magnitude.mean(),
            magnitude.std(),
            np.abs(gx).mean(),
            np.abs(gy).mean(),
            (magnitude > 0.05).mean(),
            (magnitude > 0.15).mean(),
            gray.mean(),
            gray.std(),
            np.percentile(gray, 5),
            np.percentile(gray, 95),
        ]
        chroma = rgb.max(axis=2) - rgb.min(axis=2)
        colour = [*rgb.mean(axis=(0, 1)), *rgb.std(axis=(0, 1)), chroma.mean()]
        step = self.size // self.thumbnail
        thumb = gray[: step * self.thumbnail, : step * self.thumbnail]
        thumb = thumb.reshape(self.thumbnail, step, self.thumbnail, step).mean((1, 3))
        return np.concatenate(
            [hist, np.array(gradient + colour, dtype=np.float32), thumb.ravel()]
        )


class UNetEncoderFeatures:
    """Pooled activations of a diffusion UNet's encoder half.

    Runs ``conv_in``, the down blocks and the mid block of a diffusers
    ``UNet2DConditionModel`` on the (VAE-encoded, when a VAE is given) image at
    a small timestep with a null text conditioning, and global-average-pools the
    output of every down block and of the mid block. The up blocks are skipped.
    """

    def __init__(
        self,
        unet: Any,
        *,
        timestep: int = 20,
        resolution: int | None = None,
        vae: Any = None,
        null_condition: torch.Tensor | None = None,
        batch_size: int = 8,
        model_dir: str | None = None,
    ) -> None:
        import torch

        self.unet = unet.eval().requires_grad_(False)
        self.vae = vae.eval().requires_grad_(False) if vae is not None else None
        self.timestep = timestep
        self.batch_size = batch_size
        self.model_dir = model_dir
        scale = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1
        sample_size = unet.config.sample_size
        if isinstance(sample_size, (list, tuple)):
            sample_size = sample_size[0]
        self.resolution = resolution or int(sample_size) * scale
        if null_condition is None:
            # Zeros stand in for the empty prompt: no text encoder is needed here.
            null_condition = torch.zeros(1, 1, unet.config.cross_attention_dim)
        self.null_condition = null_condition

    @classmethod
    def from_dir(cls, model_dir: str | Path, **kwargs: Any) -> UNetEncoderFeatures:
        """Load the UNet (and VAE, if present) from a diffusers folder."""
        from diffusers import AutoencoderKL, UNet2DConditionModel

        root = Path(model_dir)
        unet_dir = root / "unet" if (root / "unet").is_dir() else root
        if not (unet_dir / "config.json").is_file():
            raise FeatureSpecError(f"no diffusers UNet config.json under {root}")
        try:
            unet = UNet2DConditionModel.from_pretrained(
                unet_dir, local_files_only=True, use_safetensors=True
            )
            vae = None
            if (root / "vae" / "config.json").is_file():
                vae = AutoencoderKL.from_pretrained(
                    root / "vae", local_files_only=True, use_safetensors=True
                )
        except (OSError, ValueError) as exc:
            raise WeightsFormatError(f"cannot load UNet from {root}: {exc}") from exc
        return cls(unet, vae=vae, model_dir=str(root), **kwargs)

    def config(self) -> dict[str, Any]:
        return {
            "kind": "unet",
            "path": self.model_dir,
            "timestep": self.timestep,
            "resolution": self.resolution,
        }

    def extract(self, images: list[Image.Image]) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for start in range(0, len(images), self.batch_size):
                batch = self._pixels(images[start : start + self.batch_size])
                out.append(self._encode(batch).cpu().float().numpy())
        return np.concatenate(out).astype(np.float32)

    def _pixels(self, images: list[Image.Image]) -> torch.Tensor:
        import torch

        param = next(self.unet.parameters())
        channels = 3 if self.vae is not None else self.unet.config.in_channels
        arrays = []
        for image in images:
            if channels == 1:
                gray = image.convert("L").resize(
                    (self.resolution, self.resolution), Image.Resampling.BILINEAR
                )
                arr = np.asarray(gray, dtype=np.float32)[None] / 255.0
            else:
                arr = _to_rgb_array(image, self.resolution).transpose(2, 0, 1)
                if channels != 3:
                    gray = arr.mean(0, keepdims=True)
                    arr = np.repeat(gray, channels, axis=0)
            arrays.append(arr)
        pixels = torch.from_numpy(np.stack(arrays)) * 2.0 - 1.0
        return pixels.to(device=param.device, dtype=param.dtype)

    def _encode(self, pixels: torch.Tensor) -> torch.Tensor:
        import torch

        unet = self.unet
        sample = pixels
        if self.vae is not None:
            latents = self.vae.encode(pixels).latent_dist.mean
            sample = latents * getattr(self.vae.config, "scaling_factor", 1.0)
        timesteps = torch.full(
            (sample.shape[0],), self.timestep, dtype=torch.long, device=sample.device
        )
        emb = unet.time_embedding(unet.get_time_embed(sample, timesteps))
        if unet.time_embed_act is not None:
            emb = unet.time_embed_act(emb)
        context = self.null_condition.to(sample.device, sample.dtype)
        context = context.expand(sample.shape[0], -1, -1)
        h = unet.conv_in(sample)
        pooled = []
        for block in unet.down_blocks:
            if getattr(block, "has_cross_attention", False):
                h, _ = block(hidden_states=h, temb=emb, encoder_hidden_states=context)
            else:
                h, _ = block(hidden_states=h, temb=emb)
            pooled.append(h.mean(dim=(2, 3)))
        if unet.mid_block is not None:
            if getattr(unet.mid_block, "has_cross_attention", False):
                h = unet.mid_block(h, emb, encoder_hidden_states=context)
            else:
                h = unet.mid_block(h, emb)
            pooled.append(h.mean(dim=(2, 3)))
        return torch.cat(pooled, dim=1)


class HFVisionFeatures:
    """Pooled output of a local transformers vision model (ViT, DINOv2, CLIP...).

    Uses ``pooler_output`` when the model has one, else the mean of the last
    hidden state. Loaded with ``local_files_only`` and safetensors only.
    """

    def __init__(self, folder: str | Path, *, batch_size: int = 8) -> None:
        from transformers import AutoImageProcessor, AutoModel

        self.folder = Path(folder)
        self.batch_size = batch_size
        if not self.folder.is_dir():
            raise FeatureSpecError(f"vision model folder not found: {self.folder}")
        try:
            self.processor = AutoImageProcessor.from_pretrained(
                self.folder, local_files_only=True
            )
            self.model = AutoModel.from_pretrained(
                self.folder, local_files_only=True, use_safetensors=True
            )
        except (OSError, ValueError) as exc:
            raise WeightsFormatError(
                f"cannot load a vision model from {self.folder}: {exc}"
            ) from exc
        self.model.eval().requires_grad_(False)

    def config(self) -> dict[str, Any]:
        return {"kind": "hf", "path": str(self.folder)}

    def extract(self, images: list[Image.Image]) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for start in range(0, len(images), self.batch_size):
                batch = [
                    im.convert("RGB") for im in images[start : start + self.batch_size]
                ]
                inputs = self.processor(images=batch, return_tensors="pt")
                outputs = self.model(**inputs)
                pooled = getattr(outputs, "pooler_output", None)
                if pooled is None:
                    pooled = outputs.last_hidden_state.mean(dim=1)
                out.append(pooled.reshape(pooled.shape[0], -1).float().numpy())
        return np.concatenate(out).astype(np.float32)


def feature_extractor_from_spec(spec: str) -> FeatureExtractor:
    """Build an extractor from ``handcrafted``, ``unet:<dir>`` or ``hf:<folder>``."""
    kind, _, path = spec.partition(":")
    if kind == "handcrafted" and not path:
        return HandcraftedFeatures()
    if kind in ("unet", "hf") and path:
        return feature_extractor_from_config({"kind": kind, "path": path})
    raise FeatureSpecError(
        f"unknown features spec {spec!r}: use handcrafted, unet:<model_dir> "
        "or hf:<folder>"
    )


def feature_extractor_from_config(config: dict[str, Any]) -> FeatureExtractor:
    """Rebuild an extractor from the dict its ``config()`` returned."""
    kind = config.get("kind")
    if kind == "handcrafted":
        return HandcraftedFeatures(
            size=int(config.get("size", 64)),
            bins=int(config.get("bins", 16)),
            thumbnail=int(config.get("thumbnail", 8)),
        )
    if kind in ("unet", "hf") and not config.get("path"):
        raise FeatureSpecError(
            f"{kind} features were built from an in-memory model; pass the "
            "feature extractor explicitly"
        )
    if kind == "unet":
        kwargs: dict[str, Any] = {}
        if config.get("timestep") is not None:
            kwargs["timestep"] = int(config["timestep"])
        if config.get("resolution") is not None:
            kwargs["resolution"] = int(config["resolution"])
        return UNetEncoderFeatures.from_dir(config["path"], **kwargs)
    if kind == "hf":
        return HFVisionFeatures(config["path"])
    raise FeatureSpecError(f"unknown feature extractor kind {kind!r}")
