"""Rater weighting for reward training: the weights, where they are chosen,
and that they reach the engine's rows and the reward ModelVersion."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.urls import reverse

from annotations.errors import DomainError
from annotations.models import (
    Image,
    RaterProfile,
    Rating,
    Role,
    Round,
    RoundStatus,
)
from models_ml.models import Job, ModelKind, ModelVersion
from models_ml.rater_weighting import (
    EXPERTISE_WEIGHTS,
    MIN_RELIABILITY_WEIGHT,
    RatedRow,
    rater_weighting,
)
from models_ml.services.reward import reward_model_train_run, reward_model_train_start
from tests.factories import ImageFactory, UserFactory

from .ml_page_data import diffusion

# --- the weights ------------------------------------------------------------------


def _rows(table: dict[str, dict[int, int]], levels: dict[str, str] | None = None):
    levels = levels or {}
    return [
        RatedRow(rater=r, item=i, score=s, expert_level=levels.get(r, ""))
        for r, items in table.items()
        for i, s in items.items()
    ]


def test_no_weighting_gives_every_rating_weight_one():
    rows = _rows({"a": {1: 3, 2: 1}, "b": {1: 2}})
    weighting = rater_weighting(rows=rows, scheme="none")
    assert weighting.row_weights(rows) == [1.0, 1.0, 1.0]
    assert weighting.as_params()["rater_weighting"] == "none"


def test_expertise_weights_follow_the_documented_table_scaled_to_mean_one():
    levels = {"t": "trainee", "s": "specialist", "e": "expert", "x": ""}
    rows = _rows({name: {1: 2} for name in levels}, levels)
    weighting = rater_weighting(rows=rows, scheme="expertise")
    assert weighting.raw == {"t": 0.5, "s": 1.0, "e": 1.5, "x": 1.0}
    weights = weighting.row_weights(rows)
    assert sum(weights) / len(weights) == pytest.approx(1.0)
    assert weights[2] / weights[0] == pytest.approx(
        EXPERTISE_WEIGHTS["expert"] / EXPERTISE_WEIGHTS["trainee"]
    )


def test_scaling_is_over_ratings_so_a_prolific_rater_moves_the_mean():
    rows = _rows(
        {"t": {i: 2 for i in range(3)}, "e": {9: 2}},
        {"t": "trainee", "e": "expert"},
    )
    weights = rater_weighting(rows=rows, scheme="expertise").row_weights(rows)
    assert sum(weights) == pytest.approx(len(rows))
    assert weights[-1] / weights[0] == pytest.approx(3.0)


def test_reliability_weighs_agreeing_raters_above_a_dissenter_and_defaults_the_rest():
    truth = {i: 1 + i % 3 for i in range(9)}
    table = {
        "a": dict(truth),
        "b": dict(truth),
        "d": dict(truth),
        "c": {i: 4 - s for i, s in truth.items()},  # reverses the scale
        "new": {0: 1, 1: 2},  # too few common images to measure
    }
    weighting = rater_weighting(rows=_rows(table), scheme="reliability")
    raw, kappa = weighting.raw, weighting.reliability
    # a, b and d: kappa 1 with each other and -1 with c, so (1 + 1 - 1) / 3.
    assert raw["a"] == raw["b"] == raw["d"] == pytest.approx(1 / 3)
    assert raw["c"] == MIN_RELIABILITY_WEIGHT and kappa["c"] == pytest.approx(-1)
    assert kappa["new"] is None
    assert weighting.default_weight == raw["new"] == pytest.approx(1 / 3)
    recorded = weighting.as_params()
    assert recorded["rater_reliability"]["new"] is None
    assert recorded["rater_weight_default"] == weighting.default_weight


def test_reliability_with_nobody_measurable_weighs_everyone_alike():
    rows = _rows({"a": {1: 3}, "b": {2: 1}})
    weighting = rater_weighting(rows=rows, scheme="reliability")
    assert weighting.row_weights(rows) == [1.0, 1.0]
    assert weighting.default_weight == 1.0


def test_unknown_weighting_is_refused():
    with pytest.raises(ValueError, match="not one of none, reliability, expertise"):
        rater_weighting(rows=[], scheme="seniority")


# --- the reward training job --------------------------------------------------------


def _doctor(name: str, level: str) -> Any:
    user = UserFactory(role=Role.PHYSICIAN, username=name)
    RaterProfile.objects.filter(user=user).update(expert_level=level)
    return user


@pytest.fixture
def rated(db) -> dict[str, Any]:
    """A trainee and an expert rate the same four images; the expert also
    repeats one, which must not reach training."""
    rnd = Round.objects.create(name="r", status=RoundStatus.RATING)
    trainee, expert = _doctor("=trainee", "trainee"), _doctor("expert", "expert")
    images = [ImageFactory() for _ in range(4)]
    for image, score in zip(images, (1, 2, 3, 3), strict=True):
        Rating.objects.create(round=rnd, rater=trainee, image=image, score=score)
        Rating.objects.create(round=rnd, rater=expert, image=image, score=score)
    Rating.objects.create(
        round=rnd, rater=expert, image=images[0], score=3, is_repeat=True
    )
    return {"round": rnd, "images": images}


@pytest.fixture
def engine_rows(monkeypatch, tmp_path) -> list[Any]:
    """Stand in for the engine's trainer: keep the rows it is given."""
    from models_ml import engine

    seen: list[Any] = []

    def train(records, *, config, real_images, progress):
        seen.extend(records)

        def save(path):
            Path(path).mkdir(parents=True)
            return Path(path)

        model = SimpleNamespace(info={}, save=save)
        return SimpleNamespace(
            model=model,
            metrics={"n_ratings": len(records)},
            fold_metrics=[],
            heldout=None,
        )

    monkeypatch.setattr(engine, "train_reward_model", train)
    return seen


def _train(admin_user: Any, **params: Any) -> ModelVersion:
    job = reward_model_train_start(created_by=admin_user, params=params)
    reward_model_train_run(job, lambda *a, **k: None)
    return ModelVersion.objects.get(job=job)


@pytest.mark.django_db
def test_expertise_weights_reach_the_engine_rows_and_the_model_version(
    rated, engine_rows, admin_user
):
    version = _train(admin_user, rater_weighting="expertise")
    assert len(engine_rows) == 8  # the repeat stays out
    weights = sorted({round(r.weight, 6) for r in engine_rows})
    assert weights == [0.5, 1.5]  # trainee 0.5, expert 1.5: mean 1 already
    assert version.kind == ModelKind.REWARD
    assert version.params["rater_weighting"] == "expertise"
    assert version.params["rater_weights"] == {"=trainee": 0.5, "expert": 1.5}
    assert version.rating_count == 8


@pytest.mark.django_db
def test_reliability_weights_are_recorded_per_rater(rated, engine_rows, admin_user):
    version = _train(admin_user, rater_weighting="reliability")
    # Four common images (< 5) measure nobody: everyone weighs the default, 1.
    assert {r.weight for r in engine_rows} == {1.0}
    assert version.params["rater_reliability"] == {"=trainee": None, "expert": None}
    assert version.params["rater_weight_default"] == 1.0


@pytest.mark.django_db
def test_training_without_the_option_records_no_weighting(
    rated, engine_rows, admin_user
):
    version = _train(admin_user)
    assert {r.weight for r in engine_rows} == {1.0}
    assert version.params["rater_weighting"] == "none"


@pytest.mark.django_db
def test_unknown_rater_weighting_is_refused_before_queueing(rated, admin_user):
    with pytest.raises(DomainError, match="rater_weighting 'loudest'"):
        reward_model_train_start(
            created_by=admin_user, params={"rater_weighting": "loudest"}
        )
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_reward_training_api_takes_the_weighting(rated, client, admin_user):
    client.force_login(admin_user)
    response = client.post(
        "/api/reward-models/train/",
        {"params": {"rater_weighting": "reliability"}},
        content_type="application/json",
    )
    assert response.status_code == 202, response.content
    job = Job.objects.get()
    assert job.params["reward"]["rater_weighting"] == "reliability"


@pytest.mark.django_db
def test_retraining_form_passes_the_weighting_to_the_reward_job(
    rated, client, admin_user, monkeypatch
):
    from medrlhf.celery import app

    monkeypatch.setattr(app, "send_task", lambda *a, **k: SimpleNamespace(id="c"))
    version = diffusion("base")
    client.force_login(admin_user)
    page = client.get(reverse("ml-retraining")).content.decode()
    assert 'name="rater_weighting"' in page
    response = client.post(
        reverse("ml-retraining-start"),
        {
            "diffusion_version": version.pk,
            "reward_epochs": 5,
            "ensemble_size": 2,
            "finetune_steps": 7,
            "images_per_prompt": 2,
            "rater_weighting": "expertise",
        },
    )
    assert response.status_code == 302
    assert Job.objects.get().params["reward"]["rater_weighting"] == "expertise"


@pytest.mark.django_db
def test_ratings_reach_the_engine_from_the_database_and_the_csv_is_an_artifact(
    rated, engine_rows, admin_user
):
    """The trainer gets each rating's own prompt (a leading ``=`` included,
    which the export escapes for spreadsheets); the researchers' CSV is
    written beside the model for the record, with the escape."""
    image = rated["images"][0]
    Image.objects.filter(pk=image.pk).update(prompt="=CT: a nodule")
    version = _train(admin_user)
    prompts = [r.prompt for r in engine_rows]
    assert prompts.count("=CT: a nodule") == 2
    assert not any(p.startswith("'") for p in prompts)
    assert all(Path(r.image_path).is_file() for r in engine_rows)
    artifact = (Path(version.path).parent / "ratings.csv").read_text()
    assert artifact.count("'=CT: a nodule") == 2
    assert len(artifact.strip().splitlines()) == 1 + 8


@pytest.mark.django_db
def test_a_rated_image_whose_file_is_gone_fails_the_job_naming_it(
    rated, engine_rows, admin_user
):
    image = rated["images"][2]
    Path(image.file.path).unlink()
    job = reward_model_train_start(created_by=admin_user, params={})
    with pytest.raises(
        DomainError, match=f"image {image.uid.hex}: image file not found"
    ):
        reward_model_train_run(job, lambda *a, **k: None)
    assert not ModelVersion.objects.filter(job=job).exists()
    assert engine_rows == []
