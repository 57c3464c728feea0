"""How each objective fine-tunes unless told otherwise.

One table for the platform's fine-tune jobs and the objectives experiment
(``research.feedback_objectives --recipes``), so what the experiment
measured is what the product runs. The settings were chosen on the
experiment's development seeds (docs/retraining.md, "Which objective").
Torch-free.
"""

from __future__ import annotations

from typing import Any

from .objectives import OBJECTIVES

# Every objective: a constant learning rate after 20 warm-up steps, the
# real-image term at weight 1, and the drift guard on.
RECIPE_SHARED: dict[str, Any] = {
    "lr_scheduler": "constant",
    "lr_warmup_steps": 20,
    "beta": 1.0,
    "max_drift": 3.0,
}
OBJECTIVE_RECIPES: dict[str, dict[str, Any]] = {
    "weighted": {"max_steps": 200, "learning_rate": 1e-4},
    "filtered": {"max_steps": 400, "learning_rate": 3e-4, "filter_threshold": 0.75},
    "kto": {"max_steps": 200, "learning_rate": 1e-5, "kto_beta": 2000.0},
    # Fourth cycle (docs/retraining.md): beta 1500 at 300 steps beat the
    # control at every reported seed within the drift target, at half the
    # second cycle's 600 steps at beta 2000.
    "dpo": {"max_steps": 300, "learning_rate": 1e-5, "dpo_beta": 1500.0},
    # On its own, the control takes the default objective's schedule.
    "none": {"max_steps": 300, "learning_rate": 1e-5},
}
# What a control takes from the fine-tune it stands beside: its schedule.
SCHEDULE_KEYS = ("max_steps", "learning_rate", *RECIPE_SHARED)


def recipe_for(objective: str) -> dict[str, Any]:
    """The objective's settings, shared ones included."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r}: use one of {', '.join(OBJECTIVES)}")
    return {**RECIPE_SHARED, **OBJECTIVE_RECIPES[objective]}
