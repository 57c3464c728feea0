"""Scoring a round's images with a reward model, through the real task function."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

from annotations.errors import DomainError
from annotations.models import AssignmentPolicy, ServingPolicy
from annotations.rating.serving import assignment_next
from models_ml import tasks
from models_ml.models import (
    ImageScore,
    Job,
    JobKind,
    JobStatus,
    ModelKind,
    ModelVersion,
)
from models_ml.services.base_training import model_version_register
from models_ml.services.round_scoring import round_score_start

pytestmark = pytest.mark.django_db

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """Celery messages sent after commit: (task name, queue)."""
    from medrlhf.celery import app

    calls: list[tuple[str, str]] = []

    class Result:
        id = "celery-id"

    def send_task(name: str, args: Any = None, queue: str = "", **kw: Any) -> Any:
        calls.append((name, queue))
        return Result()

    monkeypatch.setattr(app, "send_task", send_task)
    yield calls


@pytest.fixture
def tiny_reward(admin_user: Any, tmp_path: Path) -> Any:
    """A reward model of three ensemble members fitted on eight images."""
    import torch

    from models_ml.engine.features import HandcraftedFeatures
    from models_ml.engine.reward import train_reward_model
    from models_ml.engine.reward_data import RatingRecord
    from models_ml.engine.reward_head import RewardConfig

    torch.set_num_threads(1)
    records = []
    for i in range(8):
        path = tmp_path / f"r{i}.png"
        PILImage.new("L", (16, 16), color=30 * i).save(path)
        records.append(RatingRecord(str(path), f"CT: case {i % 2}", "ct", 1 + i % 3))
    result = train_reward_model(
        records,
        config=RewardConfig(ensemble_size=3, epochs=5, n_folds=2),
        feature_extractor=HandcraftedFeatures(),
    )
    folder = result.model.save(tmp_path / "reward")
    return model_version_register(
        name="tiny reward", kind=ModelKind.REWARD, path=folder, created_by=admin_user
    )


def _run(job: Job) -> Job:
    tasks.ml_score_round(job.pk)
    job.refresh_from_db()
    return job


def test_scoring_job_stores_a_score_per_image_and_sets_each_items_uncertainty(
    make_round,
    admin_user,
    physician,
    tiny_reward,
    sent,
    django_capture_on_commit_callbacks,
):
    rnd = make_round(6, serving_policy=ServingPolicy.UNCERTAINTY)
    with django_capture_on_commit_callbacks(execute=True):
        job = round_score_start(
            round=rnd, created_by=admin_user, reward_model_version=tiny_reward
        )
    assert job.kind == JobKind.SCORE
    assert sent == [("models_ml.tasks.ml_score_round", "ml")]
    rnd.refresh_from_db()
    assert rnd.reward_model_version == tiny_reward
    assert rnd.settings["score_job_id"] == job.pk

    job = _run(job)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert (job.result["scored"], job.result["reused"]) == (6, 0)
    scores = {
        s.image_id: s for s in ImageScore.objects.filter(model_version=tiny_reward)
    }
    assert len(scores) == 6
    for item in rnd.items.all():
        score = scores[item.image_id]
        assert item.uncertainty == pytest.approx(score.spread)
        assert 0 <= score.reward <= 1
        assert score.expected_score == pytest.approx(1 + 2 * score.reward)
        assert sum(score.probs) == pytest.approx(1.0, abs=1e-6)
    assert any(s.spread > 0 for s in scores.values())

    # The most uncertain image is the first a physician gets.
    top = max(rnd.items.all(), key=lambda it: (it.uncertainty, -it.shuffle_key))
    served = assignment_next(round=rnd, rater=physician)
    assert served.round_image_id == top.pk
    assert served.policy == AssignmentPolicy.UNCERTAINTY


def test_scoring_again_reuses_the_stored_scores_and_writes_no_second_row(
    make_round, admin_user, tiny_reward
):
    rnd = make_round(3, reward_model_version=tiny_reward)
    first = _run(round_score_start(round=rnd, created_by=admin_user))
    assert first.status == JobStatus.SUCCEEDED, first.error
    rnd.items.update(uncertainty=None)
    again = _run(round_score_start(round=rnd, created_by=admin_user))
    assert again.status == JobStatus.SUCCEEDED, again.error
    assert (again.result["scored"], again.result["reused"]) == (0, 3)
    assert ImageScore.objects.count() == 3
    assert not rnd.items.filter(uncertainty=None).exists()


def test_scoring_a_round_without_a_reward_model_is_refused_naming_the_field(
    make_round, admin_user
):
    with pytest.raises(DomainError, match="reward_model_version"):
        round_score_start(round=make_round(2), created_by=admin_user)
    assert not Job.objects.exists()


def test_a_diffusion_model_cannot_score_a_round(make_round, admin_user):
    from models_ml.models import ModelVersion

    diffusion = ModelVersion.objects.create(
        name="d", kind=ModelKind.DIFFUSION, path="/d"
    )
    with pytest.raises(DomainError, match="reward model"):
        round_score_start(
            round=make_round(2), created_by=admin_user, reward_model_version=diffusion
        )


def test_a_round_created_with_a_reward_model_is_scored_whoever_creates_it(
    make_round, admin_user, sent, django_capture_on_commit_callbacks
):
    """The scoring starts from ``round_create`` itself (the ``round_created``
    signal), so the page, the API and any other caller get it alike."""
    reward = ModelVersion.objects.create(
        name="reward", kind=ModelKind.REWARD, path="/nowhere"
    )
    with django_capture_on_commit_callbacks(execute=True):
        rnd = make_round(3, reward_model_version=reward)
    job = Job.objects.get(kind=JobKind.SCORE)
    assert job.params["round_id"] == rnd.pk
    assert job.params["reward_version_id"] == reward.pk
    rnd.refresh_from_db()
    assert rnd.settings["score_job_id"] == job.pk
    assert sent == [("models_ml.tasks.ml_score_round", "ml")]
    make_round(2, name="plain")
    assert Job.objects.filter(kind=JobKind.SCORE).count() == 1


def test_a_round_whose_scoring_is_refused_is_not_created(
    make_round, admin_user, settings
):
    """A refusal of the receiver (here the admin's job quota) aborts the
    round's creation: no round is left without the scoring it asked for."""
    from annotations.errors import QuotaExceeded
    from annotations.models import Round

    settings.JOB_QUOTAS = {**settings.JOB_QUOTAS, "admin": (0, 0)}
    reward = ModelVersion.objects.create(
        name="reward", kind=ModelKind.REWARD, path="/nowhere"
    )
    with pytest.raises(QuotaExceeded):
        make_round(3, name="refused", reward_model_version=reward)
    assert not Round.objects.filter(name="refused").exists()
    assert not Job.objects.exists()
