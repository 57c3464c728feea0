"""One micro-step of a fine-tune from feedback, for each objective.

The training loop draws the batch indices (``sample`` weighting: in
proportion to the row weights; ``loss``: shuffled epochs, weights scaling
the loss) and hands them here; this module noises the batch, runs the model
being trained and, for KTO and DPO, the frozen reference on the same draw,
and applies the objective of ``objectives.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .backends.base import DiffusionBackend
from .data import TrainingSet
from .denoising import DenoisingInputs, denoising_inputs, prediction_losses
from .errors import DatasetError
from .objectives import (
    ObjectiveResult,
    dpo_objective,
    kto_objective,
    unweighted_objective,
    weighted_objective,
)
from .pairs import PairSet
from .reference import ReferenceModel


@dataclass(frozen=True)
class ObjectiveSettings:
    objective: str
    weighting: str
    snr_gamma: float | None
    cond_dropout: float
    train_text_encoder: bool
    kto_beta: float
    kto_desirable_weight: float
    kto_undesirable_weight: float
    dpo_beta: float


def balance_kto_weights(weights: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Give desirable and undesirable rows the same total weight.

    KTO's authors recommend ``lambda_D n_D / (lambda_U n_U)`` between 1 and
    4/3; balancing the mass keeps one rare class from being drowned by the
    other (physicians may rate most images 3). Neutral rows keep theirs.
    """
    weights = weights.clone().double()
    good, bad = labels > 0, labels < 0
    if bool(good.any()) and bool(bad.any()):
        total = float(weights[good | bad].sum())
        for mask in (good, bad):
            mass = float(weights[mask].sum())
            if mass > 0:
                weights[mask] *= (total / 2) / mass
    return weights.float()


def check_kto_labels(data: TrainingSet) -> None:
    labels = data.labels
    if labels is None or not bool((labels != 0).any()):
        raise DatasetError(
            f"{data.source}: kto needs rows labelled desirable or undesirable; "
            "every row is neutral"
        )
    if not bool((data.weights[labels != 0] > 0).any()):
        raise DatasetError(f"{data.source}: every labelled row has weight 0")


def _inputs(
    backend: DiffusionBackend,
    batch: Any,
    generator: torch.Generator,
    settings: ObjectiveSettings,
    share: DenoisingInputs | None = None,
) -> DenoisingInputs:
    return denoising_inputs(
        backend,
        batch,
        generator=generator,
        cond_dropout=settings.cond_dropout,
        train_text_encoder=settings.train_text_encoder,
        share=share,
    )


def _reference_losses(
    reference: ReferenceModel,
    inputs: DenoisingInputs,
    backend: DiffusionBackend,
    settings: ObjectiveSettings,
) -> torch.Tensor:
    from .denoising import losses_of_prediction

    prediction = reference.predict(inputs.noisy, inputs.timesteps, inputs.context)
    return losses_of_prediction(
        prediction, inputs, backend.noise_scheduler, snr_gamma=settings.snr_gamma
    )


def feedback_loss(
    *,
    backend: DiffusionBackend,
    unet: Any,
    reference: ReferenceModel | None,
    data: TrainingSet | PairSet,
    indices: list[int],
    generator: torch.Generator,
    settings: ObjectiveSettings,
) -> ObjectiveResult:
    """The objective's loss on the rows (or pairs) ``indices`` of ``data``.

    The reference runs first, on the same noised inputs, so a reference that
    swaps tensors in the trained UNet has put them back before the model's
    own forward pass builds its graph.
    """
    scheduler = backend.noise_scheduler
    sampled = settings.weighting == "sample"
    if settings.objective == "dpo":
        if reference is None or not isinstance(data, PairSet):
            raise ValueError("dpo needs a reference model and a pair set")
        chosen, rejected = data.batch(indices)
        first = _inputs(backend, chosen, generator, settings)
        second = _inputs(backend, rejected, generator, settings, share=first)
        both = DenoisingInputs.concat([first, second])
        reference_losses = _reference_losses(reference, both, backend, settings)
        policy = prediction_losses(unet, both, scheduler, snr_gamma=settings.snr_gamma)
        size = len(first)
        return dpo_objective(
            policy[:size],
            policy[size:],
            reference_losses[:size],
            reference_losses[size:],
            None if sampled else chosen.weights,
            beta=settings.dpo_beta,
        )
    if not isinstance(data, TrainingSet):
        raise ValueError(f"{settings.objective} trains on single images, not pairs")
    batch = data.batch(indices)
    inputs = _inputs(backend, batch, generator, settings)
    if settings.objective == "kto":
        if reference is None or batch.labels is None:
            raise ValueError("kto needs a reference model and labelled rows")
        reference_losses = _reference_losses(reference, inputs, backend, settings)
        policy = prediction_losses(
            unet, inputs, scheduler, snr_gamma=settings.snr_gamma
        )
        return kto_objective(
            policy,
            reference_losses,
            batch.labels,
            None if sampled else batch.weights,
            beta=settings.kto_beta,
            desirable_weight=settings.kto_desirable_weight,
            undesirable_weight=settings.kto_undesirable_weight,
        )
    losses = prediction_losses(unet, inputs, scheduler, snr_gamma=settings.snr_gamma)
    if sampled or settings.objective in ("filtered", "none"):
        return ObjectiveResult(loss=unweighted_objective(losses))
    return ObjectiveResult(loss=weighted_objective(losses, batch.weights))
