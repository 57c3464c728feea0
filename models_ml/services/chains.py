"""A retraining run, and what runs after each of its jobs succeeds.

A run is a chain of jobs sharing ``params["chain"]["id"]``:

1. ``train_reward``: the reward model on every live rating so far;
2. ``finetune``: the new version, from the parent's images and the ratings,
   with the run's objective;
3. ``control`` (on by default), queued with the fine-tune: the
   compute-matched control, the same fine-tune with objective ``none`` (the
   same images, steps, schedule and real-image term, no feedback). A worker
   that runs two jobs at once (the embedded runtime's) trains the two side by
   side;
4. ``generate_round`` (optional), once both exist: the comparison round,
   which rates the new version, its parent, the control and optionally the
   parent best-of-N by the new reward model, blinded and interleaved on the
   same prompts and seeds. Its verdict (``gate.py``) decides whether the new version is
   promoted.

A re-scoring of a most-informative-first round (``round_rescore_maybe``)
uses the same mechanism: reward model, then ``score``.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from django.db import transaction

from annotations.design import ServingDesign
from annotations.errors import DomainError
from annotations.models import (
    Round,
    RoundStatus,
    ServingPolicy,
)
from annotations.services.rounds import controls_needed
from annotations.users import User

from ..models import (
    Comparison,
    GateStatus,
    Job,
    JobKind,
    ModelVersion,
    job_title,
)
from ..selectors import (
    control_pool,
    model_version_dataset,
    real_images_for_training,
)
from .finetune import (
    check_finetune_params,
    finetune_objective,
    finetune_pool_fix,
    finetune_recipe,
    finetune_start,
)
from .jobs import job_cancel
from .params import (
    DEFAULT_BEST_OF_N,
    FEEDBACK_OBJECTIVES,
    FINETUNE_KEYS,
    ROUND_KEYS,
    SAMPLING_KEYS,
    check_diffusion,
    check_keys,
    check_sampling,
    number_in_range,
    positive_int,
    prompt_list,
    seed_or_random,
)
from .reward import check_reward_params, reward_model_train_start
from .round_generation import MAX_BEST_OF_N, Arm, round_generate_start
from .round_scoring import round_score_start

STEP_REWARD = JobKind.TRAIN_REWARD.value
STEP_FINETUNE = JobKind.FINETUNE.value
STEP_CONTROL = "control"
STEP_ROUND = JobKind.GENERATE_ROUND.value
STEP_SCORE = JobKind.SCORE.value
DEFAULT_ALPHA = 0.05
# The control shares these with the new version's fine-tune (its recipe
# included: the same steps and learning-rate schedule); the rest (objective,
# filter, KTO and DPO settings, name) belong to the feedback.
CONTROL_SHARED_KEYS = FINETUNE_KEYS - {
    "name",
    "objective",
    "filter_threshold",
    "kto_beta",
    "kto_desirable_weight",
    "kto_undesirable_weight",
    "kto_middle",
    "kto_middle_weight",
    "kto_unrated_weight",
    "dpo_beta",
}


def chain_step_job(chain: dict[str, Any], step: str) -> Job | None:
    """The job of one step of a chain, if it was created."""
    return (
        Job.objects.filter(params__chain__id=chain["id"], params__chain__step=step)
        .order_by("id")
        .first()
    )


def chain_steps(chain: dict[str, Any]) -> list[str]:
    """The steps a chain takes, in order."""
    if chain.get("rescore_round_id"):
        return [STEP_REWARD, STEP_SCORE]
    steps = [STEP_REWARD, STEP_FINETUNE]
    if chain.get("control"):
        steps.append(STEP_CONTROL)
    if chain.get("round"):
        steps.append(STEP_ROUND)
    return steps


DEFAULT_PROMPT_COUNT = 8


def step_title(step: str, chain: dict[str, Any]) -> str:
    """What a step of a chain does, for the job page."""
    if step == STEP_CONTROL:
        return job_title(JobKind.FINETUNE, None, control=True)
    if step == STEP_FINETUNE:
        return job_title(JobKind.FINETUNE, chain.get("finetune"))
    if step == STEP_ROUND:
        return "Comparison round" if chain.get("round") else JobKind(step).label
    return JobKind(step).label


def default_round_prompts(
    version: ModelVersion, limit: int = DEFAULT_PROMPT_COUNT
) -> list[list[str]]:
    """The prompts of the last round of this version, else the dataset's texts."""
    for rnd in Round.objects.filter(model_version=version).order_by("-created_at"):
        if rnd.settings.get("prompts"):
            return [list(p) for p in rnd.settings["prompts"]]
    dataset = model_version_dataset(model_version=version)
    if dataset is None:
        raise DomainError(
            "give round prompts: this version has no dataset to draw them from"
        )
    pairs = (
        real_images_for_training(dataset_ids=[dataset.pk])
        .values_list("prompt", "modality")
        .distinct()[:limit]
    )
    return [[p, m] for p, m in pairs]


def chain_round_serving(spec: dict[str, Any]) -> ServingDesign:
    """The serving design of a retraining run's round, checked as any round's
    (its reward model is the run's, set when the round starts)."""
    for key in ("agreement_share", "repeat_share"):
        value = spec.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DomainError(f"round: {key} must be a number")
    design = ServingDesign(
        agreement_share=spec.get("agreement_share", 0.0),
        repeat_share=spec.get("repeat_share", 0.0),
        serving_policy=spec.get("serving_policy", ServingPolicy.RANDOM),
        rescore_every=spec.get("rescore_every"),
    )
    try:
        return design.checked()
    except DomainError as exc:
        raise DomainError(f"round: {exc}") from None


def _check_round_spec(
    round_params: dict[str, Any], diffusion_version: ModelVersion
) -> dict[str, Any]:
    check_keys(round_params, ROUND_KEYS, "round")
    check_sampling(round_params)
    prompts = round_params.get("prompts") or default_round_prompts(diffusion_version)
    round_params["prompts"] = prompt_list(prompts)
    round_params.setdefault("images_per_prompt", 4)
    positive_int(round_params["images_per_prompt"], "images_per_prompt")
    round_params["seed"] = seed_or_random(round_params.get("seed"))
    share = round_params.setdefault("control_share", 0.0)
    if isinstance(share, bool) or not isinstance(share, (int, float)):
        raise DomainError("round: control_share must be a number")
    controls_needed(n_images=1, control_share=float(share))
    # The parent best-of-N by the run's new reward model is rated beside the
    # new version unless asked not to (0): what filtering alone gives.
    best_of = round_params.setdefault("best_of_n", DEFAULT_BEST_OF_N)
    if best_of == 0:
        round_params.pop("best_of_n")
    else:
        positive_int(best_of, "round: best_of_n", maximum=MAX_BEST_OF_N)
        if best_of < 2:
            raise DomainError("round: best_of_n must be 0 (none) or at least 2")
    number_in_range(round_params, "alpha", 0, 0.5, low_open=True)
    chain_round_serving(round_params)
    return round_params


@transaction.atomic
def retraining_round_start(
    *,
    created_by: User | None,
    diffusion_version: ModelVersion,
    params: dict[str, Any],
    open_next_round: bool,
    train_control: bool = True,
) -> Job:
    """Start a retraining run (see the module docstring); returns its first job.

    ``params`` holds ``reward``, ``finetune`` and ``round`` mappings. The
    fine-tune's ``objective`` is one of ``FEEDBACK_OBJECTIVES``. The round
    may set ``images_per_prompt`` (per arm), ``best_of_n`` (add the parent
    filtered best-of-N by the new reward model), ``alpha`` (the gate's
    level, 0.05), the serving design of any round (``agreement_share``,
    ``repeat_share``, ``serving_policy``, ``rescore_every``; uncertainty
    serving takes the reward model this run trains) and sampling settings.
    """
    check_diffusion(diffusion_version, "diffusion_version")
    if diffusion_version.is_control:
        raise DomainError(
            f"{diffusion_version.name} is a control; fine-tune its parent instead"
        )
    check_keys(params, frozenset({"reward", "finetune", "round"}), "retraining")
    reward = dict(params.get("reward") or {})
    finetune = dict(params.get("finetune") or {})
    check_reward_params(reward)
    check_finetune_params(finetune)
    objective = finetune_objective(finetune)
    if objective not in FEEDBACK_OBJECTIVES:
        raise DomainError(
            f"objective {objective!r}: a retraining run's new version learns "
            f"from the ratings ({', '.join(FEEDBACK_OBJECTIVES)}); the "
            "no-feedback control is trained beside it with train_control"
        )
    finetune = finetune_recipe(finetune)
    round_params = None
    if open_next_round:
        round_params = _check_round_spec(
            dict(params.get("round") or {}), diffusion_version
        )
    chain = {
        "id": uuid.uuid4().hex,
        "step": STEP_REWARD,
        "diffusion_version_id": diffusion_version.pk,
        "finetune": finetune,
        "control": bool(train_control),
        "round": round_params,
    }
    return reward_model_train_start(
        created_by=created_by, rounds=None, params=reward, chain=chain
    )


def chain_next_after_reward(*, job: Job, reward_version: ModelVersion) -> Job | None:
    """Queue the fine-tune step of a retraining run (and its control beside
    it), or the scoring of the round a re-scoring run is for (once, however
    often asked)."""
    chain = job.params.get("chain")
    if not chain:
        return None
    if chain.get("rescore_round_id"):
        return _rescore_score_step(job=job, chain=chain, reward_version=reward_version)
    existing = chain_step_job(chain, STEP_FINETUNE)
    if existing is not None:
        return existing
    diffusion_version = ModelVersion.objects.get(pk=chain["diffusion_version_id"])
    return _training_steps_start(
        job=job, chain=chain, parent=diffusion_version, reward_version=reward_version
    )


@transaction.atomic
def _training_steps_start(
    *,
    job: Job,
    chain: dict[str, Any],
    parent: ModelVersion,
    reward_version: ModelVersion,
) -> Job:
    """Queue the new version's fine-tune and, with ``chain["control"]``, its
    control: both at once, so that a worker running two jobs trains them side
    by side (one running one job takes them in turn). The images both look at
    are fixed here, before either starts. Returns the fine-tune."""
    finetune = finetune_start(
        diffusion_version=parent,
        reward_version=reward_version,
        created_by=job.created_by,
        params=chain["finetune"],
        chain={**chain, "step": STEP_FINETUNE},
    )
    finetune_pool_fix(job=finetune, parent=parent, params=chain["finetune"])
    if chain.get("control"):
        shared = {
            k: v for k, v in chain["finetune"].items() if k in CONTROL_SHARED_KEYS
        }
        finetune_start(
            diffusion_version=parent,
            reward_version=None,
            created_by=job.created_by,
            params={**shared, "objective": "none"},
            chain={**chain, "step": STEP_CONTROL},
            control=True,
            # The same images: those the new version's fine-tune looks at.
            pool_from_job=finetune,
        )
    return finetune


def _chain_version(chain: dict[str, Any], step: str) -> ModelVersion | None:
    job = chain_step_job(chain, step)
    if job is None:
        return None
    return ModelVersion.objects.filter(job=job).first()


def chain_next_after_finetune(*, job: Job, new_version: ModelVersion) -> Job | None:
    """Queue the comparison round once the new version and its control (when
    the run trains one) both exist: whichever of the two finishes second
    opens it."""
    chain = job.params.get("chain")
    if not chain or not chain.get("round"):
        return None
    if chain.get("step") not in (STEP_FINETUNE, STEP_CONTROL):
        return None
    with transaction.atomic():
        # The two may finish at once. Both lock the run's first job (SQLite's
        # IMMEDIATE transactions take the write lock anyway), so one of them
        # goes on at a time and the second sees what the first did.
        first = chain_step_job(chain, STEP_REWARD)
        if first is not None:
            Job.objects.select_for_update().filter(pk=first.pk).first()
        existing = chain_step_job(chain, STEP_ROUND)
        if existing is not None:
            return existing
        # This job's version, and the other's from its job.
        mine = {chain["step"]: new_version}
        candidate = mine.get(STEP_FINETUNE) or _chain_version(chain, STEP_FINETUNE)
        control = None
        if chain.get("control"):
            control = mine.get(STEP_CONTROL) or _chain_version(chain, STEP_CONTROL)
        if candidate is None or (chain.get("control") and control is None):
            return None  # the other one is still training
        reward_id = job.params.get("reward_version_id")
        reward = (
            ModelVersion.objects.filter(pk=reward_id).first()
            if reward_id
            else _chain_version(chain, STEP_REWARD)
        )
        return comparison_round_start(
            chain=chain,
            candidate=candidate,
            control=control,
            reward_version=reward,
            created_by=job.created_by,
        )


def chain_after_stop(*, job: Job) -> Job | None:
    """A run's fine-tune that failed for good or was cancelled takes its
    control with it: the control is there only to be compared with it.
    (A control that stops leaves the new version to finish: it is a version
    of its own, though without a comparison round.)"""
    chain = job.params.get("chain") or {}
    if chain.get("step") != STEP_FINETUNE or not chain.get("control"):
        return None
    control = chain_step_job(chain, STEP_CONTROL)
    if control is None or control.is_finished:
        return None
    return job_cancel(
        job=control,
        actor=None,
        reason=f"stopped with the new version's fine-tune (job #{job.pk}), "
        f"which {job.status}",
    )


@transaction.atomic
def comparison_round_start(
    *,
    chain: dict[str, Any],
    candidate: ModelVersion,
    control: ModelVersion | None,
    reward_version: ModelVersion | None,
    created_by: User | None,
) -> Job:
    """Queue the comparison round of a retraining run and record its
    ``Comparison``; the new version waits for its verdict (``pending``)."""
    spec = dict(chain["round"])
    parent = candidate.parent
    if parent is None:
        raise DomainError(f"{candidate.name} has no parent to be compared with")
    prompts = [tuple(p) for p in spec["prompts"]]
    pool = control_pool(model_version=candidate, modalities=[m for _, m in prompts])
    serving = chain_round_serving(spec)
    arms = [Arm("candidate", candidate), Arm("parent", parent)]
    if control is not None:
        arms.append(Arm("control", control))
    best_of = spec.get("best_of_n")
    if best_of:
        if reward_version is None:
            raise DomainError("best_of_n needs the run's reward model")
        arms.append(Arm("best_of_n", parent, best_of, reward_version))
    if serving.serving_policy == ServingPolicy.UNCERTAINTY:
        serving = dataclasses.replace(serving, reward_model_version=reward_version)
    job = round_generate_start(
        model_version=candidate,
        compare_model_version=parent,
        arms=arms,
        prompts=prompts,
        images_per_prompt=spec["images_per_prompt"],
        created_by=created_by,
        name=spec.get("name") or f"{candidate.name} vs {parent.name}",
        raters_per_image=spec.get("raters_per_image", 1),
        control_share=float(spec.get("control_share", 0.0)),
        control_pool=pool,
        open_when_done=True,
        seed=spec["seed"],
        sampling={k: v for k, v in spec.items() if k in SAMPLING_KEYS},
        chain={**chain, "step": STEP_ROUND},
        serving=serving,
    )
    Comparison.objects.create(
        round_id=job.params["round_id"],
        candidate=candidate,
        parent=parent,
        control=control,
        best_of_n=best_of or None,
        reward_version=reward_version if best_of else None,
        alpha=float(spec.get("alpha", DEFAULT_ALPHA)),
    )
    ModelVersion.objects.filter(pk=candidate.pk).update(gate=GateStatus.PENDING)
    return job


def _rescore_score_step(
    *, job: Job, chain: dict[str, Any], reward_version: ModelVersion
) -> Job | None:
    existing = chain_step_job(chain, STEP_SCORE)
    if existing is not None:
        return existing
    rnd = Round.objects.filter(pk=chain["rescore_round_id"]).first()
    if rnd is None or rnd.status != RoundStatus.RATING:
        return None  # closed meanwhile: nothing left to serve
    return round_score_start(
        round=rnd,
        created_by=job.created_by,
        reward_model_version=reward_version,
        chain={**chain, "step": STEP_SCORE},
    )
