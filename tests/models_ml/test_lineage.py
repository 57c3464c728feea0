"""The loop in-process: base model -> round -> ratings -> reward model ->
fine-tune -> comparison round, and what each version records of its lineage."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

from annotations.api.serving import SERVING_FIELDS
from annotations.design import ServingDesign
from annotations.errors import DomainError
from annotations.models import Image, ImageSource, Rating, Round, RoundStatus
from annotations.rating.serving import assignment_next
from annotations.rating.submit import rating_submit
from annotations.services.generation import generated_image_create as create_image
from models_ml import tasks
from models_ml.models import (
    Comparison,
    GateStatus,
    Job,
    JobKind,
    JobStatus,
    ModelKind,
    ModelVersion,
)
from models_ml.selectors import (
    default_diffusion_version,
    job_chain,
    model_version_ancestors,
    model_version_tree,
)
from models_ml.services import chains, round_generation
from models_ml.services.chains import retraining_round_start
from models_ml.services.finetune import finetune_start
from models_ml.services.generation import generate_start
from models_ml.services.jobs import job_dir
from models_ml.services.params import DEFAULT_BEST_OF_N
from models_ml.services.reward import reward_model_train_run, reward_model_train_start
from models_ml.services.round_generation import round_generate_start
from tests.models_ml.ml_page_data import diffusion, reward
from tests.models_ml.test_ml_jobs import (  # noqa: F401 (fixtures)
    REAL_PROGRESS,
    SAMPLING,
    WorkerKilled,
    _die_at_step,
    _one_thread_and_every_step_reported,
    _worker_goes_silent,
    dataset_fixture,
    run,
    train_base,
)

pytestmark = pytest.mark.django_db

PROMPTS = [("CT: case 1", "ct"), ("Fundus: case 2", "fundus")]
REWARD = {"ensemble_size": 2, "epochs": 30, "n_folds": 2}
FINETUNE = {
    "max_steps": 4,
    "batch_size": 2,
    "checkpointing_steps": 2,
    "lr_warmup_steps": 0,
    "device": "cpu",
}
# The tests of the reward-weighted fine-tune name it: the default is filtered.
WEIGHTED = {**FINETUNE, "objective": "weighted"}


def open_round(
    version: ModelVersion, dataset: Any, user: Any, **kw: Any
) -> tuple[Round, Job]:
    design = {k: kw.pop(k) for k in SERVING_FIELDS if k in kw}
    job = round_generate_start(
        model_version=version,
        prompts=PROMPTS,
        images_per_prompt=2,
        created_by=user,
        name=kw.pop("name", "round 1"),
        raters_per_image=2,
        control_share=kw.pop("control_share", 0.2),
        control_pool=Image.objects.filter(dataset=dataset),
        seed=11,
        sampling=SAMPLING,
        serving=ServingDesign(**design),
        **kw,
    )
    job = run(tasks.ml_generate_round, job)
    assert job.status == JobStatus.SUCCEEDED, job.error
    return Round.objects.get(pk=job.params["round_id"]), job


def rate_everything(rnd: Round, raters: list[Any]) -> None:
    for rater in raters:
        while (assignment := assignment_next(round=rnd, rater=rater)) is not None:
            image = assignment.round_image.image
            rating_submit(round=rnd, rater=rater, image=image, score=1 + image.pk % 3)


def train_reward(user: Any, **kw: Any) -> ModelVersion:
    job = run(
        tasks.ml_train_reward,
        reward_model_train_start(created_by=user, params=REWARD, **kw),
    )
    assert job.status == JobStatus.SUCCEEDED, job.error
    return ModelVersion.objects.get(pk=job.result["model_version_id"])


def rated_base(
    dataset: Any, user: Any, raters: list[Any]
) -> tuple[ModelVersion, Round, ModelVersion]:
    """A base model, its first round rated by ``raters``, and a reward model."""
    base = train_base(dataset, user)
    rnd, _ = open_round(base, dataset, user)
    rate_everything(rnd, raters)
    return base, rnd, train_reward(user)


@pytest.fixture
def physicians(make_user: Any) -> list[Any]:
    return [make_user(), make_user()]


def test_a_comparison_round_draws_both_versions_on_the_same_seeds_and_opens(
    dataset, admin_user
):
    old = train_base(dataset, admin_user, name="old")
    new = train_base(dataset, admin_user, name="new", seed=1)
    rnd, job = open_round(new, dataset, admin_user, compare_model_version=old)

    assert rnd.status == RoundStatus.RATING and rnd.opened_at is not None
    generated = Image.objects.filter(generated_for_round=rnd)
    assert generated.count() == 8
    seeds = defaultdict(set)
    for image in generated:
        assert image.source == ImageSource.GENERATED
        assert Path(image.file.path).is_file() and Path(image.preview.path).is_file()
        assert image.width == image.height == 16
        g = image.generation
        assert {"seed", "steps", "guidance", "scheduler", "prompt"} <= set(g)
        assert g["steps"] == 2 and g["prompt"] == image.prompt
        seeds[image.model_version_id].add((g["prompt"], g["seed"]))
    assert seeds[old.pk] == seeds[new.pk] and len(seeds[new.pk]) == 4
    controls = rnd.items.filter(is_control=True)
    assert controls.count() == 2
    assert all(i.image.source == ImageSource.REAL for i in controls)
    assert job.result["generated"] == 8 and job.result["controls"] == 2


def test_a_round_job_retried_after_its_worker_died_keeps_the_images_it_stored(
    dataset, admin_user, monkeypatch
):
    base = train_base(dataset, admin_user)
    job = round_generate_start(
        model_version=base,
        prompts=PROMPTS,
        images_per_prompt=2,
        created_by=admin_user,
        name="r",
        seed=3,
        sampling={**SAMPLING, "batch_size": 1},
    )
    stored = []

    def dies_after_two(**kwargs: Any) -> Image:
        if len(stored) == 2:
            raise WorkerKilled
        stored.append(create_image(**kwargs))
        return stored[-1]

    monkeypatch.setattr(round_generation, "generated_image_create", dies_after_two)
    with pytest.raises(WorkerKilled):
        tasks.ml_generate_round(job.pk)
    monkeypatch.setattr(round_generation, "generated_image_create", create_image)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED)

    job = run(tasks.ml_generate_round, job)

    rnd = Round.objects.get(pk=job.params["round_id"])
    images = Image.objects.filter(generated_for_round=rnd)
    assert images.count() == 4 and set(stored) <= set(images)
    assert sorted(im.generation["seed"] for im in images) == [3, 4, 5, 6]
    assert rnd.status == RoundStatus.RATING and rnd.items.count() == 4


def test_reward_job_trains_on_all_live_ratings_and_records_what_it_used(
    dataset, admin_user, physicians
):
    base = train_base(dataset, admin_user)
    rnd, _ = open_round(base, dataset, admin_user)
    rate_everything(rnd, physicians)
    first = Rating.objects.order_by("id").first()
    Rating.objects.filter(pk=first.pk).update(retracted_at=first.created_at)
    live = Rating.objects.filter(retracted_at=None)

    reward = train_reward(admin_user)

    assert reward.kind == ModelKind.REWARD and reward.parent is None
    assert reward.rating_count == live.count() == 9
    assert reward.ratings_until == max(r.created_at for r in live)
    assert list(reward.trained_on_rounds.all()) == [rnd]
    assert reward.dataset == dataset and reward.params["n_real_images"] == 6
    for key in ("spearman", "auc_rated_3", "kappa_quadratic", "ece", "threshold"):
        assert key in reward.metrics
    assert reward.metrics["n_ratings"] == 9 and reward.metrics["n_negatives"] > 0
    assert (Path(reward.path) / "reward_model.safetensors").is_file()
    with (job_dir(job=reward.job) / "ratings.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 9 and all(Path(r["image_path"]).is_file() for r in rows)
    assert train_reward(admin_user).parent == reward


def test_finetune_weights_rated_and_scored_images_and_records_its_lineage(
    dataset, admin_user, physicians
):
    base, rnd, reward = rated_base(dataset, admin_user, physicians)
    gen = generate_start(
        model_version=base,
        reward_version=reward,
        prompt="CT: case 3",
        modality="ct",
        count=2,
        n=2,
        created_by=admin_user,
        sampling=SAMPLING,
    )
    gen = run(tasks.ml_generate, gen)
    assert gen.status == JobStatus.SUCCEEDED, gen.error
    assert len(gen.result["kept"]) == 2 and len(gen.result["rejected"]) == 2

    job = finetune_start(
        diffusion_version=base,
        reward_version=reward,
        created_by=admin_user,
        params=WEIGHTED,
    )
    job = run(tasks.ml_finetune, job)
    assert job.status == JobStatus.SUCCEEDED, job.error
    child = ModelVersion.objects.get(pk=job.result["model_version_id"])

    assert child.kind == ModelKind.DIFFUSION and child.parent == base
    assert child.dataset == dataset and child.backend == base.backend
    assert list(child.trained_on_rounds.all()) == [rnd]
    # Four generated images, each rated by both physicians; controls are real.
    assert child.rating_count == 8
    assert child.params["reward_version_id"] == reward.pk
    assert child.params["weighting"] == "sample"  # the default, recorded
    assert child.metrics["n_rated"] == 4 and child.metrics["n_scored"] == 4
    assert child.metrics["steps"] == 4
    assert (Path(child.path) / "medrlhf_model.json").is_file()
    assert job.result["next_job_id"] is None
    weights: dict[str, list[float]] = defaultdict(list)
    with (job_dir(job=job) / "weights.csv").open() as handle:
        for row in csv.DictReader(handle):
            weights[row["Text"]].append(float(row["weight"]))
    for values in weights.values():
        assert sum(values) / len(values) == pytest.approx(1.0) or not any(values)
    assert model_version_ancestors(model_version=child) == [child, base]


def test_filtered_finetune_trains_on_the_images_that_reach_the_threshold_only(
    dataset, admin_user, physicians
):
    base, rnd, reward = rated_base(dataset, admin_user, physicians)
    # Rated images: the mean rating mapped to 0-1.  The threshold keeps those
    # at or above it, whatever their prompt, and they count equally.
    generated = Image.objects.filter(generated_for_round=rnd)
    means = {
        im.pk: (
            sum(r.score for r in im.ratings.filter(retracted_at=None))
            / im.ratings.filter(retracted_at=None).count()
            - 1
        )
        / 2
        for im in generated
    }
    threshold = sorted(means.values())[len(means) // 2]
    job = finetune_start(
        diffusion_version=base,
        reward_version=reward,
        created_by=admin_user,
        params={**FINETUNE, "objective": "filtered", "filter_threshold": threshold},
    )
    job = run(tasks.ml_finetune, job)
    assert job.status == JobStatus.SUCCEEDED, job.error
    with (job_dir(job=job) / "weights.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    kept = {Path(r["path"]).resolve() for r in rows}
    expected = {
        Path(im.file.path).resolve() for im in generated if means[im.pk] >= threshold
    }
    assert len(kept) == len(rows)
    assert kept == expected and 0 < len(kept) < len(means)
    assert all(float(r["weight"]) == 1.0 for r in rows)
    child = ModelVersion.objects.get(pk=job.result["model_version_id"])
    assert child.params["filter_threshold"] == threshold
    assert child.metrics["n_kept"] == len(kept)


def test_filtered_finetune_with_nothing_above_the_threshold_fails_clearly(
    dataset, admin_user, physicians
):
    base, rnd, reward = rated_base(dataset, admin_user, physicians)
    Rating.objects.update(score=1)
    job = finetune_start(
        diffusion_version=base,
        reward_version=reward,
        created_by=admin_user,
        params={**FINETUNE, "objective": "filtered", "filter_threshold": 1.0},
    )
    job = run(tasks.ml_finetune, job)
    assert job.status == JobStatus.FAILED
    assert "filter_threshold 1.0: none of the" in job.error
    assert not ModelVersion.objects.filter(job=job).exists()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        *[
            ({"filter_threshold": bad}, "filter_threshold must be a number")
            for bad in (0, -0.5, 1.5, "high", True)
        ],
        ({"weighting": "both"}, "weighting must be 'sample'"),
        ({"weighting": None}, "weighting must be 'sample'"),
    ],
)
def test_a_bad_filter_threshold_or_weighting_is_refused_before_queueing(
    admin_user, setting, message
):
    with pytest.raises(DomainError, match=message):
        finetune_start(
            diffusion_version=diffusion("base"),
            reward_version=reward("reward"),
            created_by=admin_user,
            params={**FINETUNE, **setting},
        )
    assert not Job.objects.exists()


def test_filtered_generation_keeps_the_best_of_n_and_stores_the_rest(
    dataset, admin_user, physicians
):
    base, rnd, reward = rated_base(dataset, admin_user, physicians)
    job = generate_start(
        model_version=base,
        reward_version=reward,
        prompt="Fundus: case 9",
        modality="Fundus",
        count=2,
        n=3,
        created_by=admin_user,
        seed=5,
        sampling=SAMPLING,
    )
    job = run(tasks.ml_generate, job)
    assert job.status == JobStatus.SUCCEEDED, job.error
    kept, rejected = job.result["kept"], job.result["rejected"]
    assert len(kept) == 2 and len(rejected) == 4
    for item in kept:
        rivals = [r for r in rejected if r["request_index"] == item["request_index"]]
        assert all(item["reward_score"] >= r["reward_score"] for r in rivals)
    images = Image.objects.filter(generation__job_id=job.pk)
    assert images.count() == 6
    assert all(0 <= im.reward_score <= 1 for im in images)
    assert {im.model_version for im in images} == {base}
    assert job.result["stats"]["n_generated"] == 6


def test_retraining_chain_trains_reward_then_finetunes_then_opens_a_comparison(
    dataset, admin_user, physicians
):
    base = train_base(dataset, admin_user)
    rnd, _ = open_round(base, dataset, admin_user)
    rate_everything(rnd, physicians)
    first = retraining_round_start(
        created_by=admin_user,
        diffusion_version=base,
        params={
            "reward": REWARD,
            "finetune": WEIGHTED,
            "round": {"images_per_prompt": 1, **SAMPLING},
        },
        open_next_round=True,
        train_control=False,
    )
    assert first.kind == JobKind.TRAIN_REWARD

    first = run(tasks.ml_train_reward, first)
    second = run(tasks.ml_finetune, Job.objects.get(pk=first.result["next_job_id"]))
    third = run(
        tasks.ml_generate_round, Job.objects.get(pk=second.result["next_job_id"])
    )

    chain = job_chain(job=third)
    assert [j.pk for j in chain] == [first.pk, second.pk, third.pk]
    assert all(j.status == JobStatus.SUCCEEDED for j in chain)
    reward = ModelVersion.objects.get(pk=first.result["model_version_id"])
    new = ModelVersion.objects.get(pk=second.result["model_version_id"])
    assert second.params["reward_version_id"] == reward.pk
    assert new.parent == base
    next_round = Round.objects.get(pk=third.result["round_id"])
    assert next_round.status == RoundStatus.RATING
    assert (next_round.model_version, next_round.compare_model_version) == (new, base)
    assert next_round.settings["prompts"] == [list(p) for p in PROMPTS]
    # One image per prompt for the new version, its parent and, by default,
    # the parent best-of-N by the run's reward model.
    assert next_round.items.count() == 6
    assert next_round.comparison.best_of_n == DEFAULT_BEST_OF_N
    assert next_round.comparison.candidate == new
    assert next_round.comparison.control is None
    new.refresh_from_db()
    assert new.gate == GateStatus.PENDING
    # Running a finished step's body again creates no second next step.
    again = reward_model_train_run(first, lambda *_: None)
    assert again["next_job_id"] == second.pk
    assert Job.objects.filter(kind=JobKind.FINETUNE).count() == 1
    (root,) = model_version_tree(kind=ModelKind.DIFFUSION)
    assert root.version == base and [c.version for c in root.children] == [new]


def test_retraining_trains_its_control_and_rates_three_arms_on_the_same_seeds(
    dataset, admin_user, physicians
):
    base = train_base(dataset, admin_user)
    rnd, _ = open_round(base, dataset, admin_user)
    rate_everything(rnd, physicians)
    first = retraining_round_start(
        created_by=admin_user,
        diffusion_version=base,
        params={
            "reward": REWARD,
            "finetune": {**FINETUNE, "objective": "kto", "kto_beta": 100.0},
            "round": {"images_per_prompt": 2, "best_of_n": 2, **SAMPLING},
        },
        open_next_round=True,
    )

    first = run(tasks.ml_train_reward, first)
    # The fine-tune and its control are queued together, so that a worker
    # running two jobs trains them side by side.
    candidate_id, control_id = first.result["next_job_ids"]
    assert first.result["next_job_id"] == candidate_id
    queued = Job.objects.in_bulk([candidate_id, control_id])
    assert {j.status for j in queued.values()} == {JobStatus.QUEUED}
    assert queued[control_id].params["chain"]["step"] == "control"
    # An image of the parent made meanwhile is in neither pool: both train on
    # the images fixed when they were queued.
    later = create_image(
        picture=PILImage.new("RGB", (16, 16)),
        prompt=PROMPTS[0][0],
        modality=PROMPTS[0][1],
        model_version=base,
        generation={"seed": 99},
    )
    # The control may finish first: the round waits for the new version.
    control_job = run(tasks.ml_finetune, queued[control_id])
    assert control_job.status == JobStatus.SUCCEEDED
    assert control_job.result["next_job_id"] is None
    assert not Job.objects.filter(params__chain__step="generate_round").exists()
    candidate_job = run(tasks.ml_finetune, queued[candidate_id])
    round_job = run(
        tasks.ml_generate_round,
        Job.objects.get(pk=candidate_job.result["next_job_id"]),
    )
    # Asked again (a retried body), either one finds the same round.
    assert (
        chains.chain_next_after_finetune(
            job=control_job, new_version=ModelVersion.objects.get(job=control_job)
        ).pk
        == round_job.pk
    )

    assert round_job.status == JobStatus.SUCCEEDED
    candidate = ModelVersion.objects.get(job=candidate_job)
    control = ModelVersion.objects.get(job=control_job)
    assert candidate.params["objective"] == "kto" and not candidate.is_control
    assert candidate.metrics["objective"]["reference"] == "frozen_copy"
    assert control.is_control and control.params["objective"] == "none"
    assert control.parent == base and control.rating_count == 0
    assert "kto_beta" not in control.params
    # Same images, steps and schedule: only the feedback differs.
    assert control.metrics["steps"] == candidate.metrics["steps"]
    assert control.metrics["n_samples"] == candidate.metrics["n_samples"]
    pools = [
        json.loads((job_dir(job=j) / "inputs_summary.json").read_text())
        for j in (candidate_job, control_job)
    ]
    assert pools[0]["pool_image_ids"] == pools[1]["pool_image_ids"]
    assert later.pk not in pools[0]["pool_image_ids"]
    assert "drift" in candidate.metrics and candidate.metrics["drift_baseline"]
    comparison = Comparison.objects.get(round_id=round_job.result["round_id"])
    assert (comparison.candidate, comparison.parent, comparison.control) == (
        candidate,
        base,
        control,
    )
    assert comparison.best_of_n == 2
    images = Image.objects.filter(generated_for_round=comparison.round)
    by_arm: dict[str, set] = {}
    for image in images:
        arm = image.generation["arm"]
        by_arm.setdefault(arm, set()).add(
            (image.prompt, image.generation["request_seed"])
        )
    assert set(by_arm) == {"candidate", "parent", "control", "best_of_n"}
    assert len({frozenset(seeds) for seeds in by_arm.values()}) == 1
    assert len(by_arm["parent"]) == len(PROMPTS) * 2
    assert {
        im.model_version for im in images if im.generation["arm"] == "best_of_n"
    } == {base}
    titles = [j.title for j in job_chain(job=round_job)]
    assert titles[1] == "KTO fine-tune (per-image judgements)"
    assert titles[2] == "Control fine-tune (same images, no feedback)"
    assert titles[3] == "Comparison round"


def test_a_finetune_whose_worker_died_resumes_on_the_same_samples_and_finishes_once(
    dataset, admin_user, physicians, monkeypatch, django_capture_on_commit_callbacks
):
    base, rnd, reward = rated_base(dataset, admin_user, physicians)
    job = finetune_start(
        diffusion_version=base,
        reward_version=reward,
        created_by=admin_user,
        params={**FINETUNE, "objective": "filtered"},
    )
    _die_at_step(monkeypatch, 3)
    with pytest.raises(WorkerKilled):
        tasks.ml_finetune(job.pk)
    weights = (job_dir(job=job) / "weights.csv").read_text()
    monkeypatch.setattr(tasks, "job_progress", REAL_PROGRESS)
    _worker_goes_silent(job, django_capture_on_commit_callbacks)

    job = run(tasks.ml_finetune, job)

    assert job.status == JobStatus.SUCCEEDED and job.attempts == 2
    assert job.result["resumed_from_step"] == 2 and job.result["steps"] == 4
    assert (job_dir(job=job) / "weights.csv").read_text() == weights
    assert ModelVersion.objects.filter(parent=base).count() == 1


def test_a_dpo_fine_tune_trains_on_each_physicians_pairs_without_a_reward_model(
    dataset, admin_user, physicians
):
    base, rnd, _ = rated_base(dataset, admin_user, physicians)
    job = finetune_start(
        diffusion_version=base,
        reward_version=None,
        created_by=admin_user,
        params={**FINETUNE, "objective": "dpo", "dpo_beta": 50.0},
    )

    job = run(tasks.ml_finetune, job)

    assert job.status == JobStatus.SUCCEEDED, job.error
    version = ModelVersion.objects.get(job=job)
    pairs = (job_dir(job=job) / "pairs.csv").read_text().splitlines()
    assert pairs[0] == "chosen_path,rejected_path,Text,modality,weight"
    assert version.metrics["n_pairs"] == len(pairs) - 1 > 0
    assert version.metrics["objective"]["reference"] == "frozen_copy"
    assert version.params["objective"] == "dpo"
    assert version.params["reward_version_id"] is None
    # Every pair is one physician's two ratings of one prompt in one round.
    by_path = {im.file.path: im for im in Image.objects.filter(generated_for_round=rnd)}
    for line in pairs[1:]:
        chosen, rejected = (by_path[p] for p in line.split(",")[:2])
        assert chosen.prompt == rejected.prompt
        shared = set(Rating.objects.filter(image=chosen).values_list("rater", "score"))
        other = dict(
            Rating.objects.filter(image=rejected).values_list("rater", "score")
        )
        assert any(rater in other and score > other[rater] for rater, score in shared)
    paired = {by_path[p] for line in pairs[1:] for p in line.split(",")[:2]}
    assert (
        version.rating_count
        == Rating.objects.filter(
            image__in=paired, retracted_at=None, is_repeat=False
        ).count()
    )


def test_an_objective_that_has_nothing_to_learn_from_fails_with_the_reason(
    dataset, admin_user, make_user
):
    base = train_base(dataset, admin_user)
    rnd, _ = open_round(base, dataset, admin_user)
    rater = make_user()
    while (assignment := assignment_next(round=rnd, rater=rater)) is not None:
        rating_submit(
            round=rnd, rater=rater, image=assignment.round_image.image, score=2
        )
    job = run(
        tasks.ml_finetune,
        finetune_start(
            diffusion_version=base,
            reward_version=None,
            created_by=admin_user,
            params={**FINETUNE, "objective": "dpo"},
        ),
    )
    assert job.status == JobStatus.FAILED
    assert "no physician rated two images of one prompt differently" in job.error
    assert not ModelVersion.objects.filter(parent=base).exists()


def test_a_base_trained_from_a_versions_folder_records_that_version_as_parent(
    dataset, admin_user
):
    first = train_base(dataset, admin_user)
    second = train_base(dataset, admin_user, model_path=first.path, name="continued")

    assert second.parent == first and second.name == "continued"
    (root,) = model_version_tree(kind=ModelKind.DIFFUSION)
    assert [c.version for c in root.children] == [second]
    # A base is where fine-tunes start: the newest one is generation's default.
    assert default_diffusion_version() == second
