"""A physician's rating flow over the API: next, rate, skip, undo, mine."""

from __future__ import annotations

import pytest

from annotations.models import Rating, Role
from annotations.services.rounds import round_close

pytestmark = pytest.mark.django_db


def _rate(client, rnd, image, score=2, **extra):
    body = {"round": rnd.pk, "image": str(image.uid), "score": score, **extra}
    return client.post("/api/ratings/", body, format="json")


def test_next_serves_an_image_with_its_file_url_and_progress(client_as, make_round):
    client = client_as(Role.PHYSICIAN)
    rnd = make_round(2)
    response = client.get(f"/api/rounds/{rnd.pk}/next/")
    assert response.status_code == 200
    body = response.json()
    image = body["image"]
    assert set(image) == {
        "uid",
        "prompt",
        "modality",
        "width",
        "height",
        "file_url",
        "channels",
        "bit_depth",
        "value_unit",
        "value_offset",
        "value_step",
    }
    assert image["file_url"] == f"/api/rounds/{rnd.pk}/images/{image['uid']}/"
    assert body["progress"]["my_remaining"] == 2
    fetched = client.get(image["file_url"])
    assert fetched.status_code == 200
    assert fetched["Content-Type"] == "image/png"
    again = client.get(f"/api/rounds/{rnd.pk}/next/").json()
    assert again["image"]["uid"] == image["uid"]


def test_next_answers_204_once_every_image_is_rated(client_as, make_round):
    client = client_as(Role.PHYSICIAN)
    rnd = make_round(2)
    for _ in range(2):
        uid = client.get(f"/api/rounds/{rnd.pk}/next/").json()["image"]["uid"]
        body = {"round": rnd.pk, "image": uid, "score": 3}
        assert client.post("/api/ratings/", body, format="json").status_code == 201
    response = client.get(f"/api/rounds/{rnd.pk}/next/")
    assert response.status_code == 204
    assert response.content == b""


def test_rating_is_created_then_a_double_submit_returns_the_same_row(
    client_as, make_round, served
):
    client = client_as(Role.PHYSICIAN)
    rnd = make_round(1)
    image = served(rnd, client.user)
    first = _rate(
        client, rnd, image, flags=["artifact"], comment="noisy", time_taken_ms=900
    )
    second = _rate(client, rnd, image, flags=["artifact"], comment="noisy")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert first.json()["flags"] == ["artifact"]
    assert first.json()["time_taken_ms"] == 900
    assert Rating.objects.filter(round=rnd).count() == 1


def test_a_different_score_for_a_rated_image_is_409(client_as, make_round, served):
    client = client_as(Role.PHYSICIAN)
    rnd = make_round(1)
    image = served(rnd, client.user)
    _rate(client, rnd, image, score=3)
    response = _rate(client, rnd, image, score=1)
    assert response.status_code == 409
    assert response.json()["code"] == "already_rated"


def test_rating_in_a_closed_round_is_409_and_stores_nothing(
    client_as, make_round, served, admin_user
):
    client = client_as(Role.PHYSICIAN)
    rnd = make_round(1)
    image = served(rnd, client.user)
    round_close(round=rnd, actor=admin_user)
    response = _rate(client, rnd, image)
    assert response.status_code == 409
    assert response.json() == {
        "detail": "this round is not open for rating",
        "code": "round_not_open",
    }
    assert not Rating.objects.exists()


def test_rating_an_image_not_served_is_409(client_as, make_round, served, make_user):
    client = client_as(Role.PHYSICIAN)
    rnd = make_round(2)
    someone_elses = served(rnd, make_user(Role.PHYSICIAN))
    response = _rate(client, rnd, someone_elses)
    assert response.status_code == 409
    assert response.json()["code"] == "not_served"


def test_an_unknown_image_uid_answers_like_one_not_served(client_as, make_round):
    client = client_as(Role.PHYSICIAN)
    rnd = make_round(1)
    body = {
        "round": rnd.pk,
        "image": "00000000-0000-4000-8000-000000000000",
        "score": 2,
    }
    response = client.post("/api/ratings/", body, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "not_served"


@pytest.mark.parametrize(
    ("field", "value"),
    [("score", 4), ("score", 0), ("flags", ["pretty"]), ("time_taken_ms", -1)],
)
def test_invalid_rating_fields_are_named_in_a_400(
    client_as, make_round, served, field, value
):
    client = client_as(Role.PHYSICIAN)
    rnd = make_round(1)
    image = served(rnd, client.user)
    response = _rate(client, rnd, image, **{field: value})
    assert response.status_code == 400
    assert field in response.json()


def test_a_physician_outside_the_round_raters_cannot_see_it(
    client_as, make_round, make_user
):
    client = client_as(Role.PHYSICIAN)
    rnd = make_round(1, raters=[make_user(Role.PHYSICIAN)])
    assert client.get(f"/api/rounds/{rnd.pk}/next/").status_code == 404
    assert client.get(f"/api/rounds/{rnd.pk}/").status_code == 404
    assert client.get("/api/rounds/").json()["count"] == 0


def test_skip_then_next_serves_another_image(client_as, make_round, served):
    client = client_as(Role.PHYSICIAN)
    rnd = make_round(2)
    image = served(rnd, client.user)
    response = client.post(
        f"/api/rounds/{rnd.pk}/skip/", {"image": str(image.uid)}, format="json"
    )
    assert response.status_code == 204
    nxt = client.get(f"/api/rounds/{rnd.pk}/next/").json()["image"]["uid"]
    assert nxt != str(image.uid)


def test_undo_retracts_the_last_rating_and_serves_its_image_again(
    client_as, make_round, served
):
    client = client_as(Role.PHYSICIAN)
    rnd = make_round(2)
    image = served(rnd, client.user)
    rating_id = _rate(client, rnd, image).json()["id"]
    response = client.post(f"/api/rounds/{rnd.pk}/undo/")
    assert response.status_code == 200
    assert response.json()["rating"] == rating_id
    assert response.json()["image"] == str(image.uid)
    assert Rating.objects.get(pk=rating_id).retracted_at is not None
    nxt = client.get(f"/api/rounds/{rnd.pk}/next/").json()["image"]["uid"]
    assert nxt == str(image.uid)
    assert client.post(f"/api/rounds/{rnd.pk}/undo/").status_code == 409


def test_mine_lists_only_own_ratings_paginated(
    client_as, make_round, served, make_user
):
    client = client_as(Role.PHYSICIAN)
    other = client_as(Role.PHYSICIAN)
    rnd = make_round(4)
    for c in (client, client, other):
        _rate(c, rnd, served(rnd, c.user))
    page = client.get("/api/ratings/mine/?limit=1").json()
    assert page["count"] == 2 and len(page["results"]) == 1 and page["next"]
    everything = client.get("/api/ratings/mine/").json()["results"]
    assert {r["id"] for r in everything} == set(
        Rating.objects.filter(rater=client.user).values_list("id", flat=True)
    )
    assert not {"source", "model_version", "is_control"} & set(everything[0])


def test_a_physician_cannot_get_another_physicians_rating(
    client_as, make_round, served
):
    client = client_as(Role.PHYSICIAN)
    other = client_as(Role.PHYSICIAN)
    rnd = make_round(2)
    theirs = _rate(other, rnd, served(rnd, other.user)).json()["id"]
    mine = _rate(client, rnd, served(rnd, client.user)).json()["id"]
    assert client.get(f"/api/ratings/{theirs}/").status_code == 404
    assert client.get(f"/api/ratings/{mine}/").status_code == 200
    assert client_as(Role.RESEARCHER).get(f"/api/ratings/{theirs}/").status_code == 200
