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
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from .backends.base import DiffusionBackend
from .checkpoint import load_checkpoint, resolve_resume, save_checkpoint
from .data import (
    TrainingSet,
    batch_indices,
    weighted_batch_indices,
)
from .denoising import denoising_losses, step_generator
from .feedback import (
    ObjectiveSettings,
    feedback_loss,
)
from .feedback_data import normalise_weights_per_prompt
from .objectives import REFERENCE_OBJECTIVES, weighted_objective
from .pairs import PairSet
from .train_config import TrainConfig, TrainConfigError, TrainProgress, TrainResult
from .train_data import trainable_parameters, training_data
from .train_monitor import (
    drift_verdict,
    measure_drift,
    validation_grid,
)

# The name the fine-tune tests and callers have always used.
weighted_mean = weighted_objective


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
        return training_data(self.config, self.backend.resolution)

    def _trainable_parameters(self) -> list[torch.nn.Parameter]:
        return trainable_parameters(self.config, self.backend)

    def run(self) -> TrainResult:
        self.setup()
        cfg = self.config
        step, losses = self._resume()
        if cfg.max_drift is not None and self.drift_baseline is None:
            self.drift_baseline = self._measure_drift()
        stopped: str | None = None
        started = time.monotonic()
        samples = 0
        while step < cfg.max_steps and stopped is None:
            loss = self._train_step(step)
            step += 1
            samples += cfg.batch_size * cfg.grad_accum * self.accelerator.num_processes
            losses.append(loss)
            if self.progress:
                self.progress(
                    TrainProgress(
                        step=step,
                        max_steps=cfg.max_steps,
                        loss=loss,
                        lr=self.lr_scheduler.get_last_lr()[0],
                        samples_per_second=samples
                        / max(time.monotonic() - started, 1e-9),
                    )
                )
            stopped = self._after_step(step, loss, losses)
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

    def _resume(self) -> tuple[int, list[float]]:
        """The step and losses to go on from: a checkpoint's, or a fresh start."""
        resume_from = resolve_resume(self.output_dir, self.config.resume)
        if resume_from is None:
            return 0, []
        state = load_checkpoint(
            resume_from,
            backend=self.backend,
            optimizer=self.optimizer,
            lr_scheduler=self.lr_scheduler,
            ema=self.ema,
        )
        self.drift_baseline = state.get("drift_baseline")
        self.drift_log = list(state.get("drift", []))
        self.validation_images = [Path(p) for p in state.get("validation", [])]
        return int(state["step"]), list(state.get("losses", []))

    def _after_step(self, step: int, loss: float, losses: list[float]) -> str | None:
        """Validate, check drift and checkpoint as configured; the reason to
        stop, if there is one."""
        cfg = self.config
        if not math.isfinite(loss):
            return f"loss became {loss} at step {step}"
        if cfg.validation_steps and step % cfg.validation_steps == 0:
            self._validate(step)
        if (
            cfg.max_drift is not None
            and step % cfg.drift_check_steps == 0
            and step < cfg.max_steps
        ):
            stopped = self._check_drift(step)
            if stopped:
                return stopped
        if self.should_stop and self.should_stop():
            if cfg.checkpointing_steps:
                self._checkpoint(step, losses)
            return f"stopped on request at step {step}"
        if cfg.checkpointing_steps and step % cfg.checkpointing_steps == 0:
            self._checkpoint(step, losses)
        return None

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

    def _validate(self, step: int) -> None:
        if not self.accelerator.is_main_process:
            return
        folder = self.output_dir / "validation" / f"step-{step}"
        self.validation_images.append(
            validation_grid(
                self.config, self.backend, self.accelerator, self.prompt_set, folder
            )
        )

    def _measure_drift(self) -> dict[str, float]:
        return measure_drift(
            self.config, self.backend, self.accelerator, self.prompt_set, self.real_set
        )

    def _check_drift(self, step: int) -> str | None:
        baseline = self.drift_baseline
        assert baseline is not None
        now = self._measure_drift()
        self.drift_log.append({"step": float(step), **now})
        return drift_verdict(self.config, baseline, now, step)


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
