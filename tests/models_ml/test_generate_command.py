"""``manage.py generate``: the seeds' option names, files written, clear errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from models_ml.models import Job, JobKind, JobStatus
from tests.api import test_ml_api
from tests.models_ml import test_ml_jobs

pytestmark = pytest.mark.django_db

sent = test_ml_jobs.sent
world = test_ml_api.world
tiny_models = test_ml_api.tiny_models


def test_generate_writes_the_kept_pngs_and_both_manifests(
    tiny_models, tmp_path, sent, django_capture_on_commit_callbacks
):
    base, reward = tiny_models
    out = tmp_path / "out"
    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "generate",
            "--model_path", str(base.pk),
            "--reward_model", reward.path,
            "--prompt", "CT: case 1",
            "--img_num", "2",
            "--mode", "best_of_n",
            "--n", "2",
            "--seed", "3",
            "--num_inference_steps", "2",
            "--guidance_scale", "2.0",
            "--device", "cpu",
            "--output_dir", str(out),
        )  # fmt: skip
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["0000_ct_seed3.png", "0001_ct_seed4.png"]
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    listing = json.loads((out / "manifest.json").read_text())
    assert [r["file_name"] for r in rows] == [r["file_name"] for r in listing] == pngs
    assert {r["guidance"] for r in listing} == {2.0} and listing[0]["steps"] == 2
    job = Job.objects.filter(kind=JobKind.GENERATE).latest("id")
    assert job.status == JobStatus.SUCCEEDED and job.params["count"] == 2
    assert sent == []


def test_generate_queue_hands_the_job_to_a_worker(
    world, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "generate", "--model_path", str(world.base.pk), "--prompt", "CT: a",
            "--num_images", "3", "--queue",
        )  # fmt: skip
    job = Job.objects.filter(kind=JobKind.GENERATE).latest("id")
    assert job.params["reward_version_id"] == world.reward.pk
    assert job.params["count"] == 3 and job.params["modality"] == "ct"
    assert sent == [("models_ml.tasks.ml_generate", "ml")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model_path", "999", "--output_dir", "o"], "--model_path: no diffusion"),
        (["--model_path", "/nowhere", "--output_dir", "o"], "not a registered"),
        (["--model_path", "{base}"], "--output_dir is needed"),
        (
            ["--model_path", "{base}", "--reward_model", "{base}", "--queue"],
            "--reward_model: no reward model version",
        ),
        (
            ["--model_path", "{base}", "--threshold", "2", "--queue"],
            "threshold must be between 0 and 1",
        ),
    ],
)
def test_generate_refuses_bad_options_naming_them(world, args, message):
    args = [a.format(base=world.base.pk) for a in args]
    with pytest.raises(CommandError, match=message):
        call_command("generate", "--prompt", "CT: a", *args)
    assert (
        not Job.objects.filter(kind=JobKind.GENERATE)
        .exclude(pk=world.others_job.pk)
        .exists()
    )


def test_generate_needs_a_modality_when_the_prompt_names_none(world):
    with pytest.raises(CommandError, match="--modality"):
        call_command(
            "generate", "--model_path", str(world.base.pk), "--prompt", "a slice",
            "--queue",
        )  # fmt: skip


def test_an_unregistered_folder_is_named_with_its_full_path(world, tmp_path):
    with pytest.raises(CommandError, match=str(Path(tmp_path).resolve())):
        call_command(
            "generate", "--model_path", str(tmp_path), "--prompt", "CT: a", "--queue"
        )
