"""Fine-tuning objectives: how physicians' judgements become a loss.

Each objective is a small function of per-sample denoising losses ``L`` (the
squared error of the model's prediction for one noised image, as
``denoising_losses`` computes it). A lower ``L`` means the model gives that
image a higher likelihood: for diffusion models ``-L`` is, up to constants
and a timestep weighting, the per-sample evidence lower bound (Ho et al.
2020). The preference objectives compare the model being trained (the
*policy*, ``L_theta``) with a frozen *reference*, the parent version
(``L_ref``), on the same noise and timestep.

``weighted``
    Reward-weighted likelihood: ``sum_i w_i L_theta(x_i) / sum_i w_i``, each
    generated image weighted by its physicians' mean rating mapped to 0-1 (or
    the reward model's score), normalised per prompt (Lee et al. 2023,
    "Aligning text-to-image models using human feedback"). In ``sample``
    weighting, batches are drawn in proportion to ``w`` and averaged.
``filtered``
    Rejection-sampling fine-tuning: only the images whose weight reaches a
    threshold, counted equally (``mean_i L_theta(x_i)`` over the kept rows).
``kto``
    Diffusion-KTO (Li et al. 2024, "Aligning Diffusion Models by Optimizing
    Human Utility", arXiv:2404.04465), from per-image judgements. With the
    implicit reward ``g_i = L_ref(x_i) - L_theta(x_i)`` and the reference
    point ``z = max(0, mean_batch g)`` (detached),

        loss_i = lambda_D (1 - sigmoid(beta (g_i - z)))   desirable (rated 3)
        loss_i = lambda_U (1 - sigmoid(beta (z - g_i)))   undesirable (rated 1)

    averaged with the row weights. Neutral rows (label 0) only enter ``z``.
``dpo``
    Diffusion-DPO (Wallace et al. 2023, "Diffusion Model Alignment Using
    Direct Preference Optimization", arXiv:2311.12908), from pairs of images
    of one prompt where one physician preferred the first (``w``) to the
    second (``l``), both noised with the same noise and timestep:

        loss = -log sigmoid(-beta ((L_theta(w) - L_theta(l))
                                    - (L_ref(w) - L_ref(l))))

    (the paper's ``T omega(lambda_t)`` folded into ``beta``).
``none``
    The compute-matched control: the same images, steps and schedule as the
    feedback objectives, every image counted equally
    (``mean_i L_theta(x_i)``): fine-tuning without the ratings.

Every objective is trained beside the same real-image term,
``beta_real * mean L_theta(real)``, added by the training loop.

Importing this module does not import torch, so the platform's web process
can check an objective's name and settings against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

OBJECTIVES = ("weighted", "filtered", "kto", "dpo", "none")
# Objectives that measure the policy against a frozen reference model.
REFERENCE_OBJECTIVES = frozenset({"kto", "dpo"})
# How a KTO fine-tune treats an image rated 2 (neither desirable nor not).
KTO_MIDDLE_MODES = ("neutral", "dropped", "weighted")

DESIRABLE = 1.0
UNDESIRABLE = -1.0
NEUTRAL = 0.0


@dataclass(frozen=True)
class ObjectiveResult:
    """The loss to minimise and what is worth logging about it."""

    loss: torch.Tensor
    # Share of rows (or pairs) the implicit reward already ranks the right way.
    accuracy: float | None = None
    # KTO's reference point z, or DPO's mean implicit reward margin.
    reference_point: float | None = None


def weighted_objective(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum(w * L) / sum(w)``; zero when every weight is zero."""
    weights = weights.to(losses)
    return (losses * weights).sum() / weights.sum().clamp_min(1e-12)


def unweighted_objective(losses: torch.Tensor) -> torch.Tensor:
    """The plain mean: ``filtered`` (over the kept rows) and ``none``."""
    return losses.mean()


def kto_objective(
    policy: torch.Tensor,
    reference: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None = None,
    *,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> ObjectiveResult:
    """Diffusion-KTO's loss for one batch (see the module docstring).

    ``labels`` holds +1 (desirable), -1 (undesirable) or 0 (neutral) per row;
    ``weights`` scale each row's term (1 by default). A batch with no
    labelled row gives a zero loss that still depends on the policy, so
    backward passes stay uniform.
    """
    import torch

    reference = reference.detach().to(policy)
    labels = labels.to(policy)
    weights = torch.ones_like(policy) if weights is None else weights.to(policy)
    implicit = reference - policy
    point = implicit.detach().mean().clamp_min(0.0)
    signed = labels * beta * (implicit - point)
    lambdas = torch.where(
        labels > 0,
        torch.full_like(policy, desirable_weight),
        torch.full_like(policy, undesirable_weight),
    )
    active = (labels != 0).to(policy) * weights
    terms = lambdas * (1.0 - torch.sigmoid(signed))
    loss = (terms * active).sum() / active.sum().clamp_min(1e-12)
    labelled = labels != 0
    accuracy = (
        float((signed[labelled] > 0).float().mean()) if bool(labelled.any()) else None
    )
    return ObjectiveResult(loss=loss, accuracy=accuracy, reference_point=float(point))


def dpo_objective(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    weights: torch.Tensor | None = None,
    *,
    beta: float,
) -> ObjectiveResult:
    """Diffusion-DPO's loss for a batch of pairs (see the module docstring)."""
    import torch.nn.functional as F

    policy_margin = policy_chosen - policy_rejected
    reference_margin = (
        (reference_chosen - reference_rejected).detach().to(policy_margin)
    )
    inside = -beta * (policy_margin - reference_margin)
    losses = -F.logsigmoid(inside)
    if weights is None:
        loss = losses.mean()
    else:
        loss = weighted_objective(losses, weights)
    return ObjectiveResult(
        loss=loss,
        accuracy=float((inside > 0).float().mean()),
        reference_point=float(inside.detach().mean()),
    )


def kto_label(
    mean_rating: float, *, middle: str = "neutral", middle_weight: float = 0.5
) -> tuple[float, float] | None:
    """(label, weight) of one image from its physicians' mean rating (1-3).

    Above 2 the image is desirable, below 2 undesirable, each with a weight
    growing with the distance from 2 (a lone 3 or 1 weighs 1). Exactly 2
    follows ``middle``: ``neutral`` keeps it for the reference point only,
    ``dropped`` leaves it out (None), ``weighted`` makes it desirable with
    ``middle_weight`` (negative: undesirable with ``-middle_weight``).
    """
    if not 1.0 <= mean_rating <= 3.0:
        raise ValueError(f"mean rating {mean_rating} is outside 1-3")
    if middle not in KTO_MIDDLE_MODES:
        raise ValueError(f"middle {middle!r}: use one of {', '.join(KTO_MIDDLE_MODES)}")
    distance = mean_rating - 2.0
    if distance > 0:
        return DESIRABLE, distance
    if distance < 0:
        return UNDESIRABLE, -distance
    if middle == "dropped":
        return None
    if middle == "neutral":
        return NEUTRAL, 1.0
    if middle_weight == 0:
        return None
    return (DESIRABLE if middle_weight > 0 else UNDESIRABLE), abs(middle_weight)


__all__ = [
    "KTO_MIDDLE_MODES",
    "OBJECTIVES",
    "REFERENCE_OBJECTIVES",
    "ObjectiveResult",
    "dpo_objective",
    "kto_label",
    "kto_objective",
    "unweighted_objective",
    "weighted_objective",
]
