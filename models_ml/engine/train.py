"""One training loop for base training and fine-tuning from feedback.

Base training fits the denoising loss on real image-text pairs. Fine-tuning
reads the parent's generated samples with what physicians (or the reward
model) said of them and minimises

    objective(synthetic)  +  beta * L(real)

so real images keep the model anchored. The objective is one of
``objectives.OBJECTIVES``: ``weighted`` (``sum_i w_i L_i / sum_i w_i``, the
weights already normalised per prompt by the caller), ``filtered`` (only the
samples whose weight reaches a threshold), ``kto`` (per-image judgements
against the frozen parent), ``dpo`` (preference pairs against the frozen
parent) or ``none`` (the same samples, no feedback: the control). A drift
guard stops the run when generated samples lose diversity or wander from
real images.

Every random draw in a step comes from a generator seeded by (seed, step), so
a run resumed from a checkpoint repeats the uninterrupted run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .backends.base import DiffusionBackend, GenerationRequest
from .checkpoint import load_checkpoint, resolve_resume, save_checkpoint
from .data import (
    TrainingSet,
    batch_indices,
    load_training_set,
    weighted_batch_indices,
)
from .denoising import denoising_losses, step_generator
from .errors import DatasetError, EngineError
from .feedback import (
    ObjectiveSettings,
    balance_kto_weights,
    check_kto_labels,
    feedback_loss,
)
from .feedback_data import normalise_weights_per_prompt
from .objectives import OBJECTIVES, REFERENCE_OBJECTIVES, weighted_objective
from .pairs import PairSet, load_pair_set


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
    # What the fine-tune optimises (objectives.py). "weighted" with a
    # filter_threshold is the filtered variant, as before objectives existed.
    objective: str = "weighted"
    # dpo: chosen/rejected pairs of the parent's images (pairs.py).
    pairs_csv: str | None = None
    kto_beta: float = 2000.0
    kto_desirable_weight: float = 1.0
    kto_undesirable_weight: float = 1.0
    kto_balance: bool = True
    dpo_beta: float = 1500.0
    max_drift: float | None = None
    min_diversity_fraction: float = 0.5
    drift_check_steps: int = 50
    # Drift samples are spread over the training data's prompts, sorted by
    # modality: a fine-tune that breaks one modality shows in the reading.
    drift_samples: int = 8
    save_precision: str = "fp32"

    @property
    def is_finetune(self) -> bool:
        return bool(self.weights_csv or self.pairs_csv)

    @property
    def resolved_objective(self) -> str:
        """``filtered`` for the old spelling (weighted + filter_threshold)."""
        if self.objective == "weighted" and self.filter_threshold is not None:
            return "filtered"
        return self.objective

    def validate(self) -> None:
        if not self.data_csv and not self.is_finetune:
            raise TrainConfigError(
                "give data_csv (training), weights_csv or pairs_csv (fine-tune)"
            )
        self._validate_objective()
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

    def _validate_objective(self) -> None:
        objective = self.objective
        if objective not in OBJECTIVES:
            raise TrainConfigError(
                f"objective {objective!r}: use one of {', '.join(OBJECTIVES)}"
            )
        if objective == "dpo":
            if not self.pairs_csv:
                raise TrainConfigError("objective 'dpo' needs pairs_csv")
            if self.weights_csv:
                raise TrainConfigError(
                    "objective 'dpo' reads pairs_csv, not weights_csv"
                )
        elif self.pairs_csv:
            raise TrainConfigError(
                f"pairs_csv is for objective 'dpo', not {objective!r}"
            )
        elif objective != "weighted" and not self.weights_csv:
            raise TrainConfigError(f"objective {objective!r} needs weights_csv")
        if objective == "filtered" and self.filter_threshold is None:
            raise TrainConfigError("objective 'filtered' needs filter_threshold")
        if self.filter_threshold is not None and objective not in (
            "weighted",
            "filtered",
        ):
            raise TrainConfigError(
                f"filter_threshold applies to the filtered objective, not {objective!r}"
            )
        for name in ("kto_beta", "dpo_beta"):
            if not 0 < getattr(self, name) <= 1e7:
                raise TrainConfigError(f"{name} must be above 0 and at most 1e7")
        for name in ("kto_desirable_weight", "kto_undesirable_weight"):
            if not 0 < getattr(self, name) <= 100:
                raise TrainConfigError(f"{name} must be above 0 and at most 100")
        if objective in REFERENCE_OBJECTIVES and self.train_text_encoder:
            raise TrainConfigError(
                f"objective {objective!r} trains the UNet only; drop train_text_encoder"
            )


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
    # The fine-tune's objective, its reference model and, for KTO and DPO,
    # the means over the last fifth of the steps of the share of rows (pairs)
    # the implicit reward ranks right and of the reference point.
    objective: dict[str, Any] = field(default_factory=dict)
    drift_baseline: dict[str, float] | None = None


# The name the fine-tune tests and callers have always used.
weighted_mean = weighted_objective


# Real images the drift guard's distance is measured against, spread over the
# real data (the first few would be one modality).
DRIFT_REAL_IMAGES = 256


def spread_evenly(items: Sequence[Any], count: int) -> list[Any]:
    """``count`` items taken at even steps through ``items`` (all, if fewer),
    so samples sorted by modality cover every modality, not the first few."""
    if len(items) <= count:
        return list(items)
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


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
        parent_has_lora = bool(getattr(self.backend, "lora_rank", None))
        params = self._trainable_parameters()
        self.reference = self._build_reference(parent_has_lora)
        self.objective_log: list[tuple[float | None, float | None]] = []
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

    def _build_reference(self, parent_has_lora: bool) -> Any:
        """The frozen parent for KTO and DPO (reference.py), else None."""
        cfg = self.config
        if not cfg.is_finetune or cfg.resolved_objective not in REFERENCE_OBJECTIVES:
            return None
        from .reference import build_reference

        half = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.mixed_precision)
        on_gpu = self.backend.device.type == "cuda"
        return build_reference(
            self.backend.unet,
            unwrap=lambda: self.accelerator.unwrap_model(
                getattr(self, "unet", self.backend.unet)
            ),
            use_lora=cfg.use_lora,
            parent_has_lora=parent_has_lora,
            dtype=half if half and on_gpu else None,
        )

    def _objective_settings(self) -> ObjectiveSettings:
        cfg = self.config
        return ObjectiveSettings(
            objective=cfg.resolved_objective,
            weighting=cfg.weighting,
            snr_gamma=cfg.snr_gamma,
            cond_dropout=cfg.cond_dropout,
            train_text_encoder=cfg.train_text_encoder,
            kto_beta=cfg.kto_beta,
            kto_desirable_weight=cfg.kto_desirable_weight,
            kto_undesirable_weight=cfg.kto_undesirable_weight,
            dpo_beta=cfg.dpo_beta,
        )

    @property
    def prompt_set(self) -> TrainingSet:
        """Images with prompts: the training rows, or a pair set's chosen side."""
        if isinstance(self.main_set, PairSet):
            return self.main_set.chosen
        return self.main_set

    def _build_backend(self) -> DiffusionBackend:
        cfg = self.config
        device = self.accelerator.device
        if cfg.model_path:
            from .backends import load_backend
            from .backends.sd import SDBackend

            backend = load_backend(cfg.model_path, device=device)
            if backend.name != cfg.backend:
                raise TrainConfigError(
                    f"{cfg.model_path}: holds a {backend.name!r} model, "
                    f"backend {cfg.backend!r} was asked for"
                )
            if cfg.resolution and cfg.resolution != backend.resolution:
                if not isinstance(backend, SDBackend):
                    raise TrainConfigError(
                        f"{cfg.model_path}: trained at {backend.resolution}px, "
                        f"resolution {cfg.resolution} differs"
                    )
                backend.set_resolution(cfg.resolution)
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
        for data in (self.prompt_set, self.real_set):
            if data is not None:
                pairs.update(zip(data.prompts, data.modalities, strict=True))
        if len(pairs) > CACHE_LIMIT:
            return
        ordered = sorted(pairs, key=str)
        for start in range(0, len(ordered), 64):
            chunk = ordered[start : start + 64]
            self.backend.encode_prompts([p for p, _ in chunk], [m for _, m in chunk])

    def _load_data(self) -> tuple[TrainingSet | PairSet, TrainingSet | None]:
        cfg = self.config
        resolution = self.backend.resolution
        objective = cfg.resolved_objective
        main: TrainingSet | PairSet
        if cfg.pairs_csv:
            main = load_pair_set(cfg.pairs_csv, resolution)
        elif cfg.weights_csv:
            main = load_training_set(
                cfg.weights_csv,
                resolution,
                need_weight=objective != "none",
                min_weight=cfg.filter_threshold if objective == "filtered" else None,
                need_label=objective == "kto",
                equal_weights=objective == "none",
            )
            if objective == "kto":
                check_kto_labels(main)
                if cfg.kto_balance:
                    assert main.labels is not None
                    main.weights = balance_kto_weights(main.weights, main.labels)
        else:
            assert cfg.data_csv
            main = load_training_set(cfg.data_csv, resolution)
        real = None
        if cfg.real_csv:
            real = load_training_set(cfg.real_csv, resolution)
        elif cfg.is_finetune and cfg.data_csv:
            real = load_training_set(cfg.data_csv, resolution)
        if len(main) == 0:
            raise DatasetError(f"{main.source}: dataset is empty")
        return main, real

    def _trainable_parameters(self) -> list[torch.nn.Parameter]:
        from .backends.sd import SDBackend

        cfg = self.config
        backend = self.backend
        half = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.mixed_precision)
        if half and backend.device.type == "cuda" and isinstance(backend, SDBackend):
            # Frozen parts run in half precision; trained tensors stay float32.
            backend.vae.to(dtype=half)
            if not cfg.train_text_encoder:
                backend.text_encoder.to(dtype=half)
            if cfg.use_lora:
                backend.unet.to(dtype=half)
        if cfg.use_lora:
            # (validate() refuses LoRA on any other backend)
            if not isinstance(backend, SDBackend):
                raise TrainConfigError("use_lora applies to backend 'sd' only")
            backend.add_lora(cfg.lora_rank, text_encoder=cfg.train_text_encoder)
        else:
            backend.unet.requires_grad_(True)
            if isinstance(backend, SDBackend):
                backend.full_unet = True
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
            if cfg.max_drift is not None and not any(
                d.get("step") == float(step) for d in self.drift_log
            ):
                # The reading the version is judged by: its last one.
                self.drift_log.append({"step": float(step), **self._measure_drift()})
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
            objective=self._objective_summary(),
            drift_baseline=self.drift_baseline,
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
        if cfg.is_finetune:
            main = self.main_set
            if cfg.weighting == "sample":
                indices = weighted_batch_indices(
                    main.weights, cfg.batch_size, index, **where
                )
            else:
                indices = batch_indices(len(main), cfg.batch_size, index, **where)
            result = feedback_loss(
                backend=self.backend,
                unet=self.unet,
                reference=self.reference,
                data=main,
                indices=indices,
                generator=generator,
                settings=self._objective_settings(),
            )
            loss = result.loss
            self.objective_log.append((result.accuracy, result.reference_point))
        else:
            assert isinstance(self.main_set, TrainingSet)
            batch = self.main_set.batch(
                batch_indices(len(self.main_set), cfg.batch_size, index, **where)
            )
            loss = denoising_losses(
                self.backend, batch, generator=generator, **kwargs
            ).mean()
        if self.real_set is not None and cfg.is_finetune and cfg.beta > 0:
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

    def _objective_summary(self) -> dict[str, Any]:
        cfg = self.config
        if not cfg.is_finetune:
            return {}
        objective = cfg.resolved_objective
        summary: dict[str, Any] = {"objective": objective}
        if self.reference is not None:
            summary["reference"] = self.reference.kind
        tail = self.objective_log[-max(1, len(self.objective_log) // 5) :]
        for key, position in (("accuracy", 0), ("reference_point", 1)):
            values = [x for x in (v[position] for v in tail) if x is not None]
            if values:
                summary[key] = sum(values) / len(values)
        return summary

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
                from .backends.tiny import TinyBackend

                # (validate() refuses fp16 saving on any other backend)
                if not isinstance(self.backend, TinyBackend):
                    raise TrainConfigError(
                        "save_precision fp16 applies to backend 'tiny' only"
                    )
                self.backend.save(final, half=True)
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
                self.prompt_set.prompts, self.prompt_set.modalities, strict=True
            ):
                seen.setdefault((p, m), None)
            pairs = spread_evenly(
                sorted(seen, key=lambda pm: (str(pm[1]), pm[0])),
                max(1, cfg.drift_samples),
            )
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
        for modality in self.prompt_set.modalities:
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
        held_out = self.real_set or self.prompt_set
        rows = spread_evenly(range(len(held_out)), DRIFT_REAL_IMAGES)
        real = held_out.pixels[list(rows)].float() / 127.5 - 1
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
