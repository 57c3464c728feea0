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

# For the type checker: "import X as X" marks X as re-exported (the engine is
# checked with implicit re-exports off); the renamed fine-tune is a name of
# this module instead.
if TYPE_CHECKING:
    from .backends import load_backend as load_backend
    from .backends.base import DEFAULT_SCHEDULER as DEFAULT_SCHEDULER
    from .backends.base import DEFAULT_STEPS as DEFAULT_STEPS
    from .backends.base import GenerationRequest as GenerationRequest
    from .checkpoint import latest_checkpoint as latest_checkpoint
    from .data import prepare_image as prepare_image
    from .demo import build_demo_dataset as build_demo_dataset
    from .errors import EngineError as EngineError
    from .features import HandcraftedFeatures as HandcraftedFeatures
    from .feedback_data import DEFAULT_FILTER_THRESHOLD as DEFAULT_FILTER_THRESHOLD
    from .feedback_data import DEFAULT_KTO_UNRATED_WEIGHT as DEFAULT_KTO_UNRATED_WEIGHT
    from .feedback_data import FeedbackImage as FeedbackImage
    from .feedback_data import FeedbackRows as FeedbackRows
    from .feedback_data import Judgement as Judgement
    from .feedback_data import (
        normalise_weights_per_prompt as normalise_weights_per_prompt,
    )
    from .feedback_data import objective_rows as objective_rows
    from .feedback_data import preference_pairs as preference_pairs
    from .filtering import calibrate_threshold as calibrate_threshold
    from .filtering import filter_generate as filter_generate
    from .images import load_pil as load_pil
    from .metrics import local_fd_kid as local_fd_kid
    from .objectives import KTO_MIDDLE_MODES as KTO_MIDDLE_MODES
    from .objectives import OBJECTIVES as OBJECTIVES
    from .recipes import recipe_for as recipe_for
    from .reward import RewardModel as RewardModel
    from .reward import train_reward_model as train_reward_model
    from .reward_data import RatingRecord as RatingRecord
    from .reward_data import make_free_negatives as make_free_negatives
    from .reward_data import modality_vectors as modality_vectors
    from .reward_data import prompt_embedder_from_config as prompt_embedder_from_config
    from .reward_data import read_ratings_csv as read_ratings_csv
    from .reward_data import read_real_csv as read_real_csv
    from .reward_head import FeatureNormaliser as FeatureNormaliser
    from .reward_head import RewardConfig as RewardConfig
    from .reward_head import fit_ensemble as fit_ensemble
    from .reward_head import summarise_members as summarise_members
    from .stats import PairedTest as PairedTest
    from .stats import images_per_prompt_for_power as images_per_prompt_for_power
    from .stats import mcnemar_exact as mcnemar_exact
    from .stats import paired_sign_flip_test as paired_sign_flip_test
    from .stats import wilson_interval as wilson_interval
    from .train import train as _train
    from .train_config import TrainConfig as TrainConfig
    from .train_config import TrainProgress as TrainProgress
    from .train_monitor import spread_evenly as spread_evenly

    finetune = _train

# public name -> (submodule, name in it)
_PUBLIC: dict[str, tuple[str, str]] = {
    # fine-tuning the generator
    "finetune": ("train", "train"),
    "TrainConfig": ("train_config", "TrainConfig"),
    "TrainProgress": ("train_config", "TrainProgress"),
    "spread_evenly": ("train_monitor", "spread_evenly"),
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
    "RewardConfig": ("reward_head", "RewardConfig"),
    "RewardModel": ("reward", "RewardModel"),
    "read_ratings_csv": ("reward_data", "read_ratings_csv"),
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
    "RatingRecord": ("reward_data", "RatingRecord"),
    "read_real_csv": ("reward_data", "read_real_csv"),
    "fit_ensemble": ("reward_head", "fit_ensemble"),
    "summarise_members": ("reward_head", "summarise_members"),
    "FeatureNormaliser": ("reward_head", "FeatureNormaliser"),
    "make_free_negatives": ("reward_data", "make_free_negatives"),
    "modality_vectors": ("reward_data", "modality_vectors"),
    "prompt_embedder_from_config": ("reward_data", "prompt_embedder_from_config"),
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
