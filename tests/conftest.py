from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import cache

from annotations.models import Role
from annotations.services.rounds import round_create

from .factories import ImageFactory, UserFactory


@pytest.fixture(autouse=True)
def _test_settings(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    settings.MEDIA_ROOT = tmp_path_factory.mktemp("media")
    settings.MODELS_DIR = tmp_path_factory.mktemp("models")
    # Hashing is not under test; the default hasher costs ~0.3 s a user.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Throttle counters live in the cache; each test starts with none.
    cache.clear()


@pytest.fixture
def make_user(db: Any) -> Callable[..., Any]:
    def make(role: str = Role.PHYSICIAN, **kwargs: Any) -> Any:
        return UserFactory(role=role, **kwargs)

    return make


@pytest.fixture
def physician(make_user: Callable[..., Any]) -> Any:
    return make_user(Role.PHYSICIAN)


@pytest.fixture
def admin_user(make_user: Callable[..., Any]) -> Any:
    return make_user(Role.ADMIN)


@pytest.fixture
def researcher(make_user: Callable[..., Any]) -> Any:
    return make_user(Role.RESEARCHER)


@pytest.fixture
def make_round(admin_user: Any) -> Callable[..., Any]:
    def make(n_images: int = 5, raters_per_image: int = 1, **kwargs: Any) -> Any:
        images = ImageFactory.create_batch(n_images)
        return round_create(
            name=kwargs.pop("name", "round"),
            images=images,
            created_by=admin_user,
            raters_per_image=raters_per_image,
            open_now=kwargs.pop("open_now", True),
            **kwargs,
        )

    return make
