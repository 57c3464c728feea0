"""A generating round's prompts: the Retraining page and
``POST /api/rounds/generate/`` parse pasted text and sample a dataset through
one implementation (``models_ml/services/prompts.py``), so the same input
gives the same round."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotations.errors import DomainError
from models_ml.models import Job
from models_ml.services.prompts import (
    MAX_PASTED_PROMPTS,
    prompts_parse,
    prompts_sample,
)
from tests.factories import DatasetFactory, ImageFactory

from .ml_page_data import diffusion

pytestmark = pytest.mark.django_db

PASTED = "CT: axial slice of the head\n\n  retina with the optic disc  \nBrain MRI: T1"


def _page(client: Any, version: Any, **fields: Any) -> Any:
    return client.post(
        reverse("ml-round-generate"),
        {
            "round-name": "from the page",
            "round-model_version": version.pk,
            "round-sample_count": 8,
            "round-images_per_prompt": 1,
            "round-control_percent": 0,
            "round-raters_per_image": 1,
            **{f"round-{k}": v for k, v in fields.items()},
        },
    )


def _api(user: Any, version: Any, **fields: Any) -> Any:
    client = APIClient()
    client.force_authenticate(user)
    return client.post(
        "/api/rounds/generate/",
        {"name": "from the api", "model_version": version.pk, "images_per_prompt": 1}
        | fields,
        format="json",
    )


def test_the_page_and_the_api_make_the_same_prompts_from_the_same_text(
    client, admin_user
):
    version = diffusion()
    client.force_login(admin_user)
    assert (
        _page(client, version, prompts=PASTED, sample_modality="fundus").status_code
        == 302
    )
    response = _api(admin_user, version, prompts_text=PASTED, modality="fundus")
    assert response.status_code == 202, response.content
    page_job, api_job = Job.objects.order_by("pk")
    assert (
        page_job.params["prompts"]
        == api_job.params["prompts"]
        == [
            ["CT: axial slice of the head", "ct"],
            ["retina with the optic disc", "fundus"],
            ["Brain MRI: T1", "brain_mri"],
        ]
    )


def test_the_page_and_the_api_name_the_same_bad_line(client, admin_user):
    version = diffusion()
    client.force_login(admin_user)
    text = "CT: fine\nno modality here"
    page = _page(client, version, prompts=text)
    api = _api(admin_user, version, prompts_text=text)
    assert page.status_code == api.status_code == 400
    message = api.json()["prompts_text"][0]
    assert message.startswith("line 2: no modality")
    assert "line 2: no modality" in page.content.decode()
    assert not Job.objects.exists()


def test_the_page_and_the_api_sample_a_dataset_alike(client, admin_user):
    dataset = DatasetFactory()
    for i in range(3):
        ImageFactory(dataset=dataset, modality="ct", prompt=f"CT: case {i}")
    ImageFactory(dataset=dataset, modality="fundus", prompt="Fundus: a disc")
    version = diffusion("base", dataset=dataset)
    client.force_login(admin_user)
    page = _page(
        client, version, dataset=dataset.pk, sample_modality="CT", sample_count=2
    )
    api = _api(
        admin_user,
        version,
        sample_from_dataset={
            "dataset": dataset.pk,
            "per_modality": 2,
            "modalities": ["CT"],
        },
    )
    assert page.status_code == 302 and api.status_code == 202, api.content
    for job in Job.objects.all():
        prompts = job.params["prompts"]
        assert len(prompts) == 2 and {m for _, m in prompts} == {"ct"}
        assert {t for t, _ in prompts} <= {f"CT: case {i}" for i in range(3)}


def test_pasting_names_an_unknown_default_modality_and_refuses_too_many_lines():
    with pytest.raises(DomainError, match="modality"):
        prompts_parse("a line", modality="-- ? --")
    with pytest.raises(DomainError, match=f"at most {MAX_PASTED_PROMPTS}"):
        prompts_parse("CT: x\n" * (MAX_PASTED_PROMPTS + 1))
    with pytest.raises(DomainError, match="no prompt"):
        prompts_parse(" \n \n")


def test_sampling_is_reproducible_with_a_seed_and_names_a_missing_modality():
    dataset = DatasetFactory()
    for i in range(10):
        ImageFactory(dataset=dataset, modality="ct", prompt=f"CT: case {i}")
    draw = lambda seed: prompts_sample(  # noqa: E731
        dataset=dataset, per_modality=3, modalities=[], seed=seed
    )
    assert draw(7) == draw(7)
    assert len(draw(7)) == 3
    with pytest.raises(DomainError, match="no usable fundus images"):
        prompts_sample(dataset=dataset, per_modality=3, modalities=["fundus"], seed=1)
