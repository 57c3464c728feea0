"""The researcher's export page and its streamed CSV download."""

from __future__ import annotations

import csv
import io
import zipfile

import pytest
from django.urls import reverse

from annotations.models import AuditEvent
from annotations.rating.serving import assignment_next
from annotations.rating.submit import rating_submit

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _rate_all(rnd, rater, comment=""):
    while (asg := assignment_next(round=rnd, rater=rater)) is not None:
        rating_submit(
            round=rnd,
            rater=rater,
            image=asg.round_image.image,
            score=2,
            comment=comment,
        )


def _download(client, **params):
    response = client.get(reverse("export-download"), params)
    body = b"".join(response.streaming_content).decode()
    return response, list(csv.DictReader(io.StringIO(body)))


def test_download_is_a_streamed_csv_attachment(
    client, make_round, physician, researcher
):
    _rate_all(make_round(3), physician)
    client.force_login(researcher)
    response, rows = _download(client)
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment; filename=")
    assert len(rows) == 3
    assert {"image_path", "rating", "modality", "expert_level", "prompt"} <= set(
        rows[0]
    )


def test_download_of_one_round_holds_only_its_ratings(
    client, make_round, physician, researcher
):
    first, second = make_round(2, name="first"), make_round(3, name="second")
    _rate_all(first, physician)
    _rate_all(second, physician)
    client.force_login(researcher)
    response, rows = _download(client, round=second.pk)
    assert {row["round"] for row in rows} == {"second"}
    assert len(rows) == 3
    assert f"round-{second.pk}" in response["Content-Disposition"]


def test_formula_cells_are_escaped(client, make_round, physician, researcher):
    _rate_all(make_round(1), physician, comment='=HYPERLINK("http://x")')
    client.force_login(researcher)
    _, rows = _download(client)
    assert rows[0]["comment"] == '\'=HYPERLINK("http://x")'


def test_download_is_audited(client, make_round, researcher):
    make_round(1)
    client.force_login(researcher)
    _download(client)
    assert AuditEvent.objects.filter(action="export_ratings", actor=researcher).exists()


def test_export_page_lists_rounds_with_a_download_form(client, make_round, researcher):
    make_round(1, name="chest round")
    client.force_login(researcher)
    html = client.get(reverse("export")).content.decode()
    assert "chest round" in html
    assert reverse("export-download") in html


def test_pairs_download_is_a_csv_of_pairs_and_audited(
    client, make_round, physician, researcher
):
    rnd = make_round(2)
    scores = iter([3, 1])
    while (asg := assignment_next(round=rnd, rater=physician)) is not None:
        image = asg.round_image.image
        image.prompt = "one prompt"
        image.save(update_fields=["prompt"])
        rating_submit(round=rnd, rater=physician, image=image, score=next(scores))
    client.force_login(researcher)
    response = client.get(reverse("export-pairs"), {"round": rnd.pk})
    body = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert response["Content-Disposition"].startswith(
        f'attachment; filename="medrlhf-pairs-round-{rnd.pk}-'
    )
    assert [(r["chosen_score"], r["rejected_score"]) for r in rows] == [("3", "1")]
    assert AuditEvent.objects.filter(action="export_pairs", actor=researcher).exists()


def test_dataset_download_is_a_zip_with_metadata(
    client, make_round, physician, researcher
):
    _rate_all(make_round(2), physician)
    client.force_login(researcher)
    response = client.get(reverse("export-dataset"))
    assert response["Content-Type"] == "application/zip"
    body = b"".join(response.streaming_content)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert len(archive.read("metadata.jsonl").splitlines()) == 2
    assert AuditEvent.objects.filter(action="export_dataset", actor=researcher).exists()


@pytest.mark.parametrize("name", ["export-pairs", "export-dataset"])
def test_physicians_may_not_download_the_new_exports(client, physician, name):
    client.force_login(physician)
    assert client.get(reverse(name)).status_code == 403
    assert not AuditEvent.objects.filter(action__startswith="export_").exists()


@pytest.mark.parametrize("name", ["export-pairs", "export-dataset"])
def test_new_exports_of_an_unknown_round_say_so(client, researcher, name):
    client.force_login(researcher)
    response = client.get(reverse(name), {"round": 999999})
    assert response.status_code == 404
    assert b"Unknown round" in response.content


def test_export_page_offers_all_three_downloads(client, make_round, researcher):
    rnd = make_round(1)
    client.force_login(researcher)
    html = client.get(reverse("export")).content.decode()
    for name in ("export-download", "export-pairs", "export-dataset"):
        assert f"{reverse(name)}?round={rnd.pk}" in html
