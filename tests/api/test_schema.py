"""The OpenAPI schema validates cleanly, covers every route, and its docs are local."""

from __future__ import annotations

import re

import pytest
import yaml
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver

from annotations.models import Role

pytestmark = pytest.mark.django_db

UNDOCUMENTED = {"/api/schema/", "/api/docs/"}


def _api_routes() -> set[str]:
    """Every /api/ route, in OpenAPI's ``{param}`` spelling."""
    routes: set[str] = set()

    def walk(patterns, prefix: str) -> None:
        for p in patterns:
            route = prefix + str(p.pattern)
            if isinstance(p, URLResolver):
                walk(p.url_patterns, route)
            elif isinstance(p, URLPattern):
                routes.add("/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route))

    walk(get_resolver().url_patterns, "")
    return {r for r in routes if r.startswith("/api/")} - UNDOCUMENTED


def test_schema_validates_without_warnings_and_lists_every_endpoint(tmp_path):
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    assert set(schema["paths"]) == _api_routes()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation["responses"], f"{method} {path} documents no response"


def test_rounds_that_generate_take_the_same_serving_fields_as_other_rounds(tmp_path):
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--file", str(out))
    components = yaml.safe_load(out.read_text())["components"]["schemas"]
    serving = {
        "agreement_share",
        "repeat_share",
        "serving_policy",
        "reward_model_version",
    }
    for name in ("RoundCreateInputRequest", "RoundGenerateInputRequest"):
        assert serving <= set(components[name]["properties"]), name
    assert (
        components["RoundGenerateInputRequest"]["properties"]["repeat_share"]
        == components["RoundCreateInputRequest"]["properties"]["repeat_share"]
    )


def test_schema_endpoint_needs_a_login(api, client_as):
    assert api.get("/api/schema/").status_code in (401, 403)
    assert client_as(Role.PHYSICIAN).get("/api/schema/").status_code == 200


def test_docs_page_loads_nothing_from_other_hosts(client_as):
    response = client_as(Role.RESEARCHER).get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "cdn" not in html.lower()
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert assets
    for asset in assets:
        assert asset.startswith("/static/drf_spectacular_sidecar/"), asset
        assert finders.find(asset.removeprefix("/static/")), f"{asset} is not shipped"
