"""The ML API: who may call what, the jobs each start queues, and what a
generate job hands back (results, images, zip with manifests)."""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

from annotations.models import Role, Round, RoundStatus
from annotations.rating.serving import assignment_next
from annotations.rating.submit import rating_submit
from annotations.services.generation import generated_image_create
from models_ml.engine.recipes import recipe_for
from models_ml.models import (
    GateStatus,
    Job,
    JobKind,
    JobStatus,
    ModelKind,
    ModelVersion,
)
from models_ml.services.jobs import job_create
from models_ml.services.params import DEFAULT_OBJECTIVE
from tests.factories import DatasetFactory, ImageFactory
from tests.models_ml import test_ml_jobs

from .conftest import ROLES

pytestmark = pytest.mark.django_db

DENIED_ANON = "anon"
sent = test_ml_jobs.sent


@dataclass(frozen=True)
class World:
    dataset: Any
    base: Any
    child: Any
    reward: Any
    folder: Path
    chain_job: Any
    others_job: Any
    others_image: Any


def _model_folder(root: Path, name: str, text: str = '{"backend": "tiny"}') -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "medrlhf_model.json").write_text(text)
    return folder


def _generated(job: Job, version: ModelVersion, *, kept: bool, score: float, seed: int):
    return generated_image_create(
        picture=PILImage.new("L", (8, 8), color=int(score * 255)),
        prompt="CT: a slice",
        modality="ct",
        model_version=version,
        reward_score=score,
        generation={
            "seed": seed,
            "steps": 2,
            "guidance": 3.0,
            "scheduler": "ddim",
            "job_id": job.pk,
            "reward_version_id": job.params.get("reward_version_id"),
            "kept": kept,
            "request_index": 0,
            "attempt": seed,
            "uncertainty": 0.1,
            "engine_version": "tiny-1",
        },
    )


@pytest.fixture
def world(settings, make_user, make_round) -> World:
    dataset = DatasetFactory(name="chest")
    for i in range(4):
        ImageFactory(dataset=dataset, modality="ct" if i % 2 else "fundus")
    root = Path(settings.MODELS_DIR)
    base = ModelVersion.objects.create(
        name="base", kind=ModelKind.DIFFUSION, dataset=dataset, path=str(root / "b")
    )
    child = ModelVersion.objects.create(
        name="child", kind=ModelKind.DIFFUSION, parent=base, path=str(root / "c")
    )
    reward = ModelVersion.objects.create(
        name="reward", kind=ModelKind.REWARD, path=str(root / "r")
    )
    rater = make_user(Role.PHYSICIAN)
    rnd = make_round(2)
    while (a := assignment_next(round=rnd, rater=rater)) is not None:
        rating_submit(round=rnd, rater=rater, image=a.round_image.image, score=2)
    chain_job = Job.objects.create(
        kind=JobKind.TRAIN_REWARD, params={"chain": {"id": "abc123", "round": None}}
    )
    others_job = job_create(
        kind=JobKind.GENERATE,
        params={"reward_version_id": reward.pk},
        created_by=make_user(Role.PHYSICIAN),
        enqueue=False,
    )
    Job.objects.filter(pk=others_job.pk).update(status=JobStatus.SUCCEEDED)
    others_job.refresh_from_db()
    image = _generated(others_job, base, kept=True, score=0.9, seed=1)
    return World(
        dataset=dataset,
        base=base,
        child=child,
        reward=reward,
        folder=_model_folder(root, "kept"),
        chain_job=chain_job,
        others_job=others_job,
        others_image=image,
    )


STAFF_READ = (DENIED_ANON, 403, 200, 200)
ADMIN_START = (DENIED_ANON, 403, 403, 202)
CREATOR_OR_ADMIN = (DENIED_ANON, 404, 404, 200)
CASES = [
    ("get", "/api/model-versions/", None, STAFF_READ),
    ("get", "/api/model-versions/{w.base.pk}/", None, STAFF_READ),
    ("get", "/api/model-versions/tree/", None, STAFF_READ),
    (
        "post",
        "/api/model-versions/register/",
        {"name": "kept", "kind": "diffusion", "path": "{w.folder}"},
        (DENIED_ANON, 403, 403, 201),
    ),
    ("post", "/api/datasets/{w.dataset.pk}/train-base/", {}, ADMIN_START),
    (
        "post",
        "/api/rounds/generate/",
        {
            "name": "g",
            "model_version": "{w.base.pk}",
            "prompts_text": "CT: a slice",
            "images_per_prompt": 1,
        },
        ADMIN_START,
    ),
    (
        "post",
        "/api/retraining/",
        {"diffusion_version": "{w.base.pk}", "open_next_round": False},
        ADMIN_START,
    ),
    ("get", "/api/retraining/abc123/", None, STAFF_READ),
    ("post", "/api/reward-models/train/", {}, ADMIN_START),
    (
        "post",
        "/api/model-versions/{w.base.pk}/finetune/",
        {"reward_version": "{w.reward.pk}"},
        ADMIN_START,
    ),
    (
        "post",
        "/api/generate/",
        {"prompt": "CT: a slice", "modality": "CT"},
        (DENIED_ANON, 202, 202, 202),
    ),
    ("get", "/api/generate/{w.others_job.pk}/", None, CREATOR_OR_ADMIN),
    (
        "get",
        "/api/generate/{w.others_job.pk}/images/{w.others_image.uid}/",
        None,
        CREATOR_OR_ADMIN,
    ),
    ("get", "/api/generate/{w.others_job.pk}/download.zip", None, CREATOR_OR_ADMIN),
]


def _params() -> list[Any]:
    return [
        pytest.param(method, path, body, role, status, id=f"{method} {path} as {role}")
        for method, path, body, expected in CASES
        for role, status in zip(ROLES, expected, strict=True)
    ]


@pytest.mark.parametrize(("method", "path", "body", "role", "expected"), _params())
def test_ml_endpoint_answers_each_role_as_its_permissions_say(
    client_as, world, method, path, body, role, expected
):
    client = client_as(role)
    url = path.format(w=world)
    data = {
        k: v.format(w=world) if isinstance(v, str) else v
        for k, v in (body or {}).items()
    }
    response = getattr(client, method)(url, data, format="json")
    if expected == DENIED_ANON:
        assert response.status_code in (401, 403)
    else:
        assert response.status_code == expected, response.content[:300]


# --- model versions ---------------------------------------------------------------


def test_version_detail_shows_parent_children_dataset_rounds_and_files(
    client_as, world
):
    folder = Path(world.base.path)
    folder.mkdir()
    (folder / "medrlhf_model.json").write_text("{}")
    rnd = Round.objects.first()
    world.base.trained_on_rounds.add(rnd)
    body = client_as(Role.RESEARCHER).get(f"/api/model-versions/{world.base.pk}/")
    body = body.json()
    assert body["parent"] is None and body["kind"] == "diffusion"
    assert body["children"] == [{"id": world.child.pk, "name": "child"}]
    assert body["dataset"] == {"id": world.dataset.pk, "name": "chest"}
    assert body["rounds"] == [{"id": rnd.pk, "name": rnd.name, "status": rnd.status}]
    assert body["files"] == [{"name": "medrlhf_model.json", "size": 2}]
    child = client_as(Role.ADMIN).get(f"/api/model-versions/{world.child.pk}/").json()
    assert child["parent"] == {"id": world.base.pk, "name": "base"}


def test_tree_nests_children_under_their_parent(client_as, world):
    body = client_as(Role.ADMIN).get("/api/model-versions/tree/?kind=diffusion")
    roots = body.json()
    assert [r["name"] for r in roots] == ["base"]
    assert [c["name"] for c in roots[0]["children"]] == ["child"]
    assert roots[0]["children"][0]["children"] == []


def test_register_refuses_a_folder_outside_the_model_roots_naming_the_path(
    client_as, world, tmp_path
):
    outside = _model_folder(tmp_path, "elsewhere")
    response = client_as(Role.ADMIN).post(
        "/api/model-versions/register/",
        {"name": "x", "kind": "diffusion", "path": str(outside)},
        format="json",
    )
    assert response.status_code == 400
    assert "not under MODELS_DIR" in response.json()["path"][0]


def test_register_names_a_folder_without_model_files(client_as, world, settings):
    empty = Path(settings.MODELS_DIR) / "empty"
    empty.mkdir()
    response = client_as(Role.ADMIN).post(
        "/api/model-versions/register/",
        {"name": "x", "kind": "reward", "path": str(empty)},
        format="json",
    )
    assert response.status_code == 400
    assert "not a reward model folder" in response.json()["detail"]


# --- jobs the starts queue ------------------------------------------------------------


def test_train_base_queues_the_job_on_the_ml_queue(
    client_as, world, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_as(Role.ADMIN).post(
            f"/api/datasets/{world.dataset.pk}/train-base/",
            {"params": {"max_steps": 3}},
            format="json",
        )
    assert response.status_code == 202
    job = Job.objects.get(pk=response.json()["job"])
    assert job.kind == JobKind.TRAIN_BASE and job.params["train"] == {"max_steps": 3}
    assert response.json()["url"] == f"/api/jobs/{job.pk}/"
    assert sent == [("models_ml.tasks.ml_train_base", "ml")]


def test_train_base_names_an_unknown_parameter(client_as, world):
    response = client_as(Role.ADMIN).post(
        f"/api/datasets/{world.dataset.pk}/train-base/",
        {"params": {"max_stepz": 3}},
        format="json",
    )
    assert response.status_code == 400
    # Named under the field that holds it, as every typed setting is.
    assert response.json()["params"] == {"max_stepz": "not a setting here"}


def test_round_generate_parses_pasted_prompts_and_opens_a_generating_round(
    client_as, world, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_as(Role.ADMIN).post(
            "/api/rounds/generate/",
            {
                "name": "r2",
                "model_version": world.child.pk,
                "compare_model_version": world.base.pk,
                "prompts_text": "CT: axial slice\n\nretina with disc",
                "modality": "fundus",
                "images_per_prompt": 2,
                "raters_per_image": 2,
                "control_share": 0.2,
                "seed": 5,
            },
            format="json",
        )
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["job"])
    assert job.kind == JobKind.GENERATE_ROUND and job.params["seed"] == 5
    assert job.params["prompts"] == [
        ["CT: axial slice", "ct"],
        ["retina with disc", "fundus"],
    ]
    assert job.params["compare_model_version_id"] == world.base.pk
    assert len(job.params["control_pool_ids"]) == 4
    rnd = Round.objects.get(pk=response.json()["round"])
    assert rnd.status == RoundStatus.GENERATING and rnd.raters_per_image == 2
    assert sent == [("models_ml.tasks.ml_generate_round", "ml")]


def _generate(client: Any, world: World, **fields: Any) -> Any:
    body = {
        "name": "served",
        "model_version": world.base.pk,
        "prompts_text": "CT: axial slice",
        "images_per_prompt": 10,
        **fields,
    }
    return client.post("/api/rounds/generate/", body, format="json")


def test_round_generate_takes_agreement_repeats_and_uncertainty_serving(
    client_as, world
):
    response = _generate(
        client_as(Role.ADMIN),
        world,
        agreement_share=0.2,
        repeat_share=0.1,
        serving_policy="uncertainty",
        reward_model_version=world.reward.pk,
    )
    assert response.status_code == 202, response.content
    rnd = Round.objects.get(pk=response.json()["round"])
    assert (rnd.agreement_share, rnd.repeat_share) == (0.2, 0.1)
    assert rnd.serving_policy == "uncertainty"
    assert rnd.reward_model_version == world.reward
    # Scored once the job has generated the images, not before.
    assert not Job.objects.filter(kind=JobKind.SCORE).exists()


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"agreement_share": 1.5}, "agreement_share"),
        ({"repeat_share": 0.6}, "repeat_share"),
        ({"serving_policy": "loudest"}, "serving_policy"),
        ({"serving_policy": "uncertainty"}, "reward_model_version"),
    ],
)
def test_round_generate_refuses_bad_serving_settings_naming_the_field(
    client_as, world, fields, bad_field
):
    before = Round.objects.count()
    response = _generate(client_as(Role.ADMIN), world, **fields)
    assert response.status_code == 400
    assert bad_field in response.json(), response.json()
    assert Round.objects.count() == before


def test_round_generate_refuses_a_diffusion_model_as_reward_model(client_as, world):
    response = _generate(
        client_as(Role.ADMIN), world, reward_model_version=world.base.pk
    )
    assert response.status_code == 400
    assert f"no reward model version with id {world.base.pk}" in str(response.json())


def test_round_generate_samples_prompts_per_modality_from_the_dataset(client_as, world):
    response = client_as(Role.ADMIN).post(
        "/api/rounds/generate/",
        {
            "name": "sampled",
            "model_version": world.base.pk,
            "sample_from_dataset": {
                "dataset": world.dataset.pk,
                "per_modality": 1,
                "modalities": ["CT", "Fundus"],
            },
            "images_per_prompt": 1,
            "seed": 1,
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    prompts = Job.objects.get(pk=response.json()["job"]).params["prompts"]
    assert sorted(m for _, m in prompts) == ["ct", "fundus"]


def test_round_generate_wants_exactly_one_source_of_prompts(client_as, world):
    response = client_as(Role.ADMIN).post(
        "/api/rounds/generate/",
        {
            "name": "x",
            "model_version": world.base.pk,
            "prompts": [{"prompt": "a", "modality": "ct"}],
            "prompts_text": "CT: b",
            "images_per_prompt": 1,
        },
        format="json",
    )
    assert response.status_code == 400 and "exactly one" in str(response.json())


def test_round_generate_names_a_pasted_line_without_modality(client_as, world):
    response = client_as(Role.ADMIN).post(
        "/api/rounds/generate/",
        {
            "name": "x",
            "model_version": world.base.pk,
            "prompts_text": "CT: fine\nno modality here",
            "images_per_prompt": 1,
        },
        format="json",
    )
    assert response.status_code == 400
    assert "line 2" in response.json()["prompts_text"][0]


def test_round_comparing_a_version_with_itself_is_a_domain_error(client_as, world):
    response = client_as(Role.ADMIN).post(
        "/api/rounds/generate/",
        {
            "name": "x",
            "model_version": world.base.pk,
            "compare_model_version": world.base.pk,
            "prompts_text": "CT: a",
            "images_per_prompt": 1,
        },
        format="json",
    )
    assert response.status_code == 400 and "itself" in response.json()["detail"]


def test_retraining_queues_reward_training_and_its_run_lists_the_jobs(
    client_as, world, sent, django_capture_on_commit_callbacks
):
    admin = client_as(Role.ADMIN)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(
            "/api/retraining/",
            {
                "diffusion_version": world.base.pk,
                "finetune": {"max_steps": 2},
                "round": {"prompts": [["CT: a", "ct"]], "images_per_prompt": 1},
            },
            format="json",
        )
    assert response.status_code == 202, response.content
    body = response.json()
    job = Job.objects.get(pk=body["job"])
    assert (
        job.kind == JobKind.TRAIN_REWARD and job.params["chain"]["id"] == body["chain"]
    )
    assert sent == [("models_ml.tasks.ml_train_reward", "ml")]
    run = client_as(Role.RESEARCHER).get(body["chain_url"]).json()
    assert run["steps"] == ["train_reward", "finetune", "control", "generate_round"]
    assert run["comparison"] is None
    assert run["status"] == "queued" and [j["id"] for j in run["jobs"]] == [job.pk]
    assert admin.get("/api/retraining/nosuchrun/").status_code == 404


def test_reward_training_of_chosen_rounds_and_a_finetune_queue_their_jobs(
    client_as, world
):
    admin = client_as(Role.ADMIN)
    rnd = Round.objects.first()
    reward = admin.post(
        "/api/reward-models/train/", {"rounds": [rnd.pk]}, format="json"
    ).json()
    assert Job.objects.get(pk=reward["job"]).params["round_ids"] == [rnd.pk]
    tune = admin.post(
        f"/api/model-versions/{world.child.pk}/finetune/",
        {"reward_version": world.reward.pk, "params": {"beta": 2.0}},
        format="json",
    ).json()
    params = Job.objects.get(pk=tune["job"]).params
    assert params["diffusion_version_id"] == world.child.pk
    assert (params["finetune"]["beta"], params["finetune"]["objective"]) == (
        2.0,
        DEFAULT_OBJECTIVE,
    )
    assert params["finetune"]["max_steps"] == recipe_for(DEFAULT_OBJECTIVE)["max_steps"]


def test_finetune_refuses_a_diffusion_version_as_reward_model(client_as, world):
    response = client_as(Role.ADMIN).post(
        f"/api/model-versions/{world.base.pk}/finetune/",
        {"reward_version": world.child.pk},
        format="json",
    )
    assert response.status_code == 400 and "reward_version" in response.json()


# --- generate ---------------------------------------------------------------------


def test_a_physician_generates_with_the_latest_promoted_version_by_default(
    client_as, world, sent, django_capture_on_commit_callbacks
):
    # The child is a fine-tune nobody compared yet: the base is the default
    # until the child passes the promotion gate.
    world.child.gate = GateStatus.PROMOTED
    world.child.save()
    client = client_as(Role.PHYSICIAN)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/generate/",
            {"prompt": "CT: a slice", "modality": "CT", "count": 2, "seed": 3},
            format="json",
        )
    assert response.status_code == 202
    job = Job.objects.get(pk=response.json()["job"])
    assert job.created_by == client.user and job.kind == JobKind.GENERATE
    assert job.params["model_version_id"] == world.child.pk
    assert job.params["reward_version_id"] == world.reward.pk
    assert (job.params["count"], job.params["modality"]) == (2, "ct")
    assert sent == [("models_ml.tasks.ml_generate", "ml")]
    assert client.get(response.json()["result_url"]).status_code == 200


def test_generate_names_a_bad_field(client_as, world):
    response = client_as(Role.RESEARCHER).post(
        "/api/generate/",
        {"prompt": "CT: a", "modality": "CT", "mode": "worst_of_n", "count": 0},
        format="json",
    )
    assert response.status_code == 400
    assert {"mode", "count"} <= set(response.json())


def test_generate_defaults_to_the_base_until_a_fine_tune_is_promoted(client_as, world):
    client = client_as(Role.PHYSICIAN)
    response = client.post(
        "/api/generate/", {"prompt": "CT: a", "modality": "CT"}, format="json"
    )
    assert Job.objects.get(pk=response.json()["job"]).params["model_version_id"] == (
        world.base.pk
    )
    world.child.gate = GateStatus.FAILED
    world.child.save()
    newer_base = ModelVersion.objects.create(
        name="another base", kind=ModelKind.DIFFUSION, path="/b2"
    )
    response = client.post(
        "/api/generate/", {"prompt": "CT: a", "modality": "CT"}, format="json"
    )
    assert Job.objects.get(pk=response.json()["job"]).params["model_version_id"] == (
        newer_base.pk
    )


def test_generate_without_a_reward_model_samples_unfiltered(client_as, world):
    world.reward.delete()
    response = client_as(Role.ADMIN).post(
        "/api/generate/", {"prompt": "CT: a", "modality": "CT"}, format="json"
    )
    assert response.status_code == 202
    params = Job.objects.get(pk=response.json()["job"]).params
    assert (params["mode"], params["reward_version_id"], params["n"]) == (
        "none",
        None,
        1,
    )


def test_generate_can_ask_for_no_filter_beside_a_reward_model(client_as, world):
    response = client_as(Role.ADMIN).post(
        "/api/generate/",
        {"prompt": "CT: a", "modality": "CT", "mode": "none"},
        format="json",
    )
    params = Job.objects.get(pk=response.json()["job"]).params
    assert (params["mode"], params["reward_version_id"]) == ("none", None)


def test_the_creator_sees_kept_and_rejected_images_with_scores_and_provenance(
    client_as, world
):
    owner = client_as(None, user=world.others_job.created_by)
    _generated(world.others_job, world.base, kept=False, score=0.2, seed=2)
    body = owner.get(f"/api/generate/{world.others_job.pk}/").json()
    assert [i["reward_score"] for i in body["kept"]] == [pytest.approx(0.9)]
    assert [i["reward_score"] for i in body["rejected"]] == [pytest.approx(0.2)]
    kept = body["kept"][0]
    assert kept["seed"] == 1 and kept["model_version_name"] == "base"
    assert kept["reward_version_id"] == world.reward.pk
    assert owner.get(kept["file_url"]).status_code == 200
    other_uid = body["rejected"][0]["uid"]
    assert other_uid != kept["uid"]


def _zip(response: Any) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def test_download_zips_kept_and_rejected_folders_with_csv_and_json_manifests(
    client_as, world
):
    _generated(world.others_job, world.base, kept=False, score=0.2, seed=2)
    _generated(world.others_job, world.base, kept=True, score=0.7, seed=3)
    response = client_as(Role.ADMIN).get(
        f"/api/generate/{world.others_job.pk}/download.zip"
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    archive = _zip(response)
    pngs = [n for n in archive.namelist() if n.endswith(".png")]
    assert pngs == [
        "kept/0000_ct_seed1.png",
        "kept/0001_ct_seed3.png",
        "rejected/0002_ct_seed2.png",
    ]
    manifest = json.loads(archive.read("manifest.json"))
    listing = manifest["images"]
    rows = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    assert [r["file_name"] for r in rows] == [r["file_name"] for r in listing] == pngs
    assert [r["seed"] for r in listing] == [1, 3, 2]
    assert [r["kept"] for r in listing] == [True, True, False]
    assert all(r["job_id"] == world.others_job.pk for r in listing)
    assert manifest["job_id"] == world.others_job.pk
    assert rows[0]["model_version_name"] == "base" and rows[0]["steps"] == "2"
    with archive.open(pngs[0]) as handle:
        assert PILImage.open(handle).size == (8, 8)


def test_download_with_include_kept_zips_only_the_kept_folder(client_as, world):
    _generated(world.others_job, world.base, kept=False, score=0.2, seed=2)
    response = client_as(Role.ADMIN).get(
        f"/api/generate/{world.others_job.pk}/download.zip?include=kept"
    )
    archive = _zip(response)
    assert [n for n in archive.namelist() if n.endswith(".png")] == [
        "kept/0000_ct_seed1.png"
    ]
    assert json.loads(archive.read("manifest.json"))["include"] == "kept"


def test_download_names_a_bad_include_and_refuses_an_unfinished_job(client_as, world):
    admin = client_as(Role.ADMIN)
    url = f"/api/generate/{world.others_job.pk}/download.zip"
    bad = admin.get(url + "?include=best")
    assert bad.status_code == 400 and "include" in bad.json()
    Job.objects.filter(pk=world.others_job.pk).update(status=JobStatus.RUNNING)
    running = admin.get(url)
    assert running.status_code == 409
    assert "ready once it has succeeded" in running.json()["detail"]


# --- a real generate job, run in this process ---------------------------------------


@pytest.fixture
def tiny_models(world, admin_user, tmp_path):
    """A 4-step tiny base model and a reward model fitted on 6 images."""
    import torch

    from models_ml.engine.features import HandcraftedFeatures
    from models_ml.engine.reward import train_reward_model
    from models_ml.engine.reward_data import RatingRecord
    from models_ml.engine.reward_head import RewardConfig
    from models_ml.services.base_training import model_version_register
    from tests.models_ml.test_ml_jobs import train_base

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    base = train_base(world.dataset, admin_user)
    records = []
    for i in range(6):
        path = tmp_path / f"r{i}.png"
        PILImage.new("L", (16, 16), color=40 * i).save(path)
        records.append(RatingRecord(str(path), f"CT: case {i % 2}", "ct", 1 + i % 3))
    result = train_reward_model(
        records,
        config=RewardConfig(ensemble_size=1, epochs=5, n_folds=2),
        feature_extractor=HandcraftedFeatures(),
    )
    folder = result.model.save(Path(world.folder.parent) / "reward")
    reward = model_version_register(
        name="tiny reward", kind=ModelKind.REWARD, path=folder, created_by=admin_user
    )
    return base, reward


def test_a_generate_job_run_in_process_zips_what_it_kept(
    client_as, world, tiny_models, django_capture_on_commit_callbacks, sent
):
    from models_ml import tasks

    base, reward = tiny_models
    client = client_as(Role.PHYSICIAN)
    response = client.post(
        "/api/generate/",
        {
            "model_version": base.pk,
            "reward_version": reward.pk,
            "prompt": "CT: case 1",
            "modality": "CT",
            "count": 2,
            "n": 2,
            "seed": 7,
            "sampling": {"steps": 2, "device": "cpu"},
        },
        format="json",
    )
    job_id = response.json()["job"]
    tasks.ml_generate(job_id)
    job = Job.objects.get(pk=job_id)
    assert job.status == JobStatus.SUCCEEDED, job.error
    body = client.get(f"/api/generate/{job_id}/").json()
    assert (len(body["kept"]), len(body["rejected"])) == (2, 2)
    archive = _zip(client.get(body["download_url"] + "?include=kept"))
    listing = json.loads(archive.read("manifest.json"))["images"]
    assert len(listing) == 2 and {r["model_version_id"] for r in listing} == {base.pk}
    assert all(r["file_name"].startswith("kept/") for r in listing)
    assert all(0 <= r["reward_score"] <= 1 for r in listing)
