"""One training loop for base training and reward-weighted fine-tuning.

Base training fits the denoising loss on real image-text pairs. Fine-tuning
reads synthetic samples with weights (from ratings or reward scores, already
normalised per prompt by the caller) and minimises

    sum_i w_i * L(synthetic_i) / sum_i w_i  +  beta * L(real)

so real images keep the model anchored. The filtered variant keeps only the
synthetic samples whose weight reaches a threshold. A drift guard stops the
run when generated samples lose diversity or wander from real images.

Every random draw in a step comes from a generator seeded by (seed, step), so
a run resumed from a checkpoint repeats the uninterrupted run.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .backends.base import DiffusionBackend, GenerationRequest
from .checkpoint import load_checkpoint, resolve_resume, save_checkpoint
from .data import (
    TrainingBatch,
    TrainingSet,
    batch_indices,
    load_training_set,
    weighted_batch_indices,
)
from .errors import DatasetError, EngineError


class TrainConfigError(EngineError):
    """A training option is missing or out of range."""


@dataclass
class TrainConfig:
    data_csv: str | None = None
    output_dir: str = "runs/train"
    backend: str = "tiny"
    model_path: str | None = None
    resolution: int | None = None
    channels: tuple[int, ...] = (32, 64, 128)
    batch_size: int = 16
    learning_rate: float = 2e-4
    max_steps: int = 1000
    grad_accum: int = 1
    lr_scheduler: str = "cosine"
    lr_warmup_steps: int = 20
    max_grad_norm: float = 1.0
    weight_decay: float = 1e-2
    seed: int = 0
    checkpointing_steps: int = 0
    checkpoints_total_limit: int | None = 3
    resume: str | None = None
    validation_prompts: list[str] = field(default_factory=list)
    validation_modalities: list[str | None] = field(default_factory=list)
    validation_steps: int = 0
    validation_images_per_prompt: int = 2
    validation_inference_steps: int = 25
    mixed_precision: str = "no"
    use_lora: bool = False
    lora_rank: int = 4
    train_text_encoder: bool = False
    use_ema: bool = False
    ema_decay: float = 0.999
    snr_gamma: float | None = None
    gradient_checkpointing: bool = False
    cond_dropout: float = 0.1
    device: str | None = None
    weights_csv: str | None = None
    real_csv: str | None = None
    beta: float = 1.0
    filter_threshold: float | None = None
    # How a fine-tune's synthetic weights act (weights_csv only): "sample"
    # draws each batch's rows with probability proportional to the weight and
    # counts them equally; "loss" keeps every row in the shuffled batches and
    # scales its loss (sum w L / sum w). Both estimate the same weighted loss;
    # in the simulated-rater experiment only sampling raised the share rated
    # 3 (docs/engine.md, "How the weights are applied").
    weighting: str = "sample"
    max_drift: float | None = None
    min_diversity_fraction: float = 0.5
    drift_check_steps: int = 50
    drift_samples: int = 4
    save_precision: str = "fp32"

    def validate(self) -> None:
        if not self.data_csv and not self.weights_csv:
            raise TrainConfigError(
                "give data_csv (training) or weights_csv (fine-tune)"
            )
        if self.backend not in ("tiny", "sd"):
            raise TrainConfigError(f"backend {self.backend!r} must be 'tiny' or 'sd'")
        if self.backend == "sd" and not self.model_path:
            raise TrainConfigError("backend 'sd' needs model_path (a local SD folder)")
        for name in ("batch_size", "max_steps", "grad_accum"):
            if getattr(self, name) < 1:
                raise TrainConfigError(f"{name} must be at least 1")
        if self.learning_rate <= 0:
            raise TrainConfigError("learning_rate must be positive")
        if self.lr_scheduler not in ("cosine", "constant", "linear"):
            raise TrainConfigError(
                f"lr_scheduler {self.lr_scheduler!r}: use cosine, constant or linear"
            )
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise TrainConfigError("mixed_precision must be no, fp16 or bf16")
        if self.train_text_encoder and not (self.backend == "sd" and self.use_lora):
            raise TrainConfigError(
                "train_text_encoder needs backend 'sd' with use_lora"
            )
        if self.use_lora and self.backend != "sd":
            raise TrainConfigError("use_lora applies to backend 'sd' only")
        if self.save_precision not in ("fp32", "fp16"):
            raise TrainConfigError("save_precision must be fp32 or fp16")
        if self.save_precision == "fp16" and self.backend != "tiny":
            raise TrainConfigError("save_precision fp16 applies to backend 'tiny' only")
        if self.beta < 0:
            raise TrainConfigError("beta must be >= 0")
        if self.max_drift is not None and self.max_drift <= 0:
            raise TrainConfigError("max_drift must be positive")
        if self.weighting not in ("loss", "sample"):
            raise TrainConfigError(f"weighting {self.weighting!r}: use loss or sample")


@dataclass
class TrainProgress:
    step: int
    max_steps: int
    loss: float
    lr: float
    samples_per_second: float
    message: str = ""


@dataclass
class TrainResult:
    final_dir: Path | None
    steps: int
    losses: list[float]
    stopped_reason: str | None
    validation_images: list[Path]
    checkpoints: list[Path]
    samples_per_second: float
    drift: list[dict[str, float]] = field(default_factory=list)
    version: str | None = None


def normalise_weights_per_prompt(rows: Sequence[tuple[str, float]]) -> list[float]:
    """Scale weights so each prompt's weights average 1 (all-zero groups stay 0).

    Comparing samples of the same prompt removes how hard a prompt is from
    the weight, leaving how good each sample is.
    """
    groups: dict[str, list[float]] = defaultdict(list)
    for prompt, weight in rows:
        if weight < 0 or not math.isfinite(weight):
            raise EngineError(f"weight {weight} for prompt {prompt!r} must be >= 0")
        groups[prompt].append(weight)
    means = {p: sum(w) / len(w) for p, w in groups.items()}
    return [w / means[p] if means[p] > 0 else 0.0 for p, w in rows]


def step_generator(seed: int, step: int, part: int = 0) -> torch.Generator:
    """The generator behind every random draw of one micro-step."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 7 + part)


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
    unet = unet or backend.unet
    scheduler = backend.noise_scheduler
    size = len(batch.prompts)
    pixels = batch.pixels.to(backend.device).float() / 127.5 - 1
    with torch.no_grad():
        latents = backend.images_to_latents(pixels, generator).float()
    noise = torch.randn(latents.shape, generator=generator).to(latents)
    timesteps = torch.randint(
        0, scheduler.config.num_train_timesteps, (size,), generator=generator
    )
    drop = (torch.rand(size, generator=generator) < cond_dropout).tolist()
    prompts = ["" if d else p for d, p in zip(drop, batch.prompts, strict=True)]
    modalities = [None if d else m for d, m in zip(drop, batch.modalities, strict=True)]
    context = backend.encode_prompts(
        prompts, modalities, requires_grad=train_text_encoder
    )
    timesteps = timesteps.to(backend.device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    if backend.device.type == "cpu":
        noisy = noisy.contiguous(memory_format=torch.channels_last)
    dtype = next(unet.parameters()).dtype
    pred = unet(noisy.to(dtype), timesteps, encoder_hidden_states=context.to(dtype))
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    losses = F.mse_loss(pred.sample.float(), target.float(), reduction="none")
    losses = losses.mean(dim=tuple(range(1, losses.ndim)))
    if snr_gamma:
        from diffusers.training_utils import compute_snr

        snr = compute_snr(scheduler, timesteps)
        clipped = torch.clamp(snr, max=snr_gamma)
        denominator = snr + 1 if prediction_type == "v_prediction" else snr
        losses = losses * clipped / denominator
    return losses


def weighted_mean(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum(w * L) / sum(w); zero when every weight is zero."""
    weights = weights.to(losses)
    return (losses * weights).sum() / weights.sum().clamp_min(1e-12)


def cheap_features(pixels: torch.Tensor) -> torch.Tensor:
    """8x8 colour thumbnail plus per-channel contrast: a space cheap enough to
    watch drift in every few steps."""
    pixels = pixels.float()
    thumb = F.adaptive_avg_pool2d(pixels, 8).flatten(1)
    contrast = pixels.flatten(2).std(dim=2)
    return torch.cat([thumb, contrast * 4], dim=1)


def diversity(features: torch.Tensor) -> float:
    if len(features) < 2:
        return 0.0
    distances = torch.cdist(features, features)
    count = len(features)
    return float(distances.sum() / (count * (count - 1)))


class _Trainer:
    def __init__(
        self,
        config: TrainConfig,
        progress: Callable[[TrainProgress], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        config.validate()
        self.config = config
        self.progress = progress
        self.should_stop = should_stop
        self.output_dir = Path(config.output_dir)
        self.validation_images: list[Path] = []
        self.drift_log: list[dict[str, float]] = []
        self.drift_baseline: dict[str, float] | None = None

    def setup(self) -> None:
        from accelerate import Accelerator
        from diffusers.optimization import get_scheduler

        cfg = self.config
        cpu = cfg.device == "cpu" or (
            cfg.device is None and not torch.cuda.is_available()
        )
        self.accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=cpu)
        torch.manual_seed(cfg.seed)
        self.backend = self._build_backend()
        self.main_set, self.real_set = self._load_data()
        if not cfg.train_text_encoder:
            self._encode_prompts_once()
        params = self._trainable_parameters()
        self.optimizer = torch.optim.AdamW(
            params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        self.lr_scheduler = get_scheduler(
            cfg.lr_scheduler,
            self.optimizer,
            num_warmup_steps=min(cfg.lr_warmup_steps, cfg.max_steps),
            num_training_steps=cfg.max_steps,
        )
        self.ema = None
        if cfg.use_ema:
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel(
                [p for p in self.backend.unet.parameters() if p.requires_grad],
                decay=cfg.ema_decay,
            )
        self.unet, self.optimizer = self.accelerator.prepare(
            self.backend.unet, self.optimizer
        )
        self.trainable = params
        if self.ema is not None:
            self.ema.to(self.accelerator.device)

    def _build_backend(self) -> DiffusionBackend:
        cfg = self.config
        device = self.accelerator.device
        if cfg.model_path:
            from .backends import load_backend

            backend = load_backend(cfg.model_path, device=device)
            if backend.name != cfg.backend:
                raise TrainConfigError(
                    f"{cfg.model_path}: holds a {backend.name!r} model, "
                    f"backend {cfg.backend!r} was asked for"
                )
            if cfg.resolution and cfg.resolution != backend.resolution:
                if backend.name != "sd":
                    raise TrainConfigError(
                        f"{cfg.model_path}: trained at {backend.resolution}px, "
                        f"resolution {cfg.resolution} differs"
                    )
                backend.set_resolution(cfg.resolution)  # type: ignore[attr-defined]
            backend.new_version()
            return backend
        from .backends.tiny import TinyConfig, create_tiny_backend

        tiny = TinyConfig(
            resolution=cfg.resolution or TinyConfig().resolution,
            channels=tuple(cfg.channels),
            seed=cfg.seed,
        )
        return create_tiny_backend(tiny, device=device)

    def _encode_prompts_once(self) -> None:
        """Fill the tiny backend's prompt cache in a few batched passes.

        Otherwise every step of the first epoch stops to encode its unseen
        prompts; encoding them together up front costs less and leaves every
        step the same work.
        """
        if self.backend.name != "tiny":
            return
        from .backends.tiny import CACHE_LIMIT

        pairs: set[tuple[str, str | None]] = {("", None)}
        for data in (self.main_set, self.real_set):
            if data is not None:
                pairs.update(zip(data.prompts, data.modalities, strict=True))
        if len(pairs) > CACHE_LIMIT:
            return
        ordered = sorted(pairs, key=str)
        for start in range(0, len(ordered), 64):
            chunk = ordered[start : start + 64]
            self.backend.encode_prompts([p for p, _ in chunk], [m for _, m in chunk])

    def _load_data(self) -> tuple[TrainingSet, TrainingSet | None]:
        cfg = self.config
        resolution = self.backend.resolution
        if cfg.weights_csv:
            main = load_training_set(
                cfg.weights_csv,
                resolution,
                need_weight=True,
                min_weight=cfg.filter_threshold,
            )
        else:
            assert cfg.data_csv
            main = load_training_set(cfg.data_csv, resolution)
        real = None
        if cfg.real_csv:
            real = load_training_set(cfg.real_csv, resolution)
        elif cfg.weights_csv and cfg.data_csv:
            real = load_training_set(cfg.data_csv, resolution)
        if len(main) == 0:
            raise DatasetError(f"{main.source}: dataset is empty")
        return main, real

    def _trainable_parameters(self) -> list[torch.nn.Parameter]:
        cfg = self.config
        backend = self.backend
        half = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.mixed_precision)
        if half and backend.device.type == "cuda" and backend.name == "sd":
            # Frozen parts run in half precision; trained tensors stay float32.
            backend.vae.to(dtype=half)  # type: ignore[attr-defined]
            if not cfg.train_text_encoder:
                backend.text_encoder.to(dtype=half)
            if cfg.use_lora:
                backend.unet.to(dtype=half)
        if cfg.use_lora:
            backend.add_lora(  # type: ignore[attr-defined]
                cfg.lora_rank, text_encoder=cfg.train_text_encoder
            )
        else:
            backend.unet.requires_grad_(True)
            if backend.name == "sd":
                backend.full_unet = True  # type: ignore[attr-defined]
        if cfg.gradient_checkpointing:
            backend.unet.enable_gradient_checkpointing()
        backend.unet.train()
        params = [p for p in backend.unet.parameters() if p.requires_grad]
        if cfg.train_text_encoder:
            params += [p for p in backend.text_encoder.parameters() if p.requires_grad]
        for p in params:
            p.data = p.data.float()
        return params

    def run(self) -> TrainResult:
        self.setup()
        cfg = self.config
        accel = self.accelerator
        step = 0
        losses: list[float] = []
        resume_from = resolve_resume(self.output_dir, cfg.resume)
        if resume_from is not None:
            state = load_checkpoint(
                resume_from,
                backend=self.backend,
                optimizer=self.optimizer,
                lr_scheduler=self.lr_scheduler,
                ema=self.ema,
            )
            step = int(state["step"])
            losses = list(state.get("losses", []))
            self.drift_baseline = state.get("drift_baseline")
            self.drift_log = list(state.get("drift", []))
            self.validation_images = [Path(p) for p in state.get("validation", [])]
        if cfg.max_drift is not None and self.drift_baseline is None:
            self.drift_baseline = self._measure_drift()
        stopped: str | None = None
        started = time.monotonic()
        samples = 0
        while step < cfg.max_steps:
            loss = self._train_step(step)
            step += 1
            samples += cfg.batch_size * cfg.grad_accum * accel.num_processes
            losses.append(loss)
            rate = samples / max(time.monotonic() - started, 1e-9)
            if self.progress:
                self.progress(
                    TrainProgress(
                        step=step,
                        max_steps=cfg.max_steps,
                        loss=loss,
                        lr=self.lr_scheduler.get_last_lr()[0],
                        samples_per_second=rate,
                    )
                )
            if not math.isfinite(loss):
                stopped = f"loss became {loss} at step {step}"
                break
            if cfg.validation_steps and step % cfg.validation_steps == 0:
                self._validate(step)
            if (
                cfg.max_drift is not None
                and step % cfg.drift_check_steps == 0
                and step < cfg.max_steps
            ):
                stopped = self._check_drift(step)
                if stopped:
                    break
            if self.should_stop and self.should_stop():
                stopped = f"stopped on request at step {step}"
                if cfg.checkpointing_steps:
                    self._checkpoint(step, losses)
                break
            if cfg.checkpointing_steps and step % cfg.checkpointing_steps == 0:
                self._checkpoint(step, losses)
        rate = samples / max(time.monotonic() - started, 1e-9)
        final_dir = None
        if stopped is None:
            final_dir = self._save_final()
        from .checkpoint import list_checkpoints

        return TrainResult(
            final_dir=final_dir,
            steps=step,
            losses=losses,
            stopped_reason=stopped,
            validation_images=self.validation_images,
            checkpoints=list_checkpoints(self.output_dir),
            samples_per_second=rate,
            drift=self.drift_log,
            version=self.backend.version if final_dir else None,
        )

    def _train_step(self, step: int) -> float:
        cfg = self.config
        accel = self.accelerator
        total = 0.0
        for micro in range(cfg.grad_accum):
            index = step * cfg.grad_accum + micro
            generator = step_generator(cfg.seed, index)
            with accel.autocast():
                loss = self._micro_loss(index, generator)
            accel.backward(loss / cfg.grad_accum)
            total += float(loss.detach()) / cfg.grad_accum
        if cfg.max_grad_norm:
            accel.clip_grad_norm_(self.trainable, cfg.max_grad_norm)
        self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.step(
                [p for p in self.backend.unet.parameters() if p.requires_grad]
            )
        return total

    def _micro_loss(self, index: int, generator: torch.Generator) -> torch.Tensor:
        cfg = self.config
        accel = self.accelerator
        kwargs = {
            "unet": self.unet,
            "snr_gamma": cfg.snr_gamma,
            "cond_dropout": cfg.cond_dropout,
            "train_text_encoder": cfg.train_text_encoder,
        }
        where = {
            "seed": cfg.seed,
            "num_processes": accel.num_processes,
            "process_index": accel.process_index,
        }
        if cfg.weights_csv and cfg.weighting == "sample":
            main = self.main_set.batch(
                weighted_batch_indices(
                    self.main_set.weights, cfg.batch_size, index, **where
                )
            )
            losses = denoising_losses(self.backend, main, generator=generator, **kwargs)
            loss = losses.mean()
        else:
            main = self.main_set.batch(
                batch_indices(len(self.main_set), cfg.batch_size, index, **where)
            )
            losses = denoising_losses(self.backend, main, generator=generator, **kwargs)
            loss = weighted_mean(losses, main.weights)
        if self.real_set is not None and cfg.weights_csv and cfg.beta > 0:
            real = self.real_set.batch(
                batch_indices(
                    len(self.real_set),
                    cfg.batch_size,
                    index,
                    **{**where, "seed": cfg.seed + 1},
                )
            )
            real_losses = denoising_losses(
                self.backend, real, generator=generator, **kwargs
            )
            loss = loss + cfg.beta * real_losses.mean()
        return loss

    def _checkpoint(self, step: int, losses: list[float]) -> None:
        if not self.accelerator.is_main_process:
            return
        save_checkpoint(
            self.output_dir,
            step,
            backend=self.backend,
            optimizer=self.optimizer,
            lr_scheduler=self.lr_scheduler,
            ema=self.ema,
            keep=self.config.checkpoints_total_limit,
            trainer_state={
                "losses": losses,
                "drift_baseline": self.drift_baseline,
                "drift": self.drift_log,
                "validation": [str(p) for p in self.validation_images],
                "config": _jsonable_config(self.config),
            },
        )

    def _save_final(self) -> Path:
        final = self.output_dir / "model"
        if self.ema is not None:
            self.ema.copy_to(
                [p for p in self.backend.unet.parameters() if p.requires_grad]
            )
        if self.accelerator.is_main_process:
            if self.config.save_precision == "fp16":
                self.backend.save(final, half=True)  # type: ignore[call-arg]
            else:
                self.backend.save(final)
        self.accelerator.wait_for_everyone()
        return final

    def _validation_requests(self, count: int) -> list[GenerationRequest]:
        cfg = self.config
        prompts = list(cfg.validation_prompts)
        modalities = list(cfg.validation_modalities)
        if not prompts:
            seen: dict[tuple[str, str | None], None] = {}
            for p, m in zip(
                self.main_set.prompts, self.main_set.modalities, strict=True
            ):
                seen.setdefault((p, m), None)
            pairs = list(seen)[: max(1, cfg.drift_samples)]
            prompts = [p for p, _ in pairs]
            modalities = [m for _, m in pairs]
        if len(modalities) < len(prompts):
            modalities += [self._infer_modality(p) for p in prompts[len(modalities) :]]
        return [
            GenerationRequest(prompt=p, modality=m, seed=cfg.seed + k)
            for p, m in zip(prompts, modalities, strict=True)
            for k in range(count)
        ]

    def _infer_modality(self, prompt: str) -> str | None:
        """'CT: ...' takes modality CT when the training data knows CT."""
        head = prompt.split(":", 1)[0].strip().lower()
        for modality in self.main_set.modalities:
            if modality and modality.lower() == head:
                return modality
        return None

    def _validate(self, step: int) -> None:
        if not self.accelerator.is_main_process:
            return
        cfg = self.config
        requests = self._validation_requests(cfg.validation_images_per_prompt)
        with self.accelerator.autocast():
            images = self.backend.generate(
                requests, steps=cfg.validation_inference_steps, batch_size=16
            )
        folder = self.output_dir / "validation" / f"step-{step}"
        folder.mkdir(parents=True, exist_ok=True)
        pictures = [g.image for g in images]
        grid = image_grid(pictures, columns=cfg.validation_images_per_prompt)
        grid_path = folder / "grid.png"
        grid.save(grid_path)
        self.validation_images.append(grid_path)

    def _measure_drift(self) -> dict[str, float]:
        cfg = self.config
        requests = self._validation_requests(1)[: cfg.drift_samples]
        while len(requests) < cfg.drift_samples:
            last = requests[-1]
            requests.append(
                GenerationRequest(last.prompt, last.modality, last.seed + len(requests))
            )
        with self.accelerator.autocast():
            images = self.backend.generate(requests, steps=10, batch_size=16)
        generated = _pil_to_tensor([g.image for g in images])
        held_out = self.real_set or self.main_set
        real = held_out.pixels[: max(cfg.drift_samples, 8)].float() / 127.5 - 1
        gen_features = cheap_features(generated)
        real_features = cheap_features(real)
        distance = float((gen_features.mean(0) - real_features.mean(0)).norm())
        return {"diversity": diversity(gen_features), "distance": distance}

    def _check_drift(self, step: int) -> str | None:
        cfg = self.config
        baseline = self.drift_baseline
        assert baseline is not None and cfg.max_drift is not None
        now = self._measure_drift()
        self.drift_log.append({"step": float(step), **now})
        floor = cfg.min_diversity_fraction * baseline["diversity"]
        if now["diversity"] < floor:
            return (
                f"drift guard at step {step}: sample diversity {now['diversity']:.4f} "
                f"fell below {cfg.min_diversity_fraction} x initial "
                f"{baseline['diversity']:.4f}"
            )
        ceiling = cfg.max_drift * max(baseline["distance"], 1e-6)
        if now["distance"] > ceiling:
            return (
                f"drift guard at step {step}: distance to real images "
                f"{now['distance']:.4f} exceeds {cfg.max_drift} x initial "
                f"{baseline['distance']:.4f}"
            )
        return None


def _pil_to_tensor(images: list[Any]) -> torch.Tensor:
    import numpy as np

    array = np.stack([np.asarray(i.convert("RGB")) for i in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2).float() / 127.5 - 1


def image_grid(images: list[Any], *, columns: int) -> Any:
    """Paste equally sized pictures into a grid, row by row."""
    from PIL import Image

    columns = max(1, min(columns, len(images)))
    rows = math.ceil(len(images) / columns)
    width, height = images[0].size
    grid = Image.new("RGB", (columns * width, rows * height))
    for i, image in enumerate(images):
        grid.paste(
            image.convert("RGB"), ((i % columns) * width, (i // columns) * height)
        )
    return grid


def _jsonable_config(config: TrainConfig) -> dict[str, Any]:
    data = asdict(config)
    data["channels"] = list(config.channels)
    return data


def train(
    config: TrainConfig,
    *,
    progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train (or fine-tune) as ``config`` says; return where the model went.

    On a requested stop or a drift-guard stop no final model is written and
    ``stopped_reason`` says why; checkpoints remain for a resume.
    """
    return _Trainer(config, progress, should_stop).run()


__all__ = [
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "denoising_losses",
    "normalise_weights_per_prompt",
    "train",
]
