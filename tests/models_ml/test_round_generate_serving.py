"""Rounds that generate take the serving design of any round: agreement set,
repeats and uncertainty serving, whose scoring starts once the images are in."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image as PILImage

from annotations.api.serving import SERVING_FIELDS
from annotations.design import ServingDesign
from annotations.errors import DomainError
from annotations.models import (
    AuditEvent,
    Image,
    ImageSource,
    Round,
    RoundStatus,
    ServingPolicy,
)
from annotations.rating.serving import assignment_next
from models_ml import tasks
from models_ml.models import Job, JobKind, JobStatus, ModelKind, ModelVersion
from models_ml.services.chains import chain_next_after_finetune, retraining_round_start
from models_ml.services.round_generation import (
    round_generate_start,
    round_generated_finish,
)
from models_ml.services.rounds import round_abandon
from tests.factories import DatasetFactory, ImageFactory
from tests.models_ml import test_ml_jobs

pytestmark = pytest.mark.django_db
sent = test_ml_jobs.sent
run = test_ml_jobs.run

PROMPTS = [("CT: case 1", "ct"), ("CT: case 2", "ct")]


@pytest.fixture
def diffusion() -> ModelVersion:
    dataset = DatasetFactory(name="chest")
    ImageFactory.create_batch(4, dataset=dataset, modality="ct")
    return ModelVersion.objects.create(
        name="v1", kind=ModelKind.DIFFUSION, path="/v1", dataset=dataset
    )


@pytest.fixture
def reward() -> ModelVersion:
    return ModelVersion.objects.create(name="rm", kind=ModelKind.REWARD, path="/rm")


def _start(version: ModelVersion, user: Any, **kw: Any) -> Job:
    design = {k: kw.pop(k) for k in SERVING_FIELDS if k in kw}
    return round_generate_start(
        model_version=version,
        prompts=PROMPTS,
        images_per_prompt=kw.pop("images_per_prompt", 5),
        created_by=user,
        name="generated",
        seed=3,
        serving=ServingDesign(**design),
        **kw,
    )


def _generated(rnd: Round, n: int) -> list[Image]:
    return ImageFactory.create_batch(
        n,
        source=ImageSource.GENERATED,
        generated_for_round=rnd,
        model_version=rnd.model_version,
        modality="ct",
    )


def _finish(rnd: Round, images: list[Image], actor: Any, *, open_now: bool) -> Round:
    return round_generated_finish(
        round=rnd, images=images, control_pool=[], actor=actor, open_now=open_now
    )


def test_a_generated_round_keeps_its_serving_design_and_fills_its_agreement_set(
    diffusion, reward, admin_user
):
    job = _start(
        diffusion,
        admin_user,
        agreement_share=0.2,
        repeat_share=0.1,
        serving_policy=ServingPolicy.UNCERTAINTY,
        reward_model_version=reward,
    )
    rnd = Round.objects.get(pk=job.params["round_id"])
    assert (rnd.agreement_share, rnd.repeat_share) == (0.2, 0.1)
    assert rnd.serving_policy == ServingPolicy.UNCERTAINTY
    assert rnd.reward_model_version == reward
    assert not rnd.items.exists()

    rnd = _finish(rnd, _generated(rnd, 10), admin_user, open_now=True)
    assert rnd.status == RoundStatus.RATING
    assert rnd.items.filter(in_agreement_set=True).count() == 2
    fill = AuditEvent.objects.get(action="round_generated_fill")
    assert fill.detail["agreement_items"] == 2


@pytest.mark.parametrize(
    ("serving", "message"),
    [
        ({"agreement_share": 1.5}, "agreement_share must be between 0 and 1"),
        ({"repeat_share": 0.6}, "repeat_share must be between 0 and 0.5"),
        ({"serving_policy": "loudest"}, "serving_policy must be one of"),
    ],
)
def test_round_generate_start_refuses_serving_settings_as_round_create_does(
    diffusion, admin_user, serving, message
):
    with pytest.raises(DomainError, match=message):
        _start(diffusion, admin_user, **serving)
    assert not Round.objects.exists() and not Job.objects.exists()


def test_a_diffusion_model_is_refused_as_a_generated_rounds_reward_model(
    diffusion, admin_user
):
    with pytest.raises(DomainError, match="must be a reward model version"):
        _start(diffusion, admin_user, reward_model_version=diffusion)


def test_an_uncertainty_round_queues_its_scoring_once_filled_and_only_once(
    diffusion, reward, admin_user, physician, sent, django_capture_on_commit_callbacks
):
    job = _start(
        diffusion,
        admin_user,
        serving_policy=ServingPolicy.UNCERTAINTY,
        reward_model_version=reward,
    )
    rnd = Round.objects.get(pk=job.params["round_id"])
    images = _generated(rnd, 4)
    assert not Job.objects.filter(kind=JobKind.SCORE).exists()
    with django_capture_on_commit_callbacks(execute=True):
        rnd = _finish(rnd, images, admin_user, open_now=True)
    score = Job.objects.get(kind=JobKind.SCORE)
    assert score.params == {"round_id": rnd.pk, "reward_version_id": reward.pk}
    assert rnd.settings["score_job_id"] == score.pk
    assert sent == [("models_ml.tasks.ml_score_round", "ml")]
    # Open before its scores arrive: unscored items are still served.
    assert assignment_next(round=rnd, rater=physician) is not None
    # A job retried after the fill committed finds nothing left to do.
    again = _finish(rnd, images, admin_user, open_now=True)
    assert again.settings["score_job_id"] == score.pk
    assert Job.objects.filter(kind=JobKind.SCORE).count() == 1


def test_a_random_round_without_reward_model_queues_no_scoring(diffusion, admin_user):
    rnd = Round.objects.get(pk=_start(diffusion, admin_user).params["round_id"])
    _finish(rnd, _generated(rnd, 2), admin_user, open_now=False)
    assert not Job.objects.filter(kind=JobKind.SCORE).exists()


def test_a_round_abandoned_before_its_images_arrive_is_not_scored(
    diffusion, reward, admin_user
):
    job = _start(
        diffusion,
        admin_user,
        serving_policy=ServingPolicy.UNCERTAINTY,
        reward_model_version=reward,
    )
    rnd = Round.objects.get(pk=job.params["round_id"])
    round_abandon(round=rnd, reason="wrong prompts", actor=admin_user)
    after = _finish(rnd, _generated(rnd, 2), admin_user, open_now=True)
    assert after.status == RoundStatus.CLOSED
    assert not Job.objects.filter(kind=JobKind.SCORE).exists()


class _Backend:
    """Draws flat grey pictures: the job's bookkeeping without an engine."""

    def generate(self, requests: list[Any], **_: Any) -> list[Any]:
        return [
            SimpleNamespace(
                image=PILImage.new("RGB", (8, 8), (r.seed % 256,) * 3),
                prompt=r.prompt,
                modality=r.modality,
                seed=r.seed,
                steps=2,
                guidance=1.0,
                scheduler="ddim",
                model_version="fake-1",
            )
            for r in requests
        ]


def test_the_generation_job_opens_an_uncertainty_round_and_queues_its_scoring(
    diffusion, reward, admin_user, monkeypatch
):
    from models_ml import engine

    monkeypatch.setattr(engine, "load_backend", lambda *a, **k: _Backend())
    job = _start(
        diffusion,
        admin_user,
        images_per_prompt=2,
        agreement_share=0.5,
        serving_policy=ServingPolicy.UNCERTAINTY,
        reward_model_version=reward,
        sampling={"device": "cpu"},
        enqueue=False,
    )
    job = run(tasks.ml_generate_round, job)
    assert job.status == JobStatus.SUCCEEDED, job.error
    rnd = Round.objects.get(pk=job.result["round_id"])
    assert rnd.status == RoundStatus.RATING and rnd.items.count() == 4
    assert rnd.items.filter(in_agreement_set=True).count() == 2
    score = Job.objects.get(kind=JobKind.SCORE)
    assert job.result["score_job_id"] == score.pk == rnd.settings["score_job_id"]
    assert score.params["reward_version_id"] == reward.pk


# --- the retraining chain's round ----------------------------------------------


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"repeat_share": 0.9}, "repeat_share must be between"),
        ({"control_share": "a third"}, "control_share must be a number"),
        ({"control_share": None}, "control_share must be a number"),
        ({"control_share": True}, "control_share must be a number"),
        ({"control_share": 1.0}, "control_share must be at least 0 and below 1"),
        ({"rescore_every": 6}, "round: rescore_every applies to most-informative"),
        (
            {"serving_policy": "uncertainty", "rescore_every": "6"},
            "round: rescore_every must be a whole number",
        ),
    ],
)
def test_retraining_refuses_a_bad_setting_for_its_round_before_any_job(
    diffusion, admin_user, setting, message
):
    with pytest.raises(DomainError, match=message):
        retraining_round_start(
            created_by=admin_user,
            diffusion_version=diffusion,
            params={"round": {"prompts": PROMPTS, **setting}},
            open_next_round=True,
        )
    assert not Job.objects.exists()


def test_the_chains_uncertainty_round_is_scored_by_the_reward_model_it_trained(
    diffusion, reward, admin_user
):
    new = ModelVersion.objects.create(
        name="v2", kind=ModelKind.DIFFUSION, path="/v2", parent=diffusion
    )
    spec = {
        "prompts": [list(p) for p in PROMPTS],
        "images_per_prompt": 2,
        "seed": 1,
        "agreement_share": 0.25,
        "repeat_share": 0.1,
        "serving_policy": "uncertainty",
        "rescore_every": 6,
    }
    finetune = Job.objects.create(
        kind=JobKind.FINETUNE,
        created_by=admin_user,
        params={
            "reward_version_id": reward.pk,
            "chain": {"id": "run1", "step": "finetune", "round": spec},
        },
    )
    job = chain_next_after_finetune(job=finetune, new_version=new)
    rnd = Round.objects.get(pk=job.params["round_id"])
    assert (rnd.agreement_share, rnd.repeat_share) == (0.25, 0.1)
    assert rnd.serving_policy == ServingPolicy.UNCERTAINTY
    assert rnd.rescore_every == 6
    assert rnd.reward_model_version == reward
