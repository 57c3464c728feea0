"""``manage.py demo_setup``: demo data, accounts, the shipped base model and a
round a physician can rate at once; running it again adds nothing."""

from __future__ import annotations

import io
import json
import os

import pytest
from django.core.management import call_command

from annotations.models import Dataset, Image, ImageSource, Round, RoundStatus
from models_ml.management.commands.demo_setup import DEMO_MODEL_DIR
from models_ml.models import Job, JobKind, JobStatus, ModelKind, ModelVersion
from tests.models_ml import test_ml_jobs

pytestmark = pytest.mark.django_db

sent = test_ml_jobs.sent


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return tmp_path


def demo_setup(*args: str) -> str:
    out = io.StringIO()
    call_command("demo_setup", "--per-modality", "2", *args, stdout=out)
    return out.getvalue()


def test_demo_setup_registers_the_shipped_base_model_with_dataset_and_params(
    var_dir, sent
):
    demo_setup("--round", "real")
    version = ModelVersion.objects.get(kind=ModelKind.DIFFUSION)
    shipped = json.loads((DEMO_MODEL_DIR / "training.json").read_text())
    assert version.backend == "tiny"
    assert version.path == str(DEMO_MODEL_DIR.resolve())
    assert version.dataset == Dataset.objects.get()
    assert version.params["command"] == shipped["command"]
    assert version.params["registered"] is True
    rnd = Round.objects.get()
    assert rnd.status == RoundStatus.RATING and rnd.items.count() > 0
    assert sent == []


def test_demo_setup_opens_a_round_of_base_model_images_with_real_controls(
    var_dir, sent
):
    output = demo_setup(
        "--prompts-per-modality", "1", "--images-per-prompt", "1", "--steps", "2"
    )
    version = ModelVersion.objects.get(kind=ModelKind.DIFFUSION)
    rnd = Round.objects.get()
    assert rnd.status == RoundStatus.RATING, output
    generated = Image.objects.filter(generated_for_round=rnd)
    modalities = set(
        Image.objects.filter(source=ImageSource.REAL).values_list("modality", flat=True)
    )
    assert set(generated.values_list("modality", flat=True)) == modalities
    assert {im.model_version_id for im in generated} == {version.pk}
    assert {(im.width, im.height) for im in generated} == {(32, 32)}
    controls = rnd.items.filter(is_control=True)
    assert controls.count() == round(len(modalities) * 0.25 / 0.75)
    assert all(item.image.source == ImageSource.REAL for item in controls)
    job = Job.objects.get(kind=JobKind.GENERATE_ROUND)
    assert job.status == JobStatus.SUCCEEDED and sent == []


def test_demo_setup_queued_round_is_left_to_the_worker(
    var_dir, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        demo_setup("--round", "queued")
    rnd = Round.objects.get()
    assert rnd.status == RoundStatus.GENERATING
    assert Job.objects.get(kind=JobKind.GENERATE_ROUND).status == JobStatus.QUEUED
    # The base model's sample grid and the round, both for the ML worker.
    assert sorted(sent) == [
        ("models_ml.tasks.ml_generate_round", "ml"),
        ("models_ml.tasks.ml_version_samples", "ml"),
    ]


def test_demo_setup_run_twice_adds_nothing_the_second_time(var_dir, sent):
    demo_setup("--round", "real")
    before = (
        Dataset.objects.count(),
        Image.objects.count(),
        ModelVersion.objects.count(),
        Round.objects.count(),
    )
    demo_setup()
    after = (
        Dataset.objects.count(),
        Image.objects.count(),
        ModelVersion.objects.count(),
        Round.objects.count(),
    )
    assert after == before == (1, before[1], 1, 1)
