"""Ratings export over the API: streamed CSV, escaped, outside the transaction."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import resolve

from annotations.exports import EXPORT_COLUMNS
from annotations.models import AuditEvent, Role
from annotations.services.ratings import rating_submit

pytestmark = pytest.mark.django_db


def _csv(response) -> list[dict[str, str]]:
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_export_streams_one_row_per_rating_with_formula_cells_escaped(
    client_as, make_round, served, physician
):
    rnd = make_round(2)
    image = served(rnd, physician)
    image.prompt = '=HYPERLINK("http://evil")'
    image.save(update_fields=["prompt"])
    rating_submit(round=rnd, rater=physician, image=image, score=1, comment="@me")
    response = client_as(Role.RESEARCHER).get(f"/api/export/ratings.csv?round={rnd.pk}")
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = _csv(response)
    assert len(rows) == 1
    assert list(rows[0]) == list(EXPORT_COLUMNS)
    assert rows[0]["prompt"] == '\'=HYPERLINK("http://evil")'
    assert rows[0]["comment"] == "'@me"
    assert rows[0]["rating"] == "1" and rows[0]["rater"] == physician.username
    assert AuditEvent.objects.filter(action="export_ratings").count() == 1


def test_export_of_all_rounds_and_of_an_unknown_round(
    client_as, make_round, served, physician
):
    for name in ("a", "b"):
        rnd = make_round(1, name=name)
        rating_submit(round=rnd, rater=physician, image=served(rnd, physician), score=2)
    client = client_as(Role.ADMIN)
    assert len(_csv(client.get("/api/export/ratings.csv"))) == 2
    assert client.get("/api/export/ratings.csv?round=999999").status_code == 404
    assert client.get("/api/export/ratings.csv?round=x").status_code == 400


def test_export_accepts_a_client_asking_for_csv(client_as):
    response = client_as(Role.RESEARCHER).get(
        "/api/export/ratings.csv", HTTP_ACCEPT="text/csv"
    )
    assert response.status_code == 200


def test_export_view_runs_outside_the_request_transaction():
    view = resolve("/api/export/ratings.csv").func
    assert "default" in view._non_atomic_requests
