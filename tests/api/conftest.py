from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import cache
from drf_spectacular.plumbing import _load_enum_name_overrides
from drf_spectacular.settings import spectacular_settings
from rest_framework.test import APIClient

from annotations.models import Role
from annotations.services.ratings import assignment_next

# The settings lines the API relies on (see medrlhf/settings.py); applied here
# only where the settings module does not have them yet.
EXCEPTION_HANDLER = "medrlhf.exceptions.api_exception_handler"
ENUM_NAME_OVERRIDES = {
    "RoundStatusEnum": "annotations.models.RoundStatus",
    "JobStatusEnum": "models_ml.models.JobStatus",
}


@pytest.fixture(autouse=True)
def _api_settings(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if "EXCEPTION_HANDLER" not in settings.REST_FRAMEWORK:
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "EXCEPTION_HANDLER": EXCEPTION_HANDLER,
        }
    if not spectacular_settings.ENUM_NAME_OVERRIDES:
        monkeypatch.setattr(
            spectacular_settings, "ENUM_NAME_OVERRIDES", ENUM_NAME_OVERRIDES
        )
        _load_enum_name_overrides.cache_clear()
    # Hashing is not under test here; the default hasher costs ~0.3 s a user.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Throttle counters live in the cache; each test starts with none.
    cache.clear()
    yield
    _load_enum_name_overrides.cache_clear()


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def client_as(make_user: Callable[..., Any]) -> Callable[..., APIClient]:
    """A client logged in as ``role`` (or anonymous for None), and its user."""

    def make(role: str | None, user: Any = None) -> APIClient:
        client = APIClient()
        if role is not None or user is not None:
            client.user = user or make_user(role)
            client.force_authenticate(client.user)
        return client

    return make


@pytest.fixture
def served(make_round: Callable[..., Any]) -> Callable[..., Any]:
    """Serve the next image of ``rnd`` to ``rater``; returns the image."""

    def serve(rnd: Any, rater: Any) -> Any:
        return assignment_next(round=rnd, rater=rater).round_image.image

    return serve


ROLES = [None, Role.PHYSICIAN, Role.RESEARCHER, Role.ADMIN]
