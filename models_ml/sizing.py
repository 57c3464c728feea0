"""How big a comparison round must be for the promotion gate to decide.

The gate passes a new version when it beats its parent (and its control)
in the paired test of ``gate.py``. How often it does, for a given true gain,
depends on the number of seeds (prompts x images per prompt and arm), the
parent's share rated 3, and how alike two arms' images of one seed are rated
(their outcomes' correlation). ``engine.stats.gate_power`` simulates it; this
module picks the round size the retraining form proposes. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from annotations.models import Rating

from .engine import images_per_prompt_for_power
from .models import ModelVersion

# Power the proposal aims for, and the sizes it picks from.
TARGET_POWER = 0.8
SIZES = (2, 4, 6, 8, 12, 16, 24, 32, 48, 64)
# The size the sentence compares with: the "with 8 per prompt".
REFERENCE_SIZE = 8
DEFAULT_EXPECTED_GAIN = 0.10
# Correlation (phi) of "rated 3" between a fine-tune and its parent on the
# same seed, as measured in the simulated-physician experiment
# (docs/retraining.md, "Which objective"); used until the product has measured
# its own in a comparison round.
PAIRING_CORRELATION = 0.5
# The parent's share rated 3 when it has no ratings yet.
UNKNOWN_SHARE = 0.5


@dataclass(frozen=True)
class SizeProposal:
    prompts: int
    p_base: float
    p_base_known: bool
    gain: float
    against: int
    powers: tuple[tuple[int, float], ...]
    images_per_prompt: int

    @property
    def power(self) -> float:
        return dict(self.powers)[self.images_per_prompt]

    @property
    def reaches_target(self) -> bool:
        return self.power >= TARGET_POWER

    def sentence(self) -> str:
        """What the proposal means, in the words the form shows."""
        rivals = "its parent and the control" if self.against > 1 else "its parent"
        points = round(self.gain * 100)
        text = (
            f"With {self.images_per_prompt} per prompt and arm "
            f"({self.prompts * self.images_per_prompt} seeds), a {points}-point "
            f"gain over {rivals} is detected {self.power:.0%} of the time"
        )
        powers = dict(self.powers)
        if REFERENCE_SIZE in powers and REFERENCE_SIZE != self.images_per_prompt:
            text += f" (with {REFERENCE_SIZE}: {powers[REFERENCE_SIZE]:.0%})"
        base = (
            f"the parent's {self.p_base:.0%} rated 3 so far"
            if self.p_base_known
            else f"{self.p_base:.0%} rated 3 assumed (the parent has no ratings yet)"
        )
        text += f"; from {base}."
        if not self.reaches_target:
            text += (
                f" No size up to {SIZES[-1]} reaches {TARGET_POWER:.0%}: expect "
                "a larger gain, or accept a weaker test."
            )
        return text


def parent_share_rated_3(version: ModelVersion) -> float | None:
    """The share of live first ratings of this version's images that are 3."""
    ratings = Rating.objects.filter(
        image__model_version=version, retracted_at=None, is_repeat=False
    )
    total = ratings.count()
    if total == 0:
        return None
    return float(Fraction(ratings.filter(score=3).count(), total))


def comparison_size_proposal(
    *,
    version: ModelVersion,
    prompts: int,
    gain: float = DEFAULT_EXPECTED_GAIN,
    with_control: bool = True,
) -> SizeProposal:
    """The smallest images per prompt and arm whose gate power reaches
    ``TARGET_POWER`` for ``gain`` (the largest size when none does)."""
    share = parent_share_rated_3(version)
    p_base = UNKNOWN_SHARE if share is None else share
    against = 2 if with_control else 1
    rows = images_per_prompt_for_power(
        prompts=max(1, prompts),
        p_base=p_base,
        gain=gain,
        target=TARGET_POWER,
        correlation=PAIRING_CORRELATION,
        against=against,
        candidates=SIZES,
    )
    return SizeProposal(
        prompts=max(1, prompts),
        p_base=p_base,
        p_base_known=share is not None,
        gain=gain,
        against=against,
        powers=tuple(rows),
        images_per_prompt=rows[-1][0],
    )
