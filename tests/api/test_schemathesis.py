"""Every endpoint in the OpenAPI schema, fed generated requests by
schemathesis as a physician and as an admin, answers without a server error.

Bounded examples keep it to a couple of minutes; marked slow (make test and
CI run it; make test-fast leaves it out).
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from django.db import transaction
from hypothesis import HealthCheck, settings

from annotations.models import Role
from annotations.services.tokens import token_issue

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def _schema() -> dict:
    """The schema /api/schema/ serves, built without a request."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    built = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(built))


schema = schemathesis.openapi.from_dict(_schema())


@pytest.fixture(params=[Role.PHYSICIAN, Role.ADMIN])
def token(request, make_user, make_round) -> str:
    user = make_user(request.param)
    make_round(3)
    return token_issue(user=user)[0]


@schema.parametrize()
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_endpoint_answers_with_a_server_error(case, token, client):
    case.headers = {**(case.headers or {}), "Authorization": f"Token {token}"}
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    url = kwargs["url"].removeprefix("http://testserver")
    body = kwargs.get("json")
    client.raise_request_exception = False
    # Each request in its own savepoint, as each has its own transaction in
    # production (ATOMIC_REQUESTS): an error answer rolls back only itself.
    with transaction.atomic():
        response = client.generic(
            kwargs["method"].upper(),
            url,
            data=json.dumps(body) if body is not None else (kwargs.get("data") or ""),
            content_type="application/json" if body is not None else None,
            QUERY_STRING=_query(kwargs.get("params")),
            headers={k: str(v) for k, v in (kwargs.get("headers") or {}).items()},
        )
    assert response.status_code < 500, (kwargs["method"], url, response.content[:500])


def _query(params: dict | None) -> str:
    from urllib.parse import urlencode

    return urlencode(params or {}, doseq=True)
