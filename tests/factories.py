"""Factories for the records of both apps."""

from __future__ import annotations

import io
import secrets

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from PIL import Image as PILImage

from annotations.models import Dataset, ExpertLevel, Image, RaterProfile, Role


def png_bytes(size: int = 32, value: int | None = None) -> bytes:
    value = secrets.randbelow(256) if value is None else value
    buf = io.BytesIO()
    PILImage.new("L", (size, size), color=value).save(buf, format="PNG")
    return buf.getvalue()


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", "correct horse battery")

    @factory.post_generation
    def role(self, create: bool, extracted: str | None, **kwargs: object) -> None:
        if not create or not extracted:
            return
        self.groups.add(Group.objects.get_or_create(name=extracted)[0])
        if extracted == Role.ADMIN:
            self.is_staff = True
        self.save()
        RaterProfile.objects.get_or_create(
            user=self, defaults={"expert_level": ExpertLevel.SPECIALIST}
        )


class DatasetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Dataset

    name = factory.Sequence(lambda n: f"dataset {n}")
    root = "/data"


class ImageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Image

    dataset = factory.SubFactory(DatasetFactory)
    file = factory.LazyFunction(lambda: ContentFile(png_bytes(), name="image.png"))
    preview = factory.LazyFunction(lambda: ContentFile(png_bytes(), name="preview.png"))
    sha256 = factory.Sequence(lambda n: f"{n:064x}")
    width = 32
    height = 32
    modality = "ct"
    prompt = factory.Sequence(lambda n: f"CT: axial slice number {n}")
