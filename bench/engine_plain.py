"""Reference loops for ``bench/engine.py``: diffusers code as a user writes it first.

Same model configuration, noise schedule, optimiser and data as the engine, but
none of the engine's shortcuts: the prompt encoder runs on every step (and on
the empty prompt for every image), tensors keep the default memory format and
there is no accelerate wrapper. These loops are only timed, never shipped.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image


def _pil(pixels: torch.Tensor) -> list[Image.Image]:
    array = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    array = array.permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a).convert("RGB") for a in array]


class PlainMiniLM:
    """MiniLM straight from transformers; the tiny backend's context layout."""

    def __init__(self, path: str | Path, *, max_tokens: int, device: torch.device):
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).to(device)
        self.model.eval().requires_grad_(False)
        self.max_tokens = max_tokens
        self.device = device

    @torch.no_grad()
    def _run(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.tokenizer(
            texts,
            padding="max_length",
            truncation=True,
            max_length=self.max_tokens,
            return_tensors="pt",
        ).to(self.device)
        mask = batch["attention_mask"].unsqueeze(-1)
        hidden = self.model(**batch).last_hidden_state * mask
        pooled = F.normalize(hidden.sum(1) / mask.sum(1).clamp(min=1), dim=-1)
        return hidden, pooled

    def context(
        self, prompts: Sequence[str], modalities: Sequence[str | None]
    ) -> torch.Tensor:
        """``[modality token, pooled prompt, prompt tokens]`` computed from scratch."""
        hidden, pooled = self._run(list(prompts))
        names = [(m or "").strip().lower() for m in modalities]
        _, name_pooled = self._run([n or "-" for n in names])
        keep = torch.tensor([bool(n) for n in names], device=self.device)
        modality = name_pooled * keep.unsqueeze(-1)
        return torch.cat([modality[:, None], pooled[:, None], hidden], dim=1)


class PlainTinyTrainer:
    """UNet2DConditionModel + DDPMScheduler + AdamW, one optimiser step per call."""

    def __init__(
        self,
        *,
        tiny_config: Any,
        data: Any,
        batch_size: int,
        max_steps: int,
        learning_rate: float,
        weight_decay: float,
        warmup_steps: int,
        max_grad_norm: float,
        cond_dropout: float,
        seed: int,
    ) -> None:
        from diffusers import DDPMScheduler
        from diffusers.optimization import get_scheduler

        from models_ml.engine.backends.tiny import build_unet
        from models_ml.engine.text import default_text_encoder_path

        self.device = torch.device("cpu")
        self.unet = build_unet(tiny_config).train()
        self.noise_scheduler = DDPMScheduler(
            num_train_timesteps=tiny_config.num_train_timesteps,
            beta_schedule=tiny_config.beta_schedule,
            clip_sample=True,
            prediction_type=tiny_config.prediction_type,
        )
        path = tiny_config.text_encoder_path or default_text_encoder_path()
        self.text = PlainMiniLM(
            path, max_tokens=tiny_config.max_prompt_tokens, device=self.device
        )
        self.optimizer = torch.optim.AdamW(
            self.unet.parameters(), lr=learning_rate, weight_decay=weight_decay
        )
        self.lr_scheduler = get_scheduler(
            "cosine",
            self.optimizer,
            num_warmup_steps=min(warmup_steps, max_steps),
            num_training_steps=max_steps,
        )
        self.data = data
        self.batch_size = batch_size
        self.max_grad_norm = max_grad_norm
        self.cond_dropout = cond_dropout
        self.generator = torch.Generator().manual_seed(seed)

    def step(self) -> float:
        size = self.batch_size
        index = torch.randint(0, len(self.data), (size,), generator=self.generator)
        batch = self.data.batch(index.tolist())
        latents = batch.pixels.float() / 127.5 - 1
        noise = torch.randn(latents.shape, generator=self.generator)
        steps = self.noise_scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (size,), generator=self.generator)
        drop = (torch.rand(size, generator=self.generator) < self.cond_dropout).tolist()
        prompts = ["" if d else p for d, p in zip(drop, batch.prompts, strict=True)]
        modalities = [
            None if d else m for d, m in zip(drop, batch.modalities, strict=True)
        ]
        context = self.text.context(prompts, modalities)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        pred = self.unet(noisy, timesteps, encoder_hidden_states=context).sample
        if self.noise_scheduler.config.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        loss = F.mse_loss(pred.float(), target.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.unet.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())


class PlainTinySampler:
    """The classifier-free guidance loop of a diffusers pipeline, written out."""

    def __init__(
        self, *, unet: Any, noise_config: Any, resolution: int, tiny_config: Any
    ) -> None:
        from models_ml.engine.text import default_text_encoder_path

        self.unet = unet.eval()
        self.noise_config = noise_config
        self.resolution = resolution
        path = tiny_config.text_encoder_path or default_text_encoder_path()
        self.text = PlainMiniLM(
            path, max_tokens=tiny_config.max_prompt_tokens, device=torch.device("cpu")
        )

    @classmethod
    def like(cls, backend: Any) -> PlainTinySampler:
        """Same weights as the engine's UNet, in the default memory format."""
        unet = copy.deepcopy(backend.unet).to(memory_format=torch.contiguous_format)
        return cls(
            unet=unet,
            noise_config=backend.noise_scheduler.config,
            resolution=backend.resolution,
            tiny_config=backend.config,
        )

    @classmethod
    def fresh(cls, tiny_config: Any) -> PlainTinySampler:
        from models_ml.engine.backends.tiny import build_noise_scheduler, build_unet

        return cls(
            unet=build_unet(tiny_config),
            noise_config=build_noise_scheduler(tiny_config).config,
            resolution=tiny_config.resolution,
            tiny_config=tiny_config,
        )

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[str],
        modalities: Sequence[str | None],
        seeds: Sequence[int],
        *,
        steps: int,
        guidance: float,
    ) -> list[Image.Image]:
        from diffusers import DDIMScheduler

        sampler = DDIMScheduler.from_config(self.noise_config)
        sampler.set_timesteps(steps)
        shape = (3, self.resolution, self.resolution)
        latents = torch.stack(
            [
                torch.randn(shape, generator=torch.Generator().manual_seed(s))
                for s in seeds
            ]
        )
        latents = latents * sampler.init_noise_sigma
        cond = self.text.context(prompts, modalities)
        uncond = self.text.context([""] * len(prompts), [None] * len(prompts))
        context = torch.cat([uncond, cond])
        for t in sampler.timesteps:
            model_in = sampler.scale_model_input(torch.cat([latents] * 2), t)
            pred = self.unet(model_in, t, encoder_hidden_states=context).sample
            pred_uncond, pred_cond = pred.chunk(2)
            pred = pred_uncond + guidance * (pred_cond - pred_uncond)
            latents = sampler.step(pred, t, latents).prev_sample
        return _pil(latents)


class PlainSDTrainer:
    """The diffusers text-to-image example loop (LoRA or full UNet), condensed."""

    def __init__(
        self,
        *,
        model_path: str,
        data: Any,
        batch_size: int,
        max_steps: int,
        learning_rate: float,
        weight_decay: float,
        warmup_steps: int,
        max_grad_norm: float,
        device: torch.device,
        mixed_precision: str,
        use_lora: bool,
        lora_rank: int,
        seed: int,
    ) -> None:
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from diffusers.optimization import get_scheduler
        from transformers import CLIPTextModel, CLIPTokenizer

        root = Path(model_path)
        local = {"local_files_only": True}
        self.device = device
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(
            mixed_precision, torch.float32
        )
        if device.type != "cuda":
            self.dtype = torch.float32
        self.tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer", **local)
        self.text_encoder = CLIPTextModel.from_pretrained(
            root / "text_encoder", **local
        )
        self.vae = AutoencoderKL.from_pretrained(root, subfolder="vae", **local)
        self.unet = UNet2DConditionModel.from_pretrained(
            root, subfolder="unet", **local
        )
        self.noise_scheduler = DDPMScheduler.from_pretrained(
            root, subfolder="scheduler", **local
        )
        self.text_encoder.requires_grad_(False).to(device, self.dtype)
        self.vae.requires_grad_(False).to(device, self.dtype)
        if use_lora:
            from peft import LoraConfig

            self.unet.requires_grad_(False).to(device, self.dtype)
            self.unet.add_adapter(
                LoraConfig(
                    r=lora_rank,
                    lora_alpha=lora_rank,
                    init_lora_weights="gaussian",
                    target_modules=["to_k", "to_q", "to_v", "to_out.0"],
                )
            )
        else:
            self.unet.to(device)
        self.params = [p for p in self.unet.parameters() if p.requires_grad]
        for p in self.params:
            p.data = p.data.float()
        self.unet.train()
        self.optimizer = torch.optim.AdamW(
            self.params, lr=learning_rate, weight_decay=weight_decay
        )
        self.lr_scheduler = get_scheduler(
            "cosine",
            self.optimizer,
            num_warmup_steps=min(warmup_steps, max_steps),
            num_training_steps=max_steps,
        )
        self.data = data
        self.batch_size = batch_size
        self.max_grad_norm = max_grad_norm
        self.generator = torch.Generator().manual_seed(seed)

    def step(self) -> float:
        size = self.batch_size
        index = torch.randint(0, len(self.data), (size,), generator=self.generator)
        batch = self.data.batch(index.tolist())
        pixels = (batch.pixels.float() / 127.5 - 1).to(self.device, self.dtype)
        autocast = torch.autocast(
            self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32
        )
        with autocast:
            with torch.no_grad():
                latents = self.vae.encode(pixels).latent_dist.sample()
                latents = latents * self.vae.config.scaling_factor
                texts = [
                    f"{m}: {p}" if m else p
                    for p, m in zip(batch.prompts, batch.modalities, strict=True)
                ]
                ids = self.tokenizer(
                    texts,
                    padding="max_length",
                    max_length=self.tokenizer.model_max_length,
                    truncation=True,
                    return_tensors="pt",
                ).input_ids.to(self.device)
                context = self.text_encoder(ids)[0]
            noise = torch.randn_like(latents)
            steps = self.noise_scheduler.config.num_train_timesteps
            timesteps = torch.randint(0, steps, (size,), device=self.device)
            noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
            pred = self.unet(noisy, timesteps, encoder_hidden_states=context).sample
            if self.noise_scheduler.config.prediction_type == "v_prediction":
                target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
            else:
                target = noise
            loss = F.mse_loss(pred.float(), target.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())


class PlainSDPipeline:
    """``StableDiffusionPipeline`` built from the same folder, DDIM sampler."""

    def __init__(self, model_path: str, *, device: torch.device, dtype: torch.dtype):
        from diffusers import DDIMScheduler, StableDiffusionPipeline

        self.pipe = StableDiffusionPipeline.from_pretrained(
            model_path,
            local_files_only=True,
            safety_checker=None,
            requires_safety_checker=False,
            torch_dtype=dtype,
        ).to(device)
        self.pipe.scheduler = DDIMScheduler.from_config(self.pipe.scheduler.config)
        self.pipe.set_progress_bar_config(disable=True)

    def generate(
        self,
        prompts: Sequence[str],
        modalities: Sequence[str | None],
        seeds: Sequence[int],
        *,
        steps: int,
        guidance: float,
        resolution: int,
    ) -> list[Image.Image]:
        texts = [
            f"{m}: {p}" if m else p for p, m in zip(prompts, modalities, strict=True)
        ]
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        return self.pipe(
            texts,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=generators,
            height=resolution,
            width=resolution,
        ).images
