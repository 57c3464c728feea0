"""Real controls stand beside generated images of their own modality only."""

from __future__ import annotations

import pytest

from annotations.models import ImageSource
from models_ml.models import ModelKind, ModelVersion
from models_ml.selectors import control_pool
from tests.factories import DatasetFactory, ImageFactory

pytestmark = pytest.mark.django_db


def _version(dataset=None, parent=None):
    return ModelVersion.objects.create(
        name="v", kind=ModelKind.DIFFUSION, path="/m", dataset=dataset, parent=parent
    )


def test_controls_come_from_the_prompts_modalities_of_the_versions_dataset():
    dataset, other = DatasetFactory(), DatasetFactory()
    fundus = ImageFactory.create_batch(2, dataset=dataset, modality="fundus")
    ImageFactory(dataset=dataset, modality="brain_mri")
    ImageFactory(dataset=other, modality="fundus")
    ImageFactory(dataset=dataset, modality="fundus", quarantined=True)
    child = _version(parent=_version(dataset=dataset))
    pool = control_pool(model_version=child, modalities=["fundus", "fundus"])
    assert sorted(im.pk for im in pool) == sorted(im.pk for im in fundus)


def test_a_chosen_dataset_wins_and_generated_images_never_serve_as_controls():
    own, chosen = DatasetFactory(), DatasetFactory()
    version = _version(dataset=own)
    ImageFactory(dataset=own, modality="ct")
    wanted = ImageFactory(dataset=chosen, modality="ct")
    ImageFactory(
        dataset=chosen,
        modality="ct",
        source=ImageSource.GENERATED,
        model_version=version,
    )
    pool = control_pool(model_version=version, dataset=chosen, modalities=["ct"])
    assert [im.pk for im in pool] == [wanted.pk]


def test_without_any_dataset_controls_come_from_every_dataset_of_that_modality():
    a = ImageFactory(dataset=DatasetFactory(), modality="oct")
    b = ImageFactory(dataset=DatasetFactory(), modality="oct")
    ImageFactory(dataset=DatasetFactory(), modality="ct")
    pool = control_pool(model_version=_version(), modalities=["oct"])
    assert sorted(im.pk for im in pool) == sorted([a.pk, b.pk])
