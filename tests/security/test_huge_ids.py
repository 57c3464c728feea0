"""Attack: send ids too large for the database and look for a server error.

SQLite raises OverflowError for integers over 2**63 - 1, which Django
turned into a 500. Every id in a URL is now at most 18 digits (larger ones
are not found: 404), and every id in a body or query is checked by its
serializer or form like any other bad value (400).
"""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from annotations.models import Role

pytestmark = pytest.mark.django_db

HUGE = "9" * 25  # > 2**63: overflows a 64-bit column
LARGEST = "9" * 18  # the largest an <id:…> matches: a valid lookup, not found


def _id_routes(patterns=None, prefix: str = "") -> list[str]:
    routes: list[str] = []
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            routes += _id_routes(entry.url_patterns, route)
        elif isinstance(entry, URLPattern) and "<" in route:
            routes.append(route)
    return routes


def _url(route: str, value: str) -> str:
    return "/" + re.sub(r"<[a-z]+:[a-z_]+>", value, route)


def test_every_route_with_an_id_uses_the_bounded_converter():
    routes = [r for r in _id_routes() if not r.startswith("admin/")]
    assert len(routes) > 30
    loose = [r for r in routes if "<int:" in r]
    assert loose == []


@pytest.mark.parametrize("role", [Role.ADMIN, Role.PHYSICIAN])
def test_huge_ids_in_urls_are_not_found_not_server_errors(client_as, role):
    client = client_as(role)
    client.raise_request_exception = False
    failures = []
    for route in _id_routes():
        if route.startswith("admin/") or "<id:" not in route:
            continue
        for value in (HUGE, LARGEST):
            for method in ("get", "post"):
                response = getattr(client, method)(_url(route, value))
                if response.status_code >= 500:
                    failures.append((method, _url(route, value), response.status_code))
                if value == HUGE:
                    assert response.status_code == 404, (method, route)
    assert failures == []


@pytest.mark.parametrize(
    "role, path, body",
    [
        (Role.ADMIN, "/api/generate/", {"diffusion_version": int(HUGE), "count": 1}),
        (Role.ADMIN, "/api/retraining/", {"diffusion_version": int(HUGE)}),
        (
            Role.PHYSICIAN,
            "/api/ratings/",
            {
                "round": int(HUGE),
                "image": "00000000-0000-0000-0000-000000000000",
                "score": 3,
            },
        ),
    ],
)
def test_huge_ids_in_bodies_are_bad_requests(client_as, role, path, body):
    client = client_as(role)
    client.raise_request_exception = False
    response = client.post(path, body, format="json")
    assert response.status_code in (400, 404), (path, response.content[:300])


@pytest.mark.parametrize("value", [HUGE, "abc", "-1", "1.5"])
def test_bad_version_in_the_retraining_query_is_ignored(client, admin_user, value):
    client.force_login(admin_user)
    client.raise_request_exception = False
    response = client.get("/models/retraining/", {"model_version": value})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "role, path",
    [
        (Role.PHYSICIAN, "/api/ratings/mine/"),
        (Role.RESEARCHER, "/api/export/ratings.csv"),
    ],
)
def test_huge_ids_in_queries_are_bad_requests(client_as, role, path):
    client = client_as(role)
    client.raise_request_exception = False
    response = client.get(path, {"round": HUGE})
    assert response.status_code == 400, (path, response.content[:300])


@pytest.mark.parametrize("query", [{"limit": HUGE}, {"offset": HUGE}])
@pytest.mark.parametrize("path", ["/api/datasets/", "/api/jobs/", "/api/rounds/"])
def test_huge_pages_are_clamped_not_server_errors(client_as, path, query):
    client = client_as(Role.ADMIN)
    client.raise_request_exception = False
    response = client.get(path, query)
    assert response.status_code == 200, response.content[:300]
    assert response.json()["results"] == []


def test_a_page_holds_at_most_a_thousand_and_offsets_fit_the_database(rf):
    from rest_framework.request import Request

    from medrlhf.converters import MAX_ID
    from medrlhf.pagination import LimitOffsetPagination

    paginator = LimitOffsetPagination()
    request = Request(rf.get("/", {"limit": "5000", "offset": HUGE}))
    assert paginator.get_limit(request) == 1000
    assert paginator.get_offset(request) == MAX_ID
