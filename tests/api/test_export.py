"""Ratings export over the API: streamed CSV, escaped, outside the transaction."""

from __future__ import annotations

import csv
import io
import zipfile

import pytest
from django.urls import resolve

from annotations.export_pairs import PAIR_COLUMNS
from annotations.exports import EXPORT_COLUMNS
from annotations.models import AuditEvent, Role
from annotations.rating.submit import rating_submit

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


def _rate_two(rnd, physician, served, *, scores=(3, 1)):
    images = []
    for score in scores:
        image = served(rnd, physician)
        images.append(image)
        rating_submit(round=rnd, rater=physician, image=image, score=score)
    return images


def test_pairs_export_streams_escaped_pairs_and_is_audited(
    client_as, make_round, served, physician
):
    rnd = make_round(2)
    for item in rnd.items.all():
        item.image.prompt = "@cmd prompt"
        item.image.save(update_fields=["prompt"])
    high, low = _rate_two(rnd, physician, served)
    response = client_as(Role.RESEARCHER).get(f"/api/export/pairs.csv?round={rnd.pk}")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert f"medrlhf-pairs-round-{rnd.pk}-" in response["Content-Disposition"]
    rows = _csv(response)
    assert list(rows[0]) == list(PAIR_COLUMNS)
    assert [(r["chosen_image_uid"], r["rejected_image_uid"]) for r in rows] == [
        (high.uid.hex, low.uid.hex)
    ]
    assert rows[0]["prompt"] == "'@cmd prompt"
    assert AuditEvent.objects.filter(action="export_pairs").count() == 1


def test_dataset_export_streams_a_zip_and_is_audited(
    client_as, make_round, served, physician
):
    rnd = make_round(2)
    _rate_two(rnd, physician, served)
    response = client_as(Role.ADMIN).get(f"/api/export/dataset.zip?round={rnd.pk}")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/zip"
    body = b"".join(response.streaming_content)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        lines = archive.read("metadata.jsonl").decode().splitlines()
    assert len(lines) == 2
    assert AuditEvent.objects.filter(action="export_dataset").count() == 1


@pytest.mark.parametrize("path", ["pairs.csv", "dataset.zip"])
def test_new_exports_refuse_an_unknown_or_malformed_round(client_as, path):
    client = client_as(Role.RESEARCHER)
    assert client.get(f"/api/export/{path}?round=999999").status_code == 404
    assert client.get(f"/api/export/{path}?round=x").status_code == 400


@pytest.mark.parametrize("path", ["pairs.csv", "dataset.zip"])
def test_new_export_views_run_outside_the_request_transaction(path):
    view = resolve(f"/api/export/{path}").func
    assert "default" in view._non_atomic_requests


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("ratings.csv", "ratings"),
        ("pairs.csv", "pairs"),
        ("dataset.zip", "dataset"),
    ],
)
def test_the_export_page_and_the_api_name_a_download_alike(
    client_as, make_round, path: str, name: str
):
    import re

    rnd = make_round(2)
    client = client_as(Role.RESEARCHER)
    client.force_login(client.user)  # the page takes the session, the API both
    ext = path.rsplit(".", 1)[1]
    for query, scope in ((f"?round={rnd.pk}", f"round-{rnd.pk}"), ("", "all")):
        for url in (f"/api/export/{path}{query}", f"/export/{path}{query}"):
            response = client.get(url)
            assert response.status_code == 200, url
            b"".join(response.streaming_content)
            header = response["Content-Disposition"]
            match = re.fullmatch(
                rf'attachment; filename="medrlhf-{name}-{scope}-'
                rf'\d{{8}}-\d{{6}}\.{ext}"',
                header,
            )
            assert match, header
