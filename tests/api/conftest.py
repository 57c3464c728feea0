from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from annotations.models import Role
from annotations.rating.serving import assignment_next


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
