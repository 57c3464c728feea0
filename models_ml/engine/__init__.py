"""The machine-learning library of medrlhf: its public API.

Nothing below this package imports Django. The rest of the project uses the
engine only through the names listed here, and through ``engine.readers``
(the torch-free image readers and de-identification, a public package of its
own); ``tests/medrlhf/test_import_rules.py`` checks it from the import graph.

Importing the package is cheap: each name is imported from its submodule the
first time it is used, so the web process can read the light names without
loading torch, diffusers and transformers.

The fine-tune is published as ``finetune`` (the engine CLI's command name)
because ``train`` is also the name of its submodule.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backends import load_backend
    from .backends.base import DEFAULT_SCHEDULER, DEFAULT_STEPS, GenerationRequest
    from .checkpoint import latest_checkpoint
    from .data import prepare_image
    from .demo import build_demo_dataset
    from .errors import EngineError
    from .features import HandcraftedFeatures
    from .feedback_data import (
        DEFAULT_FILTER_THRESHOLD,
        DEFAULT_KTO_UNRATED_WEIGHT,
        FeedbackImage,
        FeedbackRows,
        Judgement,
        normalise_weights_per_prompt,
        objective_rows,
        preference_pairs,
    )
    from .filtering import calibrate_threshold, filter_generate
    from .images import load_pil
    from .metrics import local_fd_kid
    from .objectives import KTO_MIDDLE_MODES, OBJECTIVES
    from .recipes import recipe_for
    from .reward import (
        FeatureNormaliser,
        RatingRecord,
        RewardConfig,
        RewardModel,
        fit_ensemble,
        make_free_negatives,
        modality_vectors,
        prompt_embedder_from_config,
        read_ratings_csv,
        read_real_csv,
        summarise_members,
        train_reward_model,
    )
    from .stats import (
        PairedTest,
        images_per_prompt_for_power,
        mcnemar_exact,
        paired_sign_flip_test,
        wilson_interval,
    )
    from .train import TrainConfig, TrainProgress, spread_evenly
    from .train import train as finetune

# public name -> (submodule, name in it)
_PUBLIC: dict[str, tuple[str, str]] = {
    # fine-tuning the generator
    "finetune": ("train", "train"),
    "TrainConfig": ("train", "TrainConfig"),
    "TrainProgress": ("train", "TrainProgress"),
    "spread_evenly": ("train", "spread_evenly"),
    "latest_checkpoint": ("checkpoint", "latest_checkpoint"),
    "OBJECTIVES": ("objectives", "OBJECTIVES"),
    "KTO_MIDDLE_MODES": ("objectives", "KTO_MIDDLE_MODES"),
    "recipe_for": ("recipes", "recipe_for"),
    # the physicians' judgements as training data
    "DEFAULT_FILTER_THRESHOLD": ("feedback_data", "DEFAULT_FILTER_THRESHOLD"),
    "DEFAULT_KTO_UNRATED_WEIGHT": ("feedback_data", "DEFAULT_KTO_UNRATED_WEIGHT"),
    "FeedbackImage": ("feedback_data", "FeedbackImage"),
    "FeedbackRows": ("feedback_data", "FeedbackRows"),
    "Judgement": ("feedback_data", "Judgement"),
    "objective_rows": ("feedback_data", "objective_rows"),
    "preference_pairs": ("feedback_data", "preference_pairs"),
    # generating
    "load_backend": ("backends", "load_backend"),
    "GenerationRequest": ("backends.base", "GenerationRequest"),
    "DEFAULT_STEPS": ("backends.base", "DEFAULT_STEPS"),
    "load_pil": ("images", "load_pil"),
    # the reward model and filtering
    "RewardConfig": ("reward", "RewardConfig"),
    "RewardModel": ("reward", "RewardModel"),
    "read_ratings_csv": ("reward", "read_ratings_csv"),
    "train_reward_model": ("reward", "train_reward_model"),
    "filter_generate": ("filtering", "filter_generate"),
    "calibrate_threshold": ("filtering", "calibrate_threshold"),
    # statistics for comparison rounds
    "PairedTest": ("stats", "PairedTest"),
    "paired_sign_flip_test": ("stats", "paired_sign_flip_test"),
    "wilson_interval": ("stats", "wilson_interval"),
    "images_per_prompt_for_power": ("stats", "images_per_prompt_for_power"),
    # the demo dataset and errors
    "build_demo_dataset": ("demo", "build_demo_dataset"),
    "EngineError": ("errors", "EngineError"),
    # what the research experiments (research/) build on besides the above
    "DEFAULT_SCHEDULER": ("backends.base", "DEFAULT_SCHEDULER"),
    "HandcraftedFeatures": ("features", "HandcraftedFeatures"),
    "prepare_image": ("data", "prepare_image"),
    "RatingRecord": ("reward", "RatingRecord"),
    "read_real_csv": ("reward", "read_real_csv"),
    "fit_ensemble": ("reward", "fit_ensemble"),
    "summarise_members": ("reward", "summarise_members"),
    "FeatureNormaliser": ("reward", "FeatureNormaliser"),
    "make_free_negatives": ("reward", "make_free_negatives"),
    "modality_vectors": ("reward", "modality_vectors"),
    "prompt_embedder_from_config": ("reward", "prompt_embedder_from_config"),
    "normalise_weights_per_prompt": ("feedback_data", "normalise_weights_per_prompt"),
    "local_fd_kid": ("metrics", "local_fd_kid"),
    "mcnemar_exact": ("stats", "mcnemar_exact"),
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
