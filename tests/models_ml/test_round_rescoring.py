"""Most-informative-first rounds re-scored as they are rated: every
``rescore_every`` new ratings a reward model is trained on all ratings so far
and scores the round again, through the real task functions."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.urls import reverse

from annotations.design import DEFAULT_RESCORE_EVERY
from annotations.errors import DomainError
from annotations.models import Rating, Round, RoundStatus, ServingPolicy
from annotations.rating.serving import assignment_next
from annotations.rating.submit import rating_submit, rating_undo
from annotations.services.rounds import round_close
from models_ml import tasks
from models_ml.models import ImageScore, Job, JobKind, JobStatus, ModelVersion
from models_ml.services.round_scoring import round_rescore_maybe
from tests.models_ml.test_lineage import open_round, rate_everything, train_reward
from tests.models_ml.test_ml_jobs import (  # noqa: F401 (fixtures)
    _one_thread_and_every_step_reported,
    dataset_fixture,
    run,
    sent,  # noqa: F401 (fixture)
    train_base,
)

# Celery messages are recorded, not sent: each job is run here in-process.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sent")]


@pytest.fixture
def physicians(make_user: Any) -> list[Any]:
    return [make_user(), make_user()]


@pytest.fixture
def scored_round(dataset, admin_user, physicians) -> tuple[Round, ModelVersion]:
    """A second round served most informative first, re-scored every 3
    ratings, its images scored by a reward model trained on the first."""
    base = train_base(dataset, admin_user)
    first, _ = open_round(base, dataset, admin_user)
    rate_everything(first, physicians)
    reward = train_reward(admin_user)
    rnd, _ = open_round(
        base,
        dataset,
        admin_user,
        name="round 2",
        serving_policy=ServingPolicy.UNCERTAINTY,
        reward_model_version=reward,
        rescore_every=3,
    )
    score = run(tasks.ml_score_round, Job.objects.get(pk=rnd.settings["score_job_id"]))
    assert score.status == JobStatus.SUCCEEDED, score.error
    rnd.refresh_from_db()
    return rnd, reward


def _rate_one(rnd: Round, rater: Any, score: int = 2) -> Rating:
    assignment = assignment_next(round=rnd, rater=rater)
    assert assignment is not None
    rating, _ = rating_submit(
        round=rnd, rater=rater, image=assignment.round_image.image, score=score
    )
    return rating


def _first_rescoring(rnd: Round, physicians: list[Any], on_commit: Any) -> Job:
    """Three ratings (the fixture's interval), their commits run: the one
    re-scoring they start."""
    a, b = physicians
    with on_commit(execute=True):
        for rater in (a, b, a):
            _rate_one(rnd, rater)
    (job,) = _rescore_jobs()
    return job


def _rescore_jobs() -> list[Job]:
    return list(
        Job.objects.filter(
            kind=JobKind.TRAIN_REWARD, params__chain__rescore_round_id__isnull=False
        ).order_by("pk")
    )


def test_every_n_ratings_the_round_is_retrained_and_scored_again_one_run_at_a_time(
    scored_round, physicians, admin_user, client, django_capture_on_commit_callbacks
):
    rnd, first_reward = scored_round
    a, b = physicians
    with django_capture_on_commit_callbacks(execute=True):
        _rate_one(rnd, a)
        _rate_one(rnd, b)
    assert _rescore_jobs() == []

    with django_capture_on_commit_callbacks(execute=True):
        _rate_one(rnd, a, score=3)
    (job,) = _rescore_jobs()
    rnd.refresh_from_db()
    assert rnd.settings["rescore"] == {"at": 3, "job_id": job.pk, "count": 1}
    assert job.created_by == admin_user
    # The round's reward model's recipe, trained on every rating so far.
    assert job.params["round_ids"] is None
    assert job.params["reward"]["ensemble_size"] == 2
    assert job.params["reward"]["name"] == "round 2: re-scored at 3 ratings"

    # Due again, but the first re-scoring is still queued: no second one.
    with django_capture_on_commit_callbacks(execute=True):
        for rater in (b, a, b):
            _rate_one(rnd, rater)
    assert len(_rescore_jobs()) == 1

    job = run(tasks.ml_train_reward, job)
    assert job.status == JobStatus.SUCCEEDED, job.error
    new_reward = ModelVersion.objects.get(pk=job.result["model_version_id"])
    assert new_reward.rating_count == first_reward.rating_count + 6
    score = Job.objects.get(pk=job.result["next_job_id"])
    assert score.kind == JobKind.SCORE
    assert score.params["reward_version_id"] == new_reward.pk
    score = run(tasks.ml_score_round, score)
    assert score.status == JobStatus.SUCCEEDED, score.error

    rnd.refresh_from_db()
    assert rnd.reward_model_version == new_reward
    spreads = dict(
        ImageScore.objects.filter(model_version=new_reward).values_list(
            "image_id", "spread"
        )
    )
    items = list(rnd.items.all())
    assert len(spreads) == len(items)
    for item in items:
        assert item.uncertainty == pytest.approx(spreads[item.image_id])

    # Both jobs are done: the next rating (6 since the last start) starts the
    # second re-scoring.
    with django_capture_on_commit_callbacks(execute=True):
        _rate_one(rnd, a)
    jobs = _rescore_jobs()
    assert len(jobs) == 2
    rnd.refresh_from_db()
    assert rnd.settings["rescore"] == {"at": 7, "job_id": jobs[1].pk, "count": 2}
    client.force_login(admin_user)
    cell = client.get(reverse("rounds")).content.decode()
    assert "re-scored every 3 ratings · 2 times so far, last at 7" in cell
    assert f'href="/models/jobs/{jobs[1].pk}/"' in cell


def test_undone_ratings_and_repeats_do_not_count_towards_a_rescoring(
    scored_round, physicians, django_capture_on_commit_callbacks
):
    rnd, _ = scored_round
    a, b = physicians
    with django_capture_on_commit_callbacks(execute=True):
        _rate_one(rnd, a)
        _rate_one(rnd, b)
        rating_undo(round=rnd, rater=b)
        # Rated again: still two live first ratings.
        _rate_one(rnd, b)
    assert Rating.objects.filter(round=rnd, retracted_at=None).count() == 2
    assert _rescore_jobs() == []
    assert round_rescore_maybe(round_id=rnd.pk) is None


def test_a_closed_round_or_one_that_is_never_rescored_starts_nothing(
    scored_round, physicians, admin_user, django_capture_on_commit_callbacks
):
    rnd, _ = scored_round
    a, b = physicians
    Round.objects.filter(pk=rnd.pk).update(rescore_every=0)
    rnd.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        for rater in (a, b, a, b):
            _rate_one(rnd, rater)
    assert _rescore_jobs() == []

    Round.objects.filter(pk=rnd.pk).update(rescore_every=2)
    round_close(round=rnd, actor=admin_user)
    assert Round.objects.get(pk=rnd.pk).status == RoundStatus.CLOSED
    assert round_rescore_maybe(round_id=rnd.pk) is None
    assert _rescore_jobs() == []


def test_a_round_closed_while_its_reward_model_trains_is_not_scored(
    scored_round, physicians, admin_user, django_capture_on_commit_callbacks
):
    rnd, _ = scored_round
    job = _first_rescoring(rnd, physicians, django_capture_on_commit_callbacks)
    round_close(round=rnd, actor=admin_user)
    job = run(tasks.ml_train_reward, job)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["next_job_id"] is None
    assert not Job.objects.filter(
        kind=JobKind.SCORE, params__chain__rescore_round_id=rnd.pk
    ).exists()


def test_a_rescoring_that_cannot_start_never_costs_the_physician_their_rating(
    scored_round, physicians, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    rnd, _ = scored_round
    a, b = physicians

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("broker down")

    monkeypatch.setattr("models_ml.services.round_scoring.round_rescore_maybe", broken)
    with caplog.at_level(logging.ERROR):
        with django_capture_on_commit_callbacks(execute=True):
            for rater in (a, b, a):
                _rate_one(rnd, rater)
    assert Rating.objects.filter(round=rnd).count() == 3
    assert f"round {rnd.pk}: re-scoring could not be started" in caplog.text


@pytest.mark.parametrize(
    ("policy", "given", "expected"),
    [
        (ServingPolicy.UNCERTAINTY, None, DEFAULT_RESCORE_EVERY),
        (ServingPolicy.UNCERTAINTY, 0, 0),
        (ServingPolicy.UNCERTAINTY, 50, 50),
        (ServingPolicy.RANDOM, None, 0),
        (ServingPolicy.RANDOM, 0, 0),
    ],
)
def test_a_round_takes_its_rescoring_interval_or_the_policys_default(
    make_round, policy, given, expected
):
    rnd = make_round(2, serving_policy=policy, rescore_every=given)
    assert Round.objects.get(pk=rnd.pk).rescore_every == expected


@pytest.mark.parametrize(
    ("policy", "given", "message"),
    [
        (ServingPolicy.RANDOM, 10, "rescore_every applies to most-informative-first"),
        (ServingPolicy.UNCERTAINTY, -1, "rescore_every must be a whole number"),
        (ServingPolicy.UNCERTAINTY, 2.5, "rescore_every must be a whole number"),
        (ServingPolicy.UNCERTAINTY, True, "rescore_every must be a whole number"),
        (ServingPolicy.UNCERTAINTY, 10**9, "rescore_every must be a whole number"),
    ],
)
def test_a_bad_rescoring_interval_is_refused_by_name_and_no_round_is_made(
    make_round, policy, given, message
):
    with pytest.raises(DomainError, match=message):
        make_round(2, serving_policy=policy, rescore_every=given)
    assert not Round.objects.exists()


def test_a_rescoring_shows_its_own_two_steps_and_is_no_retraining_run(
    scored_round, physicians, admin_user, client, django_capture_on_commit_callbacks
):
    rnd, _ = scored_round
    job = _first_rescoring(rnd, physicians, django_capture_on_commit_callbacks)
    client.force_login(admin_user)

    page = client.get(f"/models/jobs/{job.pk}/").content.decode()
    assert JobKind.SCORE.label in page
    assert JobKind.FINETUNE.label not in page
    assert "Re-scoring of round 2" in page and "Retraining round" not in page
    chain_id = job.params["chain"]["id"]
    answer = client.get(f"/api/retraining/{chain_id}/")
    assert answer.status_code == 404
    assert "No such retraining run" in answer.content.decode()
