from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import cache

from annotations.api.serving import SERVING_FIELDS
from annotations.design import ServingDesign
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


AUDIT_UNLOCK = "annotations_audit_unlock"


def _transactional(request: pytest.FixtureRequest) -> bool:
    marker = request.node.get_closest_marker("django_db")
    return bool(
        {"transactional_db", "live_server"} & set(request.fixturenames)
        or (marker is not None and marker.kwargs.get("transaction"))
    )


@pytest.fixture(autouse=True)
def _audit_log_guard(request: pytest.FixtureRequest) -> Any:
    """The audit log's database guard (migration 0008) is on during every
    test; a transactional test's database is emptied afterwards (flush),
    which the guard would refuse, so it stands aside just for that."""
    if "_django_db_helper" not in request.fixturenames:
        yield
        return
    # Set up the database first, so this teardown runs before its flush.
    request.getfixturevalue("_django_db_helper")
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {AUDIT_UNLOCK}")
    yield
    if _transactional(request):
        with connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {AUDIT_UNLOCK} (reason) VALUES ('test flush')")


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
        """A round of ``n_images`` new images; the serving design's fields
        (``agreement_share``...) may be given flat, for brevity."""
        images = ImageFactory.create_batch(n_images)
        design = {k: kwargs.pop(k) for k in SERVING_FIELDS if k in kwargs}
        return round_create(
            name=kwargs.pop("name", "round"),
            images=images,
            created_by=admin_user,
            raters_per_image=raters_per_image,
            open_now=kwargs.pop("open_now", True),
            serving=ServingDesign(**design),
            **kwargs,
        )

    return make
