"""The hand-written answers of "next" and "submit" are the documented ones.

Both views build their JSON without a serializer (bench/hotpath.py); the
serializers stay as the OpenAPI schema's source.  Here every key and value of
the written-out answer is compared with what the serializer makes of the
same objects, so the two cannot drift apart.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from annotations.api.ratings import RatingOutputSerializer
from annotations.api.rounds import RoundNextApi, RoundProgressSerializer
from annotations.models import Assignment, Rating, Role
from annotations.presentation import round_presentation
from annotations.selectors import round_progress
from annotations.services.tokens import token_issue

pytestmark = pytest.mark.django_db


@pytest.fixture
def rater(make_user):
    user = make_user(Role.PHYSICIAN)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_issue(user=user)[0]}")
    return user, client


def test_next_answers_exactly_what_its_serializer_documents(rater, make_round):
    user, client = rater
    rnd = make_round(3, raters_per_image=2)
    answer = client.get(f"/api/rounds/{rnd.pk}/next/").json()
    assignment = Assignment.objects.select_related("round_image__image").get(
        round=rnd, rater=user
    )
    image = assignment.round_image.image
    documented = RoundNextApi.OutputSerializer(
        {
            "round": rnd.pk,
            "image": {
                "uid": image.uid,
                "prompt": image.prompt,
                "modality": image.modality,
                "file_url": f"/api/rounds/{rnd.pk}/images/{image.uid}/",
                **round_presentation(rnd, image.modality).fields(),
            },
            "served_at": assignment.served_at,
            "progress": round_progress(round=rnd, user=user),
        }
    ).data
    assert answer == documented
    assert set(answer["image"]) == {
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
    assert set(answer["progress"]) == set(RoundProgressSerializer().fields)


def test_submit_answers_exactly_what_its_serializer_documents(rater, make_round):
    user, client = rater
    rnd = make_round(2)
    uid = client.get(f"/api/rounds/{rnd.pk}/next/").json()["image"]["uid"]
    body = {
        "round": rnd.pk,
        "image": uid,
        "score": 1,
        "flags": ["implausible"],
        "comment": "=cmd|' /C calc'!A0",
        "time_taken_ms": 2500,
    }
    created = client.post("/api/ratings/", body, format="json")
    again = client.post("/api/ratings/", body, format="json")
    assert (created.status_code, again.status_code) == (201, 200)
    rating = Rating.objects.select_related("image").get(round=rnd, rater=user)
    documented = RatingOutputSerializer(rating).data
    assert created.json() == documented
    assert again.json() == documented
    assert documented["retracted_at"] is None and documented["flags"] == ["implausible"]
