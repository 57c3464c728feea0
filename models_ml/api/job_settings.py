"""Typed settings of the ML jobs, as the API receives and documents them.

Each job's settings used to be a free dictionary in the OpenAPI schema; here
every key has a type and a range, unknown keys are refused by name, and
paths must lie under the allowed roots (``MODELS_DIR`` and
``IMPORT_ROOTS``). Only the keys a client sends come out, so the services'
defaults and the objectives' recipes fill in the rest. The services check
the same ranges again for the pages and commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from drf_spectacular.utils import (
    extend_schema_serializer,
)
from rest_framework import serializers

from annotations.models import ServingPolicy

from ..engine import KTO_MIDDLE_MODES, OBJECTIVES
from ..rater_weighting import RATER_WEIGHTINGS
from ..services.params import (
    MAX_GUIDANCE,
    MAX_SAMPLING_BATCH,
    SCHEDULERS,
)

MAX_SEED = 2**32 - 1


def allowed_model_roots() -> list[Path]:
    return [Path(settings.MODELS_DIR), *(Path(r) for r in settings.IMPORT_ROOTS)]


def check_under_roots(value: str, what: str) -> str:
    """``value`` as a resolved path under an allowed root, or a 400."""
    path = Path(value).expanduser().resolve()
    roots = [r.resolve() for r in allowed_model_roots()]
    if not any(path == r or r in path.parents for r in roots):
        raise serializers.ValidationError(
            f"{what} must lie under {', '.join(str(r) for r in roots)}"
        )
    return str(path)


class StrictSettings(serializers.Serializer):
    """Refuses keys it does not know, naming them."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {key: "not a setting here" for key in unknown}
                )
        return super().to_internal_value(data)


def _int(low: int, high: int, text: str = "") -> serializers.IntegerField:
    return serializers.IntegerField(
        min_value=low, max_value=high, required=False, help_text=text
    )


def _float(low: float, high: float, text: str = "") -> serializers.FloatField:
    return serializers.FloatField(
        min_value=low, max_value=high, required=False, help_text=text
    )


def _bool(text: str = "") -> serializers.BooleanField:
    return serializers.BooleanField(required=False, help_text=text)


def _choice(choices: Any, text: str = "") -> serializers.ChoiceField:
    return serializers.ChoiceField(choices, required=False, help_text=text)


@extend_schema_serializer(component_name="TrainSettings")
class TrainSettingsSerializer(StrictSettings):
    name = serializers.CharField(max_length=200, required=False)
    backend = _choice(("tiny", "sd"))
    model_path = serializers.CharField(
        max_length=1000,
        required=False,
        help_text="A local model folder under MODELS_DIR or IMPORT_ROOTS.",
    )
    resolution = _int(8, 1024, "pixels")
    channels = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2048),
        min_length=1,
        max_length=8,
        required=False,
        help_text="tiny backend: the UNet's block widths, e.g. [32, 64, 128]",
    )
    batch_size = _int(1, 256)
    learning_rate = _float(1e-9, 1)
    max_steps = _int(1, 1_000_000)
    grad_accum = _int(1, 64)
    lr_scheduler = _choice(("cosine", "constant", "linear"))
    lr_warmup_steps = _int(0, 100_000)
    max_grad_norm = _float(1e-6, 1000)
    weight_decay = _float(0, 1)
    seed = _int(0, MAX_SEED)
    checkpointing_steps = _int(1, 1_000_000)
    checkpoints_total_limit = _int(1, 100)
    mixed_precision = _choice(("no", "fp16", "bf16"))
    use_lora = _bool()
    lora_rank = _int(1, 256)
    use_ema = _bool()
    ema_decay = _float(0, 0.99999)
    snr_gamma = _float(1e-6, 100)
    gradient_checkpointing = _bool()
    cond_dropout = _float(0, 1)
    device = _choice(("cpu", "cuda"))

    def validate_model_path(self, value: str) -> str:
        return check_under_roots(value, "model_path")


@extend_schema_serializer(component_name="FinetuneSettings")
class FinetuneSettingsSerializer(TrainSettingsSerializer):
    objective = _choice(OBJECTIVES, "how the new version learns from the ratings")
    beta = _float(0, 1000, "weight of the real-image term")
    filter_threshold = serializers.FloatField(
        min_value=1e-6, max_value=1, required=False, help_text="filtered: (0, 1]"
    )
    weighting = _choice(("sample", "loss"))
    kto_beta = _float(1e-6, 1e7)
    kto_desirable_weight = _float(1e-6, 100)
    kto_undesirable_weight = _float(1e-6, 100)
    kto_middle = _choice(KTO_MIDDLE_MODES, "what an image rated 2 is to KTO")
    kto_middle_weight = _float(-1, 1)
    kto_unrated_weight = _float(0, 1)
    dpo_beta = _float(1e-6, 1e7)
    max_drift = _float(1.000001, 1000)
    min_diversity_fraction = _float(0, 1)
    drift_check_steps = _int(1, 1_000_000)
    drift_samples = _int(1, 256)
    max_samples = _int(1, 1_000_000)


@extend_schema_serializer(component_name="RewardSettings")
class RewardSettingsSerializer(StrictSettings):
    name = serializers.CharField(max_length=200, required=False)
    features = serializers.CharField(
        max_length=1100,
        required=False,
        help_text="handcrafted, unet:<folder> or hf:<folder> (folders under "
        "MODELS_DIR or IMPORT_ROOTS)",
    )
    ensemble_size = _int(1, 32)
    epochs = _int(1, 10_000)
    lr = _float(1e-9, 10)
    weight_decay = _float(0, 10)
    hidden = _int(1, 4096)
    rank = _int(1, 512)
    negatives_per_image = _int(0, 16)
    negative_weight = _float(0, 10)
    n_folds = _int(2, 20)
    seed = _int(0, MAX_SEED)
    modality_buckets = _int(1, 1024)
    target_precision = _float(1e-6, 1)
    max_real_images = _int(1, 1_000_000)
    rater_weighting = _choice(RATER_WEIGHTINGS)

    def validate_features(self, value: str) -> str:
        if value == "handcrafted":
            return value
        kind, sep, folder = value.partition(":")
        if not sep or kind not in ("unet", "hf") or not folder:
            raise serializers.ValidationError(
                "use handcrafted, unet:<folder> or hf:<folder>"
            )
        return f"{kind}:{check_under_roots(folder, 'features folder')}"


@extend_schema_serializer(component_name="SamplingSettings")
class SamplingSettingsSerializer(StrictSettings):
    """How images are sampled; each setting defaults to the product's
    sampler (ancestral DDPM, 50 steps)."""

    steps = _int(1, 1000)
    guidance = _float(0, MAX_GUIDANCE)
    scheduler = _choice(SCHEDULERS)
    batch_size = _int(1, MAX_SAMPLING_BATCH)
    device = _choice(("cpu", "cuda"))


@extend_schema_serializer(component_name="ComparisonRoundSettings")
class RoundSettingsSerializer(SamplingSettingsSerializer):
    """A comparison round's settings: its sampling, size and serving."""

    name = serializers.CharField(max_length=200, required=False)
    prompts = serializers.ListField(
        child=serializers.ListField(
            child=serializers.CharField(max_length=1000), min_length=2, max_length=2
        ),
        min_length=1,
        max_length=500,
        required=False,
        help_text="[prompt, modality] pairs; default: the parent's prompts",
    )
    images_per_prompt = _int(1, 64, "per arm")
    raters_per_image = _int(1, 50)
    control_share = _float(0, 0.99)
    seed = _int(0, MAX_SEED)
    best_of_n = serializers.IntegerField(
        min_value=0,
        max_value=16,
        required=False,
        help_text="add the parent best-of-N by the new reward model (0: no)",
    )
    alpha = _float(1e-6, 0.5, "the gate's level (two-sided)")
    agreement_share = _float(0, 1)
    repeat_share = _float(0, 0.5)
    serving_policy = _choice(ServingPolicy.choices)
    rescore_every = _int(0, 100_000)

    def validate_best_of_n(self, value: int) -> int:
        if value == 1:
            raise serializers.ValidationError("best of 1 is the parent: use 0 or 2+")
        return value


def settings_field(serializer: type[serializers.Serializer]) -> Any:
    return serializer(required=False, default=dict)
