"""The promotion gate: did the new version beat its parent and its control?

A comparison round rates every arm on the same prompts and seeds, blinded.
For each arm the verdict gives the share of its ratings that are 3 with a
95 % Wilson interval; the new version, the control and the best-of-N arm
are each tested against the parent, and the new version against the
control, with the exact paired sign-flip test of ``engine.stats`` over the
seeds both arms' images were rated on (one rating per image: McNemar's
exact test). The new version is **promoted** when it beats the parent and,
where the round has one, the control, each at the comparison's ``alpha``.

The verdict is provisional while the round is open and recorded, with the
new version's gate status, when the round closes (``comparison_decide``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

from django.db import transaction
from django.utils import timezone

from annotations.models import Image, Rating

from .engine import PairedTest, paired_sign_flip_test, wilson_interval
from .models import Comparison, GateStatus, ModelVersion

ARM_ORDER = ("candidate", "parent", "control", "best_of_n")
ARM_LABELS = {
    "candidate": "New version",
    "parent": "Parent",
    "control": "Control (same fine-tune, no feedback)",
    "best_of_n": "Parent, best of N by reward",
}


@dataclass
class ArmResult:
    arm: str
    label: str
    model_version_id: int
    model_version: str
    images: int
    rated_images: int
    ratings: int
    rated_3: int
    share_3: float | None
    wilson95: tuple[float, float]
    vs_parent: dict[str, Any] | None = None
    vs_control: dict[str, Any] | None = None


@dataclass
class Verdict:
    comparison_id: int
    round_id: int
    alpha: float
    arms: list[ArmResult] = field(default_factory=list)
    # None until both tests have data (a seed rated in both arms).
    promoted: bool | None = None
    reason: str = ""
    decided: bool = False
    decided_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _test_dict(test: PairedTest, alpha: float) -> dict[str, Any]:
    return {
        "pairs": test.n_pairs,
        "better": test.better,
        "worse": test.worse,
        "difference": test.mean_difference,
        "points": round(test.mean_difference * 100, 1),
        "p_value": test.p_value,
        "significant": test.beats(alpha),
    }


def _arm_images(comparison: Comparison) -> dict[int, tuple[str, tuple[str, int]]]:
    """Each generated image of the round: its arm and (prompt, request seed)."""
    images = Image.objects.filter(generated_for_round=comparison.round_id).values_list(
        "pk", "prompt", "generation"
    )
    out = {}
    for pk, prompt, generation in images:
        generation = generation or {}
        arm = generation.get("arm")
        seed = generation.get("request_seed", generation.get("seed"))
        if arm and seed is not None:
            out[pk] = (arm, (prompt, int(seed)))
    return out


def _outcomes(
    comparison: Comparison, arm_of: dict[int, tuple[str, tuple[str, int]]]
) -> tuple[dict[str, dict[tuple[str, int], Fraction]], dict[str, list[int]]]:
    """Per arm, per (prompt, seed), the share of the image's live first
    ratings that are 3 (images nobody rated are left out); and per arm the
    count of ratings that are 3 and of all ratings."""
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    rows = Rating.objects.filter(
        round_id=comparison.round_id,
        image_id__in=list(arm_of),
        retracted_at=None,
        is_repeat=False,
    ).values_list("image_id", "score")
    for image_id, score in rows:
        counts[image_id][0] += score == 3
        counts[image_id][1] += 1
    shares: dict[str, dict[tuple[str, int], Fraction]] = defaultdict(dict)
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for image_id, (threes, n) in counts.items():
        arm, key = arm_of[image_id]
        shares[arm][key] = Fraction(threes, n)
        totals[arm][0] += threes
        totals[arm][1] += n
    return shares, totals


def _paired(
    x: dict[tuple[str, int], Fraction], y: dict[tuple[str, int], Fraction]
) -> PairedTest:
    shared = sorted(set(x) & set(y))
    return paired_sign_flip_test([x[k] - y[k] for k in shared])


def comparison_verdict(comparison: Comparison) -> Verdict:
    """The verdict from the ratings so far (see the module docstring)."""
    if comparison.decided_at is not None and comparison.verdict:
        return verdict_from_dict(comparison.verdict)
    arm_of = _arm_images(comparison)
    outcomes, totals = _outcomes(comparison, arm_of)
    images_per_arm: dict[str, int] = defaultdict(int)
    for arm, _ in arm_of.values():
        images_per_arm[arm] += 1
    versions = {
        "candidate": comparison.candidate,
        "parent": comparison.parent,
        "control": comparison.control,
        "best_of_n": comparison.parent if comparison.best_of_n else None,
    }
    verdict = Verdict(
        comparison_id=comparison.pk,
        round_id=comparison.round_id,
        alpha=comparison.alpha,
    )
    alpha = comparison.alpha
    for arm in ARM_ORDER:
        version = versions[arm]
        if version is None:
            continue
        threes, n = totals[arm]
        label = ARM_LABELS[arm]
        if arm == "best_of_n":
            label = f"Parent, best of {comparison.best_of_n} by reward"
        result = ArmResult(
            arm=arm,
            label=label,
            model_version_id=version.pk,
            model_version=version.name,
            images=images_per_arm[arm],
            rated_images=len(outcomes.get(arm, {})),
            ratings=n,
            rated_3=threes,
            share_3=threes / n if n else None,
            wilson95=wilson_interval(threes, n),
        )
        if arm != "parent":
            result.vs_parent = _test_dict(
                _paired(outcomes.get(arm, {}), outcomes.get("parent", {})), alpha
            )
        if arm in ("candidate", "best_of_n") and versions["control"] is not None:
            result.vs_control = _test_dict(
                _paired(outcomes.get(arm, {}), outcomes.get("control", {})), alpha
            )
        verdict.arms.append(result)
    verdict.promoted, verdict.reason = _decision(verdict, alpha)
    return verdict


def _decision(verdict: Verdict, alpha: float) -> tuple[bool | None, str]:
    candidate = next((a for a in verdict.arms if a.arm == "candidate"), None)
    if candidate is None or candidate.vs_parent is None:
        return None, "no new version in this round"
    tests = [("parent", candidate.vs_parent)]
    if candidate.vs_control is not None:
        tests.append(("control", candidate.vs_control))
    if any(t["pairs"] == 0 for _, t in tests):
        return None, "not enough ratings yet: no seed is rated in both arms"
    missed = [name for name, t in tests if not t["significant"]]
    if not missed:
        against = " and ".join(name for name, _ in tests)
        return True, f"beat the {against} at the {alpha:g} level"
    details = "; ".join(
        f"vs {name}: {t['difference'] * 100:+.1f} points, p = {t['p_value']:.3g}"
        for name, t in tests
        if name in missed
    )
    return False, f"did not beat the {' and '.join(missed)} ({details})"


def verdict_from_dict(data: dict[str, Any]) -> Verdict:
    arms = [ArmResult(**{**a, "wilson95": tuple(a["wilson95"])}) for a in data["arms"]]
    return Verdict(**{**data, "arms": arms})


@transaction.atomic
def comparison_decide(*, comparison: Comparison) -> Verdict:
    """Record the verdict and the new version's gate status; once."""
    locked = Comparison.objects.select_for_update().get(pk=comparison.pk)
    if locked.decided_at is not None:
        return verdict_from_dict(locked.verdict)
    verdict = comparison_verdict(locked)
    now = timezone.now()
    verdict.decided = True
    verdict.decided_at = now.isoformat()
    locked.verdict = verdict.as_dict()
    locked.decided_at = now
    locked.save(update_fields=["verdict", "decided_at"])
    gate = GateStatus.PROMOTED if verdict.promoted else GateStatus.FAILED
    ModelVersion.objects.filter(pk=locked.candidate_id).update(gate=gate)
    from annotations.audit import audit_record

    audit_record(
        action="comparison_decide",
        actor=None,
        obj=locked.candidate,
        detail={
            "comparison": locked.pk,
            "round": locked.round_id,
            "promoted": bool(verdict.promoted),
            "reason": verdict.reason,
        },
    )
    return verdict


@dataclass
class ArmRow:
    """One prompt of a comparison round: each arm's images on the same seeds."""

    prompt: str
    modality: str
    seeds: list[int]
    arms: list[tuple[str, list[Any]]]


def comparison_grid(comparison: Comparison, *, per_prompt: int = 4) -> list[ArmRow]:
    """The comparison round's images side by side: per prompt, the first
    ``per_prompt`` seeds every arm has, one column of images per arm (in the
    verdict's order). Admins see it next to the verdict."""
    by_arm: dict[str, dict[tuple[str, int], Image]] = defaultdict(dict)
    images = Image.objects.filter(generated_for_round=comparison.round_id).only(
        "uid", "prompt", "modality", "generation"
    )
    modality_of: dict[str, str] = {}
    for image in images:
        generation = image.generation or {}
        arm = generation.get("arm")
        seed = generation.get("request_seed", generation.get("seed"))
        if arm in ARM_LABELS and seed is not None:
            by_arm[arm][(image.prompt, int(seed))] = image
            modality_of[image.prompt] = image.modality
    arms = [arm for arm in ARM_ORDER if by_arm.get(arm)]
    rows = []
    for prompt in sorted(modality_of):
        common = sorted(
            set.intersection(
                *({s for p, s in by_arm[arm] if p == prompt} for arm in arms)
            )
        )[:per_prompt]
        if not common:
            continue
        rows.append(
            ArmRow(
                prompt=prompt,
                modality=modality_of[prompt],
                seeds=common,
                arms=[
                    (
                        f"Parent, best of {comparison.best_of_n}"
                        if arm == "best_of_n"
                        else ARM_LABELS[arm],
                        [by_arm[arm][(prompt, seed)] for seed in common],
                    )
                    for arm in arms
                ],
            )
        )
    return rows
