"""Who may call what: every endpoint against every role."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from annotations.models import Role
from models_ml.models import Job, JobKind, ModelKind, ModelVersion
from tests.factories import ImageFactory
from tests.models_ml.review_data import diffusion, generating_round, scored

from .conftest import ROLES

pytestmark = pytest.mark.django_db

DENIED_ANON = "anon"


@dataclass(frozen=True)
class World:
    round: Any
    served_image: Any
    hidden_image: Any
    dataset: Any
    job: Any
    reward: Any
    version: Any
    generating_round: Any


@pytest.fixture
def world(make_round, served, client_as):
    def build(client) -> World:
        rnd = make_round(2)
        user = getattr(client, "user", None)
        is_rater = user is not None and user.groups.filter(name=Role.PHYSICIAN).exists()
        image = served(rnd, user) if is_rater else rnd.items.first().image
        version = diffusion()
        scored(version, 0.8)
        return World(
            round=rnd,
            served_image=image,
            hidden_image=ImageFactory(),
            dataset=image.dataset,
            job=Job.objects.create(kind=JobKind.IMPORT, params={}),
            reward=ModelVersion.objects.create(
                name="rm", kind=ModelKind.REWARD, path="/rm"
            ),
            version=version,
            generating_round=generating_round(version=version, admin=None)[0],
        )

    return build


# (method, path, body, expected status for anonymous, physician, researcher, admin)
CASES = [
    ("get", "/api/datasets/", None, (DENIED_ANON, 403, 200, 200)),
    ("get", "/api/datasets/{w.dataset.pk}/", None, (DENIED_ANON, 403, 200, 200)),
    (
        "post",
        "/api/datasets/import/",
        {"name": "x", "path": "/etc"},
        (DENIED_ANON, 403, 403, 400),
    ),
    ("get", "/api/jobs/", None, (DENIED_ANON, 403, 200, 200)),
    ("get", "/api/jobs/{w.job.pk}/", None, (DENIED_ANON, 403, 200, 200)),
    # Users cancel the jobs they started; another's is not theirs to see: 404.
    ("post", "/api/jobs/{w.job.pk}/cancel/", None, (DENIED_ANON, 404, 404, 200)),
    # Only admins release a quarantined image (this one is not: 400).
    (
        "post",
        "/api/images/{w.served_image.uid}/release/",
        {"note": "looked"},
        (DENIED_ANON, 403, 403, 400),
    ),
    ("get", "/api/images/{w.served_image.uid}/", None, (DENIED_ANON, 200, 200, 200)),
    ("get", "/api/images/{w.hidden_image.uid}/", None, (DENIED_ANON, 404, 200, 200)),
    (
        "get",
        "/api/images/{w.served_image.uid}/file/",
        None,
        (DENIED_ANON, 404, 200, 200),
    ),
    (
        "get",
        "/api/rounds/{w.round.pk}/images/{w.served_image.uid}/",
        None,
        (DENIED_ANON, 200, 200, 200),
    ),
    (
        "get",
        "/api/rounds/{w.round.pk}/images/{w.hidden_image.uid}/",
        None,
        (DENIED_ANON, 404, 404, 404),
    ),
    (
        "get",
        "/api/images/{w.hidden_image.uid}/file/",
        None,
        (DENIED_ANON, 404, 200, 200),
    ),
    ("get", "/api/rounds/", None, (DENIED_ANON, 200, 200, 200)),
    (
        "post",
        "/api/rounds/",
        {"name": "new", "modality": "ct"},
        (DENIED_ANON, 403, 403, 201),
    ),
    ("get", "/api/rounds/{w.round.pk}/", None, (DENIED_ANON, 200, 200, 200)),
    ("post", "/api/rounds/{w.round.pk}/open/", None, (DENIED_ANON, 403, 403, 200)),
    ("post", "/api/rounds/{w.round.pk}/close/", None, (DENIED_ANON, 403, 403, 200)),
    (
        "post",
        "/api/rounds/{w.round.pk}/score/",
        {"reward_model_version": "{w.reward.pk}"},
        (DENIED_ANON, 403, 403, 202),
    ),
    ("get", "/api/rounds/{w.round.pk}/next/", None, (DENIED_ANON, 200, 403, 403)),
    (
        "post",
        "/api/rounds/{w.round.pk}/skip/",
        {"image": "{w.served_image.uid}"},
        (DENIED_ANON, 204, 403, 403),
    ),
    ("post", "/api/rounds/{w.round.pk}/undo/", None, (DENIED_ANON, 409, 403, 403)),
    (
        "post",
        "/api/ratings/",
        {"round": "{w.round.pk}", "image": "{w.served_image.uid}", "score": 2},
        (DENIED_ANON, 201, 403, 403),
    ),
    ("get", "/api/ratings/mine/", None, (DENIED_ANON, 200, 200, 200)),
    ("get", "/api/export/ratings.csv", None, (DENIED_ANON, 403, 200, 200)),
    (
        "get",
        "/api/review/images/?model_version={w.version.pk}",
        None,
        (DENIED_ANON, 403, 403, 200),
    ),
    (
        "post",
        "/api/review/rounds/",
        {"name": "r", "model_version": "{w.version.pk}", "all_kept": True},
        (DENIED_ANON, 403, 403, 201),
    ),
    (
        "post",
        "/api/rounds/{w.generating_round.pk}/abandon/",
        {"reason": "failed"},
        (DENIED_ANON, 403, 403, 200),
    ),
    (
        "post",
        "/api/rounds/{w.generating_round.pk}/retry-generation/",
        None,
        (DENIED_ANON, 403, 403, 202),
    ),
    ("get", "/api/rounds/{w.round.pk}/agreement/", None, (DENIED_ANON, 403, 200, 200)),
    (
        "get",
        "/api/rounds/{w.round.pk}/agreement/reward/",
        None,
        (DENIED_ANON, 403, 200, 200),
    ),
    ("get", "/api/export/pairs.csv", None, (DENIED_ANON, 403, 200, 200)),
    ("get", "/api/export/dataset.zip", None, (DENIED_ANON, 403, 200, 200)),
]


def _params() -> list[Any]:
    params = []
    for method, path, body, expected in CASES:
        for role, status in zip(ROLES, expected, strict=True):
            params.append(
                pytest.param(
                    method, path, body, role, status, id=f"{method} {path} as {role}"
                )
            )
    return params


@pytest.mark.parametrize(("method", "path", "body", "role", "expected"), _params())
def test_endpoint_answers_each_role_as_its_permissions_say(
    client_as, world, method, path, body, role, expected
):
    client = client_as(role)
    w = world(client)
    url = path.format(w=w)
    data = {
        k: v.format(w=w) if isinstance(v, str) else v for k, v in (body or {}).items()
    }
    response = getattr(client, method)(url, data, format="json")
    if expected == DENIED_ANON:
        assert response.status_code in (401, 403)
        assert response.json()["detail"].startswith("Authentication credentials")
    else:
        assert response.status_code == expected, response.content[:300]
