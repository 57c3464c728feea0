"""Retraining and rounds that generate: admin forms, and the steps page that
polls every 2 s until the last step of the run has finished."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotations.models import Rating, Role, Round, RoundStatus
from annotations.rating.serving import assignment_next
from annotations.rating.submit import rating_submit
from models_ml.engine.recipes import recipe_for
from models_ml.models import Job, JobKind, JobStatus
from models_ml.services.finetune import finetune_start
from models_ml.services.params import DEFAULT_OBJECTIVE
from tests.factories import DatasetFactory, ImageFactory

from .ml_page_data import diffusion, reward

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    from medrlhf.celery import app

    class Result:
        id = "celery-id"

    monkeypatch.setattr(app, "send_task", lambda *a, **k: Result())


def _rate_all(rnd, physician):
    while True:
        try:
            assignment = assignment_next(round=rnd, rater=physician)
        except Exception:  # noqa: BLE001 - the round ran out of images
            return
        if assignment is None:
            return
        rating_submit(
            round=rnd,
            rater=physician,
            image=assignment.round_image.image,
            score=3,
            flags=[],
            comment="",
            time_taken_ms=100,
        )


@pytest.mark.parametrize(
    "name", ["ml-retraining", "ml-retraining-start", "ml-round-generate"]
)
def test_physicians_cannot_reach_retraining(client, physician, name):
    client.force_login(physician)
    method = client.get if name == "ml-retraining" else client.post
    assert method(reverse(name)).status_code == 403


def test_retraining_form_starts_the_chain_and_redirects_to_its_steps(
    client, admin_user, physician, make_round, django_capture_on_commit_callbacks
):
    _rate_all(make_round(n_images=3), physician)
    assert Rating.objects.count() >= 2
    dataset = DatasetFactory()
    ImageFactory(dataset=dataset, modality="ct", prompt="CT: axial head")
    version = diffusion("base", dataset=dataset)
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("ml-retraining-start"),
            {
                "diffusion_version": version.pk,
                "reward_epochs": 5,
                "ensemble_size": 2,
                "finetune_steps": 7,
                "open_next_round": "on",
                "images_per_prompt": 2,
            },
        )
    assert response.status_code == 302, response.context["retrain_form"].errors
    job = Job.objects.get()
    assert response["Location"] == reverse("ml-job", args=[job.pk])
    assert job.kind == JobKind.TRAIN_REWARD
    assert job.params["reward"] == {"epochs": 5, "ensemble_size": 2}
    finetune = job.params["chain"]["finetune"]
    # The default objective (docs/retraining.md: the reported runs' rule).
    assert (finetune["max_steps"], finetune["objective"]) == (7, DEFAULT_OBJECTIVE)
    # The objective's recipe fills in what the form left out.
    recipe = recipe_for(DEFAULT_OBJECTIVE)
    assert (finetune["learning_rate"], finetune["lr_scheduler"]) == (
        recipe["learning_rate"],
        "constant",
    )
    assert job.params["chain"]["control"] is False
    assert job.params["chain"]["round"]["images_per_prompt"] == 2
    assert job.params["chain"]["round"]["prompts"] == [["CT: axial head", "ct"]]


def test_retraining_form_can_fine_tune_on_the_images_rated_3_only(
    client, admin_user, physician, make_round, django_capture_on_commit_callbacks
):
    _rate_all(make_round(n_images=2), physician)
    version = diffusion("base", dataset=DatasetFactory())
    client.force_login(admin_user)
    page = client.get(reverse("ml-retraining")).content.decode()
    assert 'name="objective"' in page and "only images rated 3" in page
    form = {
        "diffusion_version": version.pk,
        "reward_epochs": 5,
        "ensemble_size": 2,
        "finetune_steps": 7,
        "images_per_prompt": 2,
    }
    with django_capture_on_commit_callbacks(execute=True):
        filtered = client.post(
            reverse("ml-retraining-start"), {**form, "objective": "filtered"}
        )
        weighted = client.post(
            reverse("ml-retraining-start"), {**form, "objective": "weighted"}
        )
    assert (filtered.status_code, weighted.status_code) == (302, 302)
    first, second = Job.objects.order_by("pk")
    filtered_params = first.params["chain"]["finetune"]
    weighted_params = second.params["chain"]["finetune"]
    assert filtered_params["objective"] == "filtered"
    assert filtered_params["filter_threshold"] == 0.75
    assert weighted_params["objective"] == "weighted"
    assert "filter_threshold" not in weighted_params
    assert filtered_params["max_steps"] == weighted_params["max_steps"] == 7


def test_retraining_without_ratings_shows_the_reason(client, admin_user):
    version = diffusion()
    client.force_login(admin_user)
    response = client.post(
        reverse("ml-retraining-start"),
        {
            "diffusion_version": version.pk,
            "reward_epochs": 5,
            "ensemble_size": 2,
            "finetune_steps": 7,
            "images_per_prompt": 2,
        },
    )
    assert response.status_code == 400
    assert "at least 2 ratings" in response.content.decode()
    assert not Job.objects.exists()


def test_steps_page_lists_done_and_planned_steps_and_keeps_polling(client, admin_user):
    chain = {"id": "abc", "round": {"images_per_prompt": 2}}
    rew = reward("reward one", metrics={"spearman": 0.5})
    first = Job.objects.create(
        kind=JobKind.TRAIN_REWARD,
        status=JobStatus.SUCCEEDED,
        progress=1.0,
        params={"chain": {**chain, "step": "train_reward"}},
        result={"model_version_id": rew.pk},
    )
    Job.objects.create(
        kind=JobKind.FINETUNE,
        status=JobStatus.RUNNING,
        progress=0.3,
        message="step 3 of 10",
        params={"chain": {**chain, "step": "finetune"}},
    )
    client.force_login(admin_user)
    response = client.get(reverse("ml-job-status", args=[first.pk]), **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert 'hx-trigger="every 2s"' in html
    assert "reward one" in html and "Spearman</span> 0.500" in html
    assert "step 3 of 10" in html
    assert "3. Comparison round" in html and "Starts when the step before" in html


def test_steps_page_names_a_filtered_fine_tune_done_and_planned(client, admin_user):
    chain = {
        "id": "flt",
        "round": None,
        "finetune": {"objective": "filtered", "filter_threshold": 0.75},
    }
    first = Job.objects.create(
        kind=JobKind.TRAIN_REWARD,
        status=JobStatus.RUNNING,
        params={"chain": {**chain, "step": "train_reward"}},
    )
    client.force_login(admin_user)
    planned = client.get(reverse("ml-job", args=[first.pk])).content.decode()
    assert "2. Filtered fine-tune (weight ≥ 0.75)" in planned
    assert "Reward-weighted fine-tune" not in planned
    first.status = JobStatus.SUCCEEDED
    first.save()
    # Queued as the chain queues it, so the params have their real shape.
    done = finetune_start(
        diffusion_version=diffusion("base"),
        reward_version=reward("reward"),
        created_by=admin_user,
        params=chain["finetune"],
        chain={**chain, "step": "finetune"},
    )
    weighted = finetune_start(
        diffusion_version=diffusion("other"),
        reward_version=reward("reward 2"),
        created_by=admin_user,
        params={"objective": "weighted"},
    )
    page = client.get(reverse("ml-job", args=[done.pk])).content.decode()
    assert "Filtered fine-tune (weight ≥ 0.75)" in page
    assert str(done).startswith("Filtered fine-tune (weight ≥ 0.75) #")
    assert weighted.title == "Reward-weighted fine-tune"


def test_steps_page_stops_polling_once_a_step_failed(client, admin_user):
    job = Job.objects.create(
        kind=JobKind.TRAIN_REWARD,
        status=JobStatus.FAILED,
        error="reward model: too few ratings",
        params={"chain": {"id": "x", "round": None}},
    )
    client.force_login(admin_user)
    response = client.get(reverse("ml-job-status", args=[job.pk]), **HTMX)
    assert response.status_code == 286
    assert "too few ratings" in response.content.decode()
    assert "Starts when" not in response.content.decode()


def test_pasted_prompts_open_a_generating_round_comparing_two_versions(
    client, admin_user
):
    dataset = DatasetFactory()
    ImageFactory.create_batch(3, dataset=dataset)
    old = diffusion("old", dataset=dataset)
    new = diffusion("new", parent=old)
    client.force_login(admin_user)
    response = client.post(
        reverse("ml-round-generate"),
        {
            "round-name": "new vs old",
            "round-model_version": new.pk,
            "round-compare_model_version": old.pk,
            "round-prompts": "fundus: optic disc\nCT: axial head",
            "round-sample_count": 8,
            "round-images_per_prompt": 2,
            "round-control_percent": 10,
            "round-raters_per_image": 2,
        },
    )
    job = Job.objects.get()
    rnd = Round.objects.get()
    assert response.status_code == 302
    assert job.kind == JobKind.GENERATE_ROUND
    # Kept whole, as the dataset writes its prompts (services/prompts.py).
    assert job.params["prompts"] == [
        ["fundus: optic disc", "fundus"],
        ["CT: axial head", "ct"],
    ]
    assert job.params["compare_model_version_id"] == old.pk
    assert len(job.params["control_pool_ids"]) == 3
    assert rnd.status == RoundStatus.GENERATING
    assert rnd.raters_per_image == 2


def _round_form(version, **fields):
    return {
        "round-name": "served",
        "round-model_version": version.pk,
        "round-prompts": "CT: axial head",
        "round-sample_count": 8,
        "round-images_per_prompt": 10,
        "round-control_percent": 0,
        "round-raters_per_image": 1,
        **{f"round-{k}": v for k, v in fields.items()},
    }


def test_the_round_form_sets_agreement_repeats_and_uncertainty_serving(
    client, admin_user
):
    version, rm = diffusion(), reward()
    client.force_login(admin_user)
    page = client.get(reverse("ml-retraining")).content.decode()
    for field in ("agreement_percent", "repeat_percent", "serving_policy"):
        assert f'name="round-{field}"' in page
    response = client.post(
        reverse("ml-round-generate"),
        _round_form(
            version,
            agreement_percent=20,
            repeat_percent=10,
            serving_policy="uncertainty",
            reward_model_version=rm.pk,
        ),
    )
    assert response.status_code == 302
    rnd = Round.objects.get()
    assert (rnd.agreement_share, rnd.repeat_share) == (0.2, 0.1)
    assert rnd.serving_policy == "uncertainty" and rnd.reward_model_version == rm


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"serving_policy": "uncertainty"}, "needs a reward model"),
        ({"repeat_percent": 60}, "less than or equal to 50"),
    ],
)
def test_the_round_form_names_a_bad_serving_setting(
    client, admin_user, fields, message
):
    client.force_login(admin_user)
    response = client.post(
        reverse("ml-round-generate"), _round_form(diffusion(), **fields)
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Round.objects.exists()


def test_prompts_are_sampled_from_the_dataset_for_one_modality(client, admin_user):
    dataset = DatasetFactory()
    for i in range(4):
        ImageFactory(dataset=dataset, modality="ct", prompt=f"CT case {i}")
    ImageFactory(dataset=dataset, modality="fundus", prompt="fundus case")
    version = diffusion("base", dataset=dataset)
    client.force_login(admin_user)
    client.post(
        reverse("ml-round-generate"),
        {
            "round-name": "sampled",
            "round-model_version": version.pk,
            "round-dataset": dataset.pk,
            "round-sample_modality": "CT",
            "round-sample_count": 2,
            "round-images_per_prompt": 1,
            "round-control_percent": 0,
            "round-raters_per_image": 1,
        },
    )
    prompts = Job.objects.get().params["prompts"]
    assert len(prompts) == 2
    assert all(m == "ct" for _, m in prompts)


def test_a_malformed_prompt_line_is_named(client, admin_user):
    version = diffusion()
    client.force_login(admin_user)
    response = client.post(
        reverse("ml-round-generate"),
        {
            "round-name": "bad",
            "round-model_version": version.pk,
            "round-prompts": "fundus: fine\nno modality here",
            "round-sample_count": 8,
            "round-images_per_prompt": 1,
            "round-control_percent": 0,
            "round-raters_per_image": 1,
        },
    )
    assert response.status_code == 400
    assert "line 2" in response.content.decode()
    assert not Job.objects.exists()


def test_researcher_cannot_see_a_jobs_steps(client, make_user):
    job = Job.objects.create(kind=JobKind.TRAIN_REWARD, params={})
    client.force_login(make_user(Role.RESEARCHER))
    assert client.get(reverse("ml-job", args=[job.pk])).status_code == 403
