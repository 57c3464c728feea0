"""A training run's settings, checked before anything loads, its progress
reports and its result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import EngineError
from .objectives import OBJECTIVES, REFERENCE_OBJECTIVES


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
