"""The rating request path asks the database a bounded number of questions.

Counted as a physician's browser-less client sends them: token auth, then
``GET /api/rounds/{id}/next/`` and ``POST /api/ratings/``.  The bounds include
the token look-up (which brings the roles along), the savepoint pair of the
service's transaction (inside the test's transaction; a server sends BEGIN and
COMMIT instead), the audit insert and the progress counts.  Measured before
the lean path: next 21 (PostgreSQL) / 19 (SQLite), submit 19 / 18; after the
ORM was taken off the hot statements (``annotations.leansql``): next 12
(13 when the random start lies past every candidate and the search wraps),
again 9, submit 11.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from annotations.models import Assignment, Rating, Role, ServingPolicy
from annotations.rating import serving as ratings_service
from annotations.services.tokens import token_issue

pytestmark = pytest.mark.django_db

# Rounds this small recount their totals on every request (see
# selectors.ROUND_TOTALS_CACHE_MIN_ITEMS); that count is one of the queries.
# A new image is looked for from a random point of the shuffled order and,
# when nothing lies above that point, once more from the start: one more query
# (12 without the wrap; in this 5-image round about 1 request in 5 wraps).
NEXT_NEW_MAX = 13
NEXT_AGAIN_MAX = 9
SUBMIT_MAX = 11


@pytest.fixture
def rater_client(make_user: Any) -> APIClient:
    user = make_user(Role.PHYSICIAN)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_issue(user=user)[0]}")
    client.user = user
    return client


def _next(client: APIClient, rnd: Any) -> Any:
    return client.get(f"/api/rounds/{rnd.pk}/next/")


@pytest.mark.parametrize(
    ("start", "bound"),
    [(0, NEXT_NEW_MAX - 1), (2**62 - 1, NEXT_NEW_MAX)],
    ids=["from-random-point", "wraps-to-start"],
)
def test_next_serving_a_new_image_stays_within_its_query_bound(
    rater_client, make_round, django_assert_max_num_queries, monkeypatch, start, bound
):
    rnd = make_round(5, raters_per_image=2)
    _next(rater_client, rnd)  # first request of the client: sessions, caches
    first = _next(rater_client, rnd).json()["image"]["uid"]
    body = {"round": rnd.pk, "image": first, "score": 2}
    assert rater_client.post("/api/ratings/", body, format="json").status_code == 201
    # The random point of the shuffled order: 0 finds a candidate above it at
    # once; the largest key finds none and searches again from the start.
    monkeypatch.setattr(ratings_service.secrets, "randbits", lambda bits: start)
    with django_assert_max_num_queries(bound):
        response = _next(rater_client, rnd)
    assert response.status_code == 200
    assert response.json()["image"]["uid"] != first


def test_next_serving_the_current_image_again_stays_within_its_bound(
    rater_client, make_round, django_assert_max_num_queries
):
    rnd = make_round(3)
    uid = _next(rater_client, rnd).json()["image"]["uid"]
    with django_assert_max_num_queries(NEXT_AGAIN_MAX):
        response = _next(rater_client, rnd)
    assert response.json()["image"]["uid"] == uid


def test_submit_stays_within_its_query_bound_and_records_one_rating(
    rater_client, make_round, django_assert_max_num_queries
):
    rnd = make_round(3)
    uid = _next(rater_client, rnd).json()["image"]["uid"]
    body = {"round": rnd.pk, "image": uid, "score": 3}
    with django_assert_max_num_queries(SUBMIT_MAX):
        response = rater_client.post("/api/ratings/", body, format="json")
    assert response.status_code == 201
    with django_assert_max_num_queries(SUBMIT_MAX):
        again = rater_client.post("/api/ratings/", body, format="json")
    assert again.status_code == 200 and again.json()["id"] == response.json()["id"]
    assert Rating.objects.filter(round=rnd, rater=rater_client.user).count() == 1


def test_next_reads_the_round_and_its_rater_list_only_with_the_check_and_lock(
    rater_client, make_round
):
    rnd = make_round(3)
    rnd.raters.add(rater_client.user)
    with CaptureQueriesContext(connection) as captured:
        assert _next(rater_client, rnd).status_code == 200
    sql = [q["sql"] for q in captured.captured_queries]
    # The view's permission check and the service's share lock, nothing else.
    assert sum('FROM "annotations_round"' in s for s in sql) == 2
    assert sum("annotations_round_raters" in s for s in sql) == 2


# The rater's showings are counted once (repeats and agreement owed), the
# physicians of the round once a minute (cached), and a due repeat or
# agreement image is one more look-up (two when the look-up from a random
# point wraps around).  Measured with the lean path: 13-14 after the first
# request (17: physicians counted, caches cold), one more on a wrap-around.
NEXT_SERVING_MAX = 15


def test_next_in_a_round_with_agreement_repeats_and_uncertainty_stays_bounded(
    rater_client, make_round, django_assert_max_num_queries
):
    rnd = make_round(
        30,
        agreement_share=0.3,
        repeat_share=0.5,
        serving_policy=ServingPolicy.UNCERTAINTY,
    )
    counts = []
    for _ in range(16):
        with CaptureQueriesContext(connection) as captured:
            body = _next(rater_client, rnd).json()
        counts.append(len(captured.captured_queries))
        rating = {"round": rnd.pk, "image": body["image"]["uid"], "score": 2}
        assert rater_client.post("/api/ratings/", rating, format="json").status_code
    policies = set(Assignment.objects.values_list("policy", flat=True))
    assert {"agreement", "uncertainty", "repeat"} <= policies
    assert max(counts[1:]) <= NEXT_SERVING_MAX, counts
