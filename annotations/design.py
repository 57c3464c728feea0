"""A round's serving design as one value: how much every physician shares
(the agreement set), how much comes back (repeats), in which order the rest
is served, the reward model that orders it, and how often it is re-scored.

The rounds page, ``POST /api/rounds/``, the Retraining page and
``POST /api/rounds/generate/`` build a ``ServingDesign``; ``round_create`` and
``round_generate_start`` take one and check it once (``checked``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import DomainError
from .models import ServingPolicy

# A repeat needs room for this many images between the two showings.
MAX_REPEAT_SHARE = 0.5
# Most informative first re-scores the round after this many new ratings
# unless told otherwise: the interval the serving experiments tested (12 and
# 24; docs/engine.md, "Scored once or re-scored, and balanced by modality").
DEFAULT_RESCORE_EVERY = 24
MAX_RESCORE_EVERY = 100_000


def agreement_items_needed(*, n_items: int, agreement_share: float) -> int:
    """Items of the agreement set: ``agreement_share`` of the round, at least one."""
    if not 0 <= agreement_share <= 1:
        raise DomainError("agreement_share must be between 0 and 1")
    if agreement_share == 0 or n_items == 0:
        return 0
    return min(n_items, max(1, round(n_items * agreement_share)))


def rescore_every_for(*, serving_policy: str, rescore_every: int | None) -> int:
    """The re-scoring interval a round takes: ``None`` means the default
    (``DEFAULT_RESCORE_EVERY`` for most informative first, else 0); a value
    out of range, or one set for random order, is refused by name."""
    if rescore_every is None:
        return (
            DEFAULT_RESCORE_EVERY if serving_policy == ServingPolicy.UNCERTAINTY else 0
        )
    if (
        isinstance(rescore_every, bool)
        or not isinstance(rescore_every, int)
        or not 0 <= rescore_every <= MAX_RESCORE_EVERY
    ):
        raise DomainError(
            f"rescore_every must be a whole number from 0 to {MAX_RESCORE_EVERY}"
        )
    if rescore_every and serving_policy != ServingPolicy.UNCERTAINTY:
        raise DomainError(
            "rescore_every applies to most-informative-first serving only "
            "(serving_policy uncertainty); leave it 0 for random order"
        )
    return rescore_every


@dataclass(frozen=True)
class ServingDesign:
    """How a round serves its images; the default is a plain round's."""

    agreement_share: float = 0.0
    repeat_share: float = 0.0
    serving_policy: str = ServingPolicy.RANDOM
    reward_model_version: Any = None
    rescore_every: int | None = None

    def checked(self) -> ServingDesign:
        """Refuse a design a round cannot run with, naming the field; the
        design with its re-scoring interval settled (``rescore_every_for``)."""
        agreement_items_needed(n_items=1, agreement_share=self.agreement_share)
        if not 0 <= self.repeat_share <= MAX_REPEAT_SHARE:
            raise DomainError(
                f"repeat_share must be between 0 and {MAX_REPEAT_SHARE} "
                "(at most half of a physician's images come back)"
            )
        if self.serving_policy not in ServingPolicy.values:
            raise DomainError(
                f"serving_policy must be one of {', '.join(ServingPolicy.values)}"
            )
        if self.reward_model_version is not None and (
            getattr(self.reward_model_version, "kind", None) != "reward"
        ):
            raise DomainError("reward_model_version must be a reward model version")
        rescore_every = rescore_every_for(
            serving_policy=self.serving_policy, rescore_every=self.rescore_every
        )
        return dataclasses.replace(self, rescore_every=rescore_every)

    def as_fields(self) -> dict[str, Any]:
        """The design as ``Round``'s fields."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


# A plain round: no agreement set, no repeats, random order.
PLAIN = ServingDesign()
