"""The whole loop over HTTP, against a real Celery worker process.

An admin, three physicians and a researcher drive the product only through
the REST API with their tokens: import the demo data as an uploaded zip,
train a base model, open a generated round, rate it, retrain (reward model,
fine-tune, comparison round), generate reward-filtered images and download
them, export the ratings.  The worker shares the test's database and broker
(SQLite file and filesystem broker, or PostgreSQL and Redis).  Every model is
tiny and every job a few steps, so the loop takes about a minute on two cores.
"""

from __future__ import annotations

import csv
import io
import time
import zipfile
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from annotations.models import Image, ImageSource, Rating, Role, Round, RoundStatus
from models_ml.models import Job, JobKind, JobStatus, ModelKind, ModelVersion
from tests.factories import UserFactory
from tests.worker import celery_worker

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery"
TRAIN = {
    "resolution": 16,
    "channels": [8, 16],
    "max_steps": 3,
    "batch_size": 2,
    "checkpointing_steps": 3,
    "lr_warmup_steps": 0,
    "device": "cpu",
}
SAMPLING = {"steps": 2, "batch_size": 8, "device": "cpu"}
REWARD = {"ensemble_size": 2, "epochs": 20, "n_folds": 2}
FINETUNE = {**TRAIN, "max_steps": 2, "checkpointing_steps": 2}
JOB_TIMEOUT_S = 180


class Client:
    """One user's view of the API: token auth, JSON in and out."""

    def __init__(self, base: str, username: str) -> None:
        self.base = base.rstrip("/")
        self.http = requests.Session()
        answer = self.http.post(
            f"{self.base}/api/auth/token/",
            json={"username": username, "password": PASSWORD},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        self.http.headers["Authorization"] = f"Token {answer.json()['token']}"

    def call(
        self, method: str, path: str, expect: int | set[int] = 200, **kw: Any
    ) -> requests.Response:
        url = path if path.startswith("http") else f"{self.base}{path}"
        answer = self.http.request(method, url, timeout=60, **kw)
        allowed = expect if isinstance(expect, set) else {expect}
        assert answer.status_code in allowed, (method, path, answer.text[:2000])
        return answer

    def get(self, path: str, **kw: Any) -> Any:
        return self.call("GET", path, **kw).json()

    def post(self, path: str, expect: int = 202, **kw: Any) -> Any:
        return self.call("POST", path, expect=expect, **kw).json()


def wait_job(admin: Client, job_id: int, log: Path) -> dict[str, Any]:
    """Poll the job as the UI does, until it finishes; it must succeed."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        job = admin.get(f"/api/jobs/{job_id}/")
        if job["is_finished"]:
            assert job["status"] == "succeeded", (job["error"], log.read_text()[-4000:])
            assert job["progress"] == 1.0 and job["attempts"] == 1
            return job
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} unfinished; worker log:\n{log.read_text()}")


def wait_training_steps(
    admin: Client, reward_job: dict[str, Any], log: Path
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A retraining run's fine-tune and control (queued together after its
    reward model) and the comparison round the second of them to finish
    queued."""
    finetune_id, control_id = reward_job["result"]["next_job_ids"]
    finetune_job = wait_job(admin, finetune_id, log)
    control_job = wait_job(admin, control_id, log)
    (round_id,) = {j["result"]["next_job_id"] for j in (finetune_job, control_job)} - {
        None
    }
    return finetune_job, control_job, wait_job(admin, round_id, log)


def wait_all_jobs(admin: Client, log: Path) -> None:
    """Until no job is queued or running (re-scorings the ratings started)."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        jobs = admin.get("/api/jobs/?limit=200")
        rows = jobs["results"] if isinstance(jobs, dict) else jobs
        if all(j["is_finished"] for j in rows):
            assert all(j["status"] == "succeeded" for j in rows), log.read_text()[
                -4000:
            ]
            return
        time.sleep(0.25)
    raise AssertionError(f"jobs unfinished; worker log:\n{log.read_text()}")


def demo_zip(folder: Path) -> bytes:
    """The demo dataset (real images from installed packages), zipped."""
    from models_ml.engine.demo import build_demo_dataset

    build_demo_dataset(folder, per_modality=1, size=32)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, str(path.relative_to(folder)))
    return buffer.getvalue()


def rate_all(
    physician: Client, round_id: int, offset: int, *, per_prompt: bool = False
) -> int:
    """Take images with next and score them until none is left; returns how
    many.  Scores vary with the image so that the reward model sees 1, 2 and 3;
    ``per_prompt``: 3, 1, 2, ... in turn within each prompt, so every
    physician's ratings of a prompt differ (DPO's pairs)."""
    rated = 0
    turn: Counter[str] = Counter()
    while True:
        served = physician.call(
            "GET", f"/api/rounds/{round_id}/next/", expect={200, 204}
        )
        if served.status_code == 204:
            return rated
        image = served.json()["image"]
        assert "source" not in image and "model_version" not in image
        score = 1 + (int(image["uid"].replace("-", ""), 16) + offset) % 3
        if per_prompt:
            score = (3, 1, 2)[turn[image["prompt"]] % 3]
            turn[image["prompt"]] += 1
        physician.post(
            "/api/ratings/",
            expect=201,
            json={
                "round": round_id,
                "image": image["uid"],
                "score": score,
                "time_taken_ms": 1500,
            },
        )
        rated += 1


def assert_version_on_disk(version: ModelVersion) -> None:
    folder = Path(version.path)
    assert folder.is_dir(), version.path
    weights = list(folder.rglob("*.safetensors"))
    assert weights, f"{version.name}: no safetensors under {folder}"
    assert not [p for p in folder.rglob("*") if p.suffix in {".bin", ".pt", ".pkl"}]
    for path in weights:
        # The safetensors header: an 8-byte length, then a JSON object.
        assert path.read_bytes()[8:9] == b"{", path


def test_the_loop_runs_over_the_api_with_a_real_worker(live_server, tmp_path):
    started = time.monotonic()
    UserFactory(username="admin1", role=Role.ADMIN)
    for name in ("dr_a", "dr_b", "dr_c"):
        UserFactory(username=name, role=Role.PHYSICIAN)
    UserFactory(username="res1", role=Role.RESEARCHER)
    log = tmp_path / "worker.log"
    archive = demo_zip(tmp_path / "demo")

    with celery_worker(log=log, concurrency=2):
        admin = Client(live_server.url, "admin1")
        doctors = [Client(live_server.url, n) for n in ("dr_a", "dr_b", "dr_c")]
        researcher = Client(live_server.url, "res1")

        # 1. Import: the demo zip, uploaded.
        queued = admin.post(
            "/api/datasets/import/",
            data={"name": "demo"},
            files={"file": ("demo.zip", archive, "application/zip")},
        )
        job = wait_job(admin, queued["job"], log)
        dataset_id = job["result"]["dataset_id"]
        dataset = admin.get(f"/api/datasets/{dataset_id}/")
        assert dataset["image_count"] >= 12
        assert {"ct", "fundus", "chest_xray"} <= set(dataset["modalities"])

        # 2. A tiny base model on the dataset's real images.
        queued = admin.post(
            f"/api/datasets/{dataset_id}/train-base/",
            json={"params": {**TRAIN, "name": "base"}},
        )
        job = wait_job(admin, queued["job"], log)
        base_id = job["result"]["model_version_id"]

        # 3. A round the worker generates: 2 prompts x 2 images + 1 control.
        queued = admin.post(
            "/api/rounds/generate/",
            json={
                "name": "round 1",
                "model_version": base_id,
                "sample_from_dataset": {
                    "dataset": dataset_id,
                    "per_modality": 1,
                    "modalities": ["CT", "Chest X-ray"],
                },
                "images_per_prompt": 2,
                "raters_per_image": 2,
                "control_share": 0.2,
                "seed": 5,
                "sampling": SAMPLING,
            },
        )
        round_id = queued["round"]
        job = wait_job(admin, queued["job"], log)
        assert job["result"] == {
            "round_id": round_id,
            "round_status": "rating",
            "generated": 4,
            "controls": 1,
            # A random-order round queues no scoring job.
            "score_job_id": None,
        }

        # 4. Three physicians rate until nothing is left: 5 items x 2 raters.
        rated = [rate_all(d, round_id, offset) for offset, d in enumerate(doctors)]
        assert sum(rated) == 10
        progress = admin.get(f"/api/rounds/{round_id}/")["progress"]
        assert progress["done"] == progress["needed"] == 10

        # 5. Retraining: reward model -> fine-tune (KTO) -> its control ->
        # comparison round of new version, parent and control.
        queued = admin.post(
            "/api/retraining/",
            json={
                "diffusion_version": base_id,
                "reward": REWARD,
                "finetune": {**FINETUNE, "name": "base + reward", "objective": "kto"},
                # Served most informative first, re-scored every 2 ratings.
                # The three-arm round (no parent best-of-N arm, which runs
                # by default: test_lineage covers it).
                "round": {
                    "images_per_prompt": 1,
                    "best_of_n": 0,
                    "seed": 7,
                    "serving_policy": "uncertainty",
                    "rescore_every": 2,
                    **SAMPLING,
                },
            },
        )
        reward_job = wait_job(admin, queued["job"], log)
        finetune_job, control_job, compare_job = wait_training_steps(
            admin, reward_job, log
        )
        # The worker runs two jobs at once, as the embedded one does: the
        # fine-tune and its control trained side by side.
        when = {
            (name, key): datetime.fromisoformat(job[key])
            for name, job in (("finetune", finetune_job), ("control", control_job))
            for key in ("started_at", "finished_at")
        }
        assert when["control", "started_at"] < when["finetune", "finished_at"]
        assert when["finetune", "started_at"] < when["control", "finished_at"]
        compare_id = compare_job["result"]["round_id"]
        first_score = admin.get(f"/api/rounds/{compare_id}/")["settings"]
        wait_job(admin, first_score["score_job_id"], log)
        run = researcher.get(queued["chain_url"])
        assert run["status"] == "succeeded"
        assert run["steps"] == ["train_reward", "finetune", "control", "generate_round"]
        assert [j["kind"] for j in run["jobs"]] == [
            "train_reward",
            "finetune",
            "finetune",
            "generate_round",
        ]
        assert run["comparison"]["verdict"]["decided"] is False
        reward_id = reward_job["result"]["model_version_id"]
        new_id = finetune_job["result"]["model_version_id"]
        control_id = control_job["result"]["model_version_id"]

        # 6. Reward-filtered generation (best of 2) by a physician, downloaded;
        # the new version awaits its verdict, so the base is the default.
        queued = doctors[0].post(
            "/api/generate/",
            json={
                "prompt": "CT: axial slice of the head",
                "modality": "CT",
                "count": 2,
                "n": 2,
                "seed": 3,
                "sampling": SAMPLING,
            },
        )
        wait_job(admin, queued["job"], log)
        generated = doctors[0].get(queued["result_url"])
        download = doctors[0].call("GET", generated["download_url"])

        # 7. The researcher's ratings export and lineage view.
        export = researcher.call("GET", "/api/export/ratings.csv").text
        new_detail = researcher.get(f"/api/model-versions/{new_id}/")

        # 8. Two ratings of the comparison round: the worker trains a reward
        # model on all 12 ratings and scores the round with it.
        for _ in range(2):
            served = doctors[1].get(f"/api/rounds/{compare_id}/next/")
            doctors[1].post(
                "/api/ratings/",
                expect=201,
                json={"round": compare_id, "image": served["image"]["uid"], "score": 3},
            )
        rescore = admin.get(f"/api/rounds/{compare_id}/")["settings"]["rescore"]
        assert (rescore["at"], rescore["count"]) == (2, 1)
        rescore_job = wait_job(admin, rescore["job_id"], log)
        wait_job(admin, rescore_job["result"]["next_job_id"], log)
        compare_detail = admin.get(f"/api/rounds/{compare_id}/")

        # 9. The rest of the comparison round is rated; once every job is
        # done the admin closes it, and the gate records its verdict.
        rated_later = sum(
            rate_all(d, compare_id, offset) for offset, d in enumerate(doctors)
        )
        wait_all_jobs(admin, log)
        (comparison,) = researcher.get("/api/comparisons/")
        provisional = comparison["verdict"]
        admin.call("POST", f"/api/rounds/{compare_id}/close/", expect=200)
        decided = researcher.get(f"/api/comparisons/{comparison['id']}/")
        tree = researcher.get("/api/model-versions/tree/?kind=diffusion")
    elapsed = time.monotonic() - started

    # Every job ran once, in the worker, to the end; the re-scorings that the
    # last ratings started follow in pairs.
    jobs = Job.objects.order_by("pk")
    kinds = [j.kind for j in jobs]
    assert kinds[:11] == [
        JobKind.IMPORT,
        JobKind.TRAIN_BASE,
        JobKind.GENERATE_ROUND,
        JobKind.TRAIN_REWARD,
        JobKind.FINETUNE,
        JobKind.FINETUNE,
        JobKind.GENERATE_ROUND,
        JobKind.SCORE,
        JobKind.GENERATE,
        JobKind.TRAIN_REWARD,
        JobKind.SCORE,
    ]
    assert kinds[11:] == [JobKind.TRAIN_REWARD, JobKind.SCORE] * (len(kinds[11:]) // 2)
    for job in jobs:
        assert job.status == JobStatus.SUCCEEDED and job.progress == 1.0
        assert job.attempts == 1 and job.celery_id and job.finished_at

    # Lineage: base -> fine-tuned child; the reward model knows its ratings.
    base = ModelVersion.objects.get(pk=base_id)
    reward = ModelVersion.objects.get(pk=reward_id)
    new = ModelVersion.objects.get(pk=new_id)
    assert base.kind == ModelKind.DIFFUSION and base.parent is None
    assert base.dataset_id == dataset_id and base.metrics["steps"] == 3
    assert reward.kind == ModelKind.REWARD and reward.rating_count == 10
    assert list(reward.trained_on_rounds.values_list("pk", flat=True)) == [round_id]
    assert {"accuracy", "threshold"} <= set(reward.metrics), reward.metrics
    assert new.parent == base and new.kind == ModelKind.DIFFUSION
    assert new.name == "base + reward" and new.metrics["steps"] == 2
    assert new.params["reward_version_id"] == reward.pk
    # The fine-tune counts the ratings of the generated images it trained on:
    # 4 images x 2 raters; the real control's 2 ratings only taught the reward.
    assert new.rating_count == 8 and new.metrics["n_rated"] == 4
    assert list(new.trained_on_rounds.values_list("pk", flat=True)) == [round_id]
    control = ModelVersion.objects.get(pk=control_id)
    assert control.is_control and control.parent == base
    assert control.params["objective"] == "none" and control.rating_count == 0
    assert new.params["objective"] == "kto" and not new.is_control
    assert new.metrics["objective"]["reference"] == "frozen_copy"
    assert control.metrics["steps"] == new.metrics["steps"]
    assert sorted(c.pk for c in base.children.all()) == sorted([new.pk, control.pk])
    assert new_detail["parent"]["id"] == base.pk
    assert [r["id"] for r in new_detail["rounds"]] == [round_id]
    assert any(f["name"].endswith(".safetensors") for f in new_detail["files"])
    for version in (base, new, control):
        assert_version_on_disk(version)
    assert (Path(reward.path) / "reward_model.json").is_file()

    # Rounds: the first rated in full; the comparison round, new vs base, was
    # open until every image was rated, then closed.
    first = Round.objects.get(pk=round_id)
    assert first.model_version_id == base.pk and first.status == RoundStatus.RATING
    compare = Round.objects.get(pk=compare_job["result"]["round_id"])
    assert compare_detail["status"] == RoundStatus.RATING
    assert compare.status == RoundStatus.CLOSED
    # Re-scored by the worker: its reward model is the one trained on the
    # first round's 10 ratings and its own 2, and every item has its spread.
    rescored = ModelVersion.objects.get(pk=rescore_job["result"]["model_version_id"])
    assert rescored.rating_count == 12
    assert compare_detail["reward_model_version"] == rescored.pk
    assert not compare.items.filter(uncertainty=None).exists()
    assert (compare.model_version_id, compare.compare_model_version_id) == (
        new.pk,
        base.pk,
    )
    arms = Counter(
        (im.generation["arm"], im.model_version_id)
        for im in Image.objects.filter(generated_for_round=compare)
    )
    assert arms == {
        ("candidate", new.pk): 2,
        ("parent", base.pk): 2,
        ("control", control.pk): 2,
    }
    seeds = {
        arm: sorted(
            Image.objects.filter(
                generated_for_round=compare, generation__arm=arm
            ).values_list("generation__request_seed", flat=True)
        )
        for arm in ("candidate", "parent", "control")
    }
    assert seeds["candidate"] == seeds["parent"] == seeds["control"]

    # The gate: provisional while open, recorded at closing, marked in the
    # lineage; the version it failed is never generation's default.
    assert rated_later == 4 and provisional["decided"] is False
    verdict = decided["verdict"]
    assert verdict["decided"] is True and decided["round"] == compare_id
    by_arm = {a["arm"]: a for a in verdict["arms"]}
    assert set(by_arm) == {"candidate", "parent", "control"}
    assert sum(a["ratings"] for a in by_arm.values()) == 6
    for name in ("candidate", "control"):
        assert {"p_value", "points", "pairs"} <= set(by_arm[name]["vs_parent"])
    assert by_arm["candidate"]["vs_control"]["pairs"] == 2
    new.refresh_from_db()
    assert new.gate == ("promoted" if verdict["promoted"] else "failed")
    assert decided["candidate_gate"] == new.gate
    nodes = {n["id"]: n for n in tree[0]["children"]}
    assert nodes[new.pk]["gate"] == new.gate and nodes[control.pk]["is_control"]

    # Provenance of every generated image of round 1.
    images = Image.objects.filter(generated_for_round=first)
    assert images.count() == 4
    for image in images:
        assert image.source == ImageSource.GENERATED
        assert image.model_version_id == base.pk and image.dataset_id is None
        g = image.generation
        assert g["steps"] == 2 and g["prompt"] == image.prompt
        assert g["job_id"] == job_of(first).pk and isinstance(g["seed"], int)
        assert Path(image.file.path).is_file() and image.width == 16

    # Filtered generation: kept and rejected stored, scored, the zip has them.
    kept = [row["uid"] for row in generated["kept"]]
    assert len(kept) == 2 and len(generated["rejected"]) == 2
    scored = Image.objects.filter(generation__job_id=generated["job"]["id"])
    assert scored.count() == 4
    assert all(im.reward_score is not None for im in scored)
    assert {im.model_version_id for im in scored} == {base.pk}
    assert {im.generation["reward_version_id"] for im in scored} == {reward.pk}
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        names = archive.namelist()
        manifest = list(
            csv.DictReader(io.StringIO(archive.read("manifest.csv").decode()))
        )
    assert len([n for n in names if n.startswith("kept/")]) == 2
    assert len([n for n in names if n.startswith("rejected/")]) == 2
    assert sorted(r["uid"] for r in manifest if r["file_name"].startswith("kept/")) == (
        sorted(kept)
    )
    assert {r["model_version_id"] for r in manifest} == {str(base.pk)}

    # The export holds every rating made before it (the first round's), with
    # its rater and round; the comparison round's 6 came after it.
    rows = list(csv.DictReader(io.StringIO(export)))
    before = Rating.objects.filter(round_id=round_id)
    assert len(rows) == before.count() == Rating.objects.count() - 6 == 10
    assert Counter(r["rater"] for r in rows) == Counter(
        before.values_list("rater__username", flat=True)
    )
    assert {r["round_id"] for r in rows} == {str(round_id)}
    assert Counter(r["rating"] for r in rows) == Counter(
        str(s) for s in before.values_list("score", flat=True)
    )
    assert sum(r["is_control"].lower() in {"true", "1"} for r in rows) == 2

    print(f"\nloop over HTTP with a real worker: {elapsed:.1f} s")


def job_of(rnd: Round) -> Job:
    return Job.objects.get(pk=rnd.settings["job_id"])


def test_the_loop_runs_on_a_stable_diffusion_folder_with_lora(
    live_server, tmp_path, settings
):
    """The path of users with real checkpoints: a local Stable Diffusion
    folder (random and tiny here) registered as the base model, LoRA
    fine-tunes (DPO against the base without adapters, and the control), a
    three-arm comparison round and the gate's verdict."""
    from tests.sd_random import write_random_sd_folder

    started = time.monotonic()
    UserFactory(username="admin1", role=Role.ADMIN)
    for name in ("dr_a", "dr_b"):
        UserFactory(username=name, role=Role.PHYSICIAN)
    log = tmp_path / "worker.log"
    archive = demo_zip(tmp_path / "demo")
    # Character-level tokens: long enough for the demo's longest text.
    sd_folder = write_random_sd_folder(Path(settings.MODELS_DIR) / "sd", max_tokens=160)
    prompts = [["ct: axial head", "ct"], ["chest x-ray: frontal", "chest_xray"]]

    with celery_worker(log=log):
        admin = Client(live_server.url, "admin1")
        doctors = [Client(live_server.url, n) for n in ("dr_a", "dr_b")]
        queued = admin.post(
            "/api/datasets/import/",
            data={"name": "demo"},
            files={"file": ("demo.zip", archive, "application/zip")},
        )
        dataset_id = wait_job(admin, queued["job"], log)["result"]["dataset_id"]
        base = admin.post(
            "/api/model-versions/register/",
            expect=201,
            json={
                "name": "sd base",
                "kind": "diffusion",
                "path": str(sd_folder),
                "dataset": dataset_id,
            },
        )
        assert base["backend"] == "sd"
        queued = admin.post(
            "/api/rounds/generate/",
            json={
                "name": "sd round 1",
                "model_version": base["id"],
                "prompts": [{"prompt": p, "modality": m} for p, m in prompts],
                "images_per_prompt": 3,
                "raters_per_image": 2,
                "seed": 5,
                "sampling": SAMPLING,
            },
        )
        wait_job(admin, queued["job"], log)
        rated = [
            rate_all(d, queued["round"], k, per_prompt=True)
            for k, d in enumerate(doctors)
        ]
        assert sum(rated) == 12
        lora = {
            "max_steps": 2,
            "batch_size": 2,
            "checkpointing_steps": 2,
            "lr_warmup_steps": 0,
            "resolution": 16,
            "device": "cpu",
            "use_lora": True,
            "lora_rank": 2,
        }
        queued = admin.post(
            "/api/retraining/",
            json={
                "diffusion_version": base["id"],
                "reward": REWARD,
                "finetune": {**lora, "objective": "dpo", "dpo_beta": 100.0},
                "round": {
                    "prompts": prompts,
                    "images_per_prompt": 2,
                    "best_of_n": 0,
                    **SAMPLING,
                },
            },
        )
        reward_job = wait_job(admin, queued["job"], log)
        finetune_job, control_job, compare_job = wait_training_steps(
            admin, reward_job, log
        )
        compare_id = compare_job["result"]["round_id"]
        assert sum(rate_all(d, compare_id, k) for k, d in enumerate(doctors)) == 12
        admin.call("POST", f"/api/rounds/{compare_id}/close/", expect=200)
        (comparison,) = admin.get("/api/comparisons/")
    elapsed = time.monotonic() - started

    new = ModelVersion.objects.get(pk=finetune_job["result"]["model_version_id"])
    control = ModelVersion.objects.get(pk=control_job["result"]["model_version_id"])
    for version in (new, control):
        assert version.backend == "sd" and version.parent_id == base["id"]
        files = {p.name for p in Path(version.path).iterdir()}
        assert "unet_lora.safetensors" in files and "unet.safetensors" not in files
        assert_version_on_disk(version)
    assert new.metrics["objective"]["reference"] == "adapters_off"
    assert new.metrics["n_pairs"] > 0 and new.params["reward_version_id"] is None
    assert control.is_control and control.params["objective"] == "none"
    arms = Counter(
        im.generation["arm"]
        for im in Image.objects.filter(generated_for_round_id=compare_id)
    )
    assert arms == {"candidate": 4, "parent": 4, "control": 4}
    verdict = comparison["verdict"]
    assert verdict["decided"] and len(verdict["arms"]) == 3
    new.refresh_from_db()
    assert new.gate == ("promoted" if verdict["promoted"] else "failed")
    print(f"\nloop over HTTP on a Stable Diffusion folder with LoRA: {elapsed:.1f} s")
