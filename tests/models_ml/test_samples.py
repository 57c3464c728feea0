"""Sample grids made when a version is created, and the comparison round's
arms side by side."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from django.urls import reverse
from PIL import Image as PILImage

from annotations.models import Role
from models_ml.gate import comparison_grid
from models_ml.management.commands.demo_setup import DEMO_MODEL_DIR
from models_ml.models import ModelKind, ModelVersion, VersionSample
from models_ml.samples import sample_prompts, version_samples_make
from tests.factories import DatasetFactory, ImageFactory

from .test_gate import comparison_round

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


def _dataset():
    ds = DatasetFactory(name="grid")
    for _ in range(5):
        ImageFactory(dataset=ds, modality="ct", prompt="CT: axial chest")
    for _ in range(3):
        ImageFactory(dataset=ds, modality="fundus", prompt="Fundus: normal")
    ImageFactory(dataset=ds, modality="chest_xray", prompt="Chest X-ray: rare")
    return ds


def _demo_version(name: str, **kw) -> ModelVersion:
    return ModelVersion.objects.create(
        name=name,
        kind=ModelKind.DIFFUSION,
        backend="tiny",
        path=str(Path(DEMO_MODEL_DIR).resolve()),
        **kw,
    )


def _png(sample: VersionSample) -> PILImage.Image:
    with sample.file.open("rb") as handle:
        return PILImage.open(io.BytesIO(handle.read()))


def test_a_version_draws_one_row_per_prompt_gray_for_grayscale_modalities(settings):
    settings.MODEL_SAMPLE_PROMPTS = 2
    version = _demo_version("base", dataset=_dataset())
    assert version_samples_make(version, per_prompt=3) == 2
    rows = {s.prompt: s for s in version.samples.all()}
    # The two most common prompts, not the rare one.
    assert set(rows) == {"CT: axial chest", "Fundus: normal"}
    ct, fundus = _png(rows["CT: axial chest"]), _png(rows["Fundus: normal"])
    assert ct.mode == "L" and fundus.mode == "RGB"
    assert ct.height == 32 and ct.width == 3 * 32 + 2 * 2
    assert rows["CT: axial chest"].seeds == [0, 1, 2]
    # Asked again, nothing is drawn twice.
    assert version_samples_make(version, per_prompt=3) == 0


def test_parent_and_child_grids_line_up_on_the_same_prompts_and_seeds(settings):
    settings.MODEL_SAMPLE_PROMPTS = 1
    parent = _demo_version("parent", dataset=_dataset())
    child = _demo_version("child", parent=parent)
    assert sample_prompts(child, 1) == sample_prompts(parent, 1)
    version_samples_make(parent, per_prompt=2)
    version_samples_make(child, per_prompt=2)
    (a,), (b,) = parent.samples.all(), child.samples.all()
    # The same weights on the same seeds: the same pictures.
    assert np.array_equal(np.asarray(_png(a)), np.asarray(_png(b)))


def test_a_version_that_cannot_draw_is_left_without_a_grid(caplog):
    version = ModelVersion.objects.create(
        name="broken", kind=ModelKind.DIFFUSION, path="/nonexistent", dataset=_dataset()
    )
    with caplog.at_level(logging.ERROR):
        assert version_samples_make(version, per_prompt=2) == 0
    assert "no sample grid" in caplog.text
    assert not VersionSample.objects.exists()


def test_no_grid_when_turned_off_or_for_a_reward_model(settings):
    settings.MODEL_SAMPLE_IMAGES = 0
    assert version_samples_make(_demo_version("off", dataset=_dataset())) == 0
    reward = ModelVersion.objects.create(name="rm", kind=ModelKind.REWARD, path="/rm")
    assert version_samples_make(reward, per_prompt=2) == 0


def test_lineage_and_version_pages_show_the_grid(client, admin_user, settings):
    settings.MODEL_SAMPLE_PROMPTS = 1
    version = _demo_version("shown", dataset=_dataset())
    version_samples_make(version, per_prompt=2)
    sample = version.samples.get()
    client.force_login(admin_user)
    url = reverse("ml-version-sample", args=[sample.pk])
    assert url in client.get(reverse("ml-lineage")).content.decode()
    page = client.get(reverse("ml-version", args=[version.pk]))
    assert page.status_code == 200 and url in page.content.decode()
    png = client.get(url)
    assert png.status_code == 200 and png["Content-Type"] == "image/png"


def test_physicians_get_neither_the_version_page_nor_its_grid(
    client, make_user, settings
):
    settings.MODEL_SAMPLE_PROMPTS = 1
    version = _demo_version("hidden", dataset=_dataset())
    version_samples_make(version, per_prompt=1)
    client.force_login(make_user(Role.PHYSICIAN))
    sample = version.samples.get()
    assert client.get(reverse("ml-version-sample", args=[sample.pk])).status_code == 403
    assert client.get(reverse("ml-version", args=[version.pk])).status_code == 403


def test_the_comparison_grid_puts_each_arms_images_of_a_seed_side_by_side(
    admin_user, client
):
    comparison = comparison_round(
        admin_user,
        outcomes={
            "candidate": [3, 3, 3, 3, 3, 3],
            "parent": [1, 2, 1, 2, 1, 2],
            "control": [2, 2, 2, 2, 2],
        },
    )
    grid = comparison_grid(comparison, per_prompt=2)
    assert [row.prompt for row in grid] == ["CT: a", "CT: b"]
    for row in grid:
        assert [label for label, _ in row.arms] == [
            "New version",
            "Parent",
            "Control (same fine-tune, no feedback)",
        ]
        assert len(row.seeds) == 2
        for _, images in row.arms:
            seeds = [im.generation["request_seed"] for im in images]
            assert seeds == row.seeds and {im.prompt for im in images} == {row.prompt}
    # Prompt "CT: b" has seeds 1, 3, 5 but the control lacks 5: only 1 and 3.
    assert grid[1].seeds == [1, 3]
    client.force_login(admin_user)
    page = client.get(reverse("ml-version", args=[comparison.candidate_id]))
    html = page.content.decode()
    assert f'data-testid="arm-grid-{comparison.pk}"' in html
    first = grid[0].arms[0][1][0]
    assert reverse("image-preview", args=[first.uid]) in html


def test_a_version_registered_over_the_api_gets_its_grid_from_the_worker(
    admin_user, settings, monkeypatch, django_capture_on_commit_callbacks
):
    import shutil

    from rest_framework.test import APIClient

    from models_ml import tasks
    from models_ml.services import base_training

    settings.MODEL_SAMPLE_PROMPTS = 1
    settings.MODEL_SAMPLE_IMAGES = 1
    folder = Path(settings.MODELS_DIR) / "registered"
    shutil.copytree(DEMO_MODEL_DIR, folder)
    queued: list[int] = []
    monkeypatch.setattr(base_training, "_version_samples_enqueue", queued.append)
    client = APIClient()
    client.force_authenticate(admin_user)
    dataset = _dataset()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/model-versions/register/",
            {
                "name": "adopted",
                "kind": "diffusion",
                "path": str(folder),
                "dataset": dataset.pk,
            },
            format="json",
        )
    assert response.status_code == 201, response.content
    version_id = response.json()["id"]
    # Not drawn in the request: queued for the worker, which draws it.
    assert queued == [version_id]
    assert not VersionSample.objects.exists()
    assert tasks.ml_version_samples(version_id) == 1
    assert VersionSample.objects.filter(version_id=version_id).count() == 1
