"""The image held as a physician's next one, so the page can preload it."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotations.models import Assignment, Role
from annotations.rating.serving import (
    assignment_next,
    assignment_skip,
    assignment_upcoming,
)
from annotations.rating.submit import rating_submit, rating_undo
from annotations.services.rounds import round_close

pytestmark = pytest.mark.django_db


def test_the_held_image_becomes_current_after_the_rating(make_round, physician):
    rnd = make_round(3)
    current = assignment_next(round=rnd, rater=physician)
    held = assignment_upcoming(round=rnd, rater=physician)
    assert held.round_image_id != current.round_image_id
    # Asking again holds the same image, and a reload shows the same current.
    assert assignment_upcoming(round=rnd, rater=physician).pk == held.pk
    assert assignment_next(round=rnd, rater=physician).pk == current.pk
    rating_submit(round=rnd, rater=physician, image=current.round_image.image, score=3)
    shown = assignment_next(round=rnd, rater=physician)
    assert shown.pk == held.pk
    shown.refresh_from_db()
    assert not shown.upcoming
    # Its clock starts when it is shown, not when it was held.
    assert shown.served_at > held.served_at


def test_a_held_image_is_not_served_to_another_physician(
    make_round, physician, make_user
):
    rnd = make_round(2)
    assignment_next(round=rnd, rater=physician)
    held = assignment_upcoming(round=rnd, rater=physician)
    other = make_user(Role.PHYSICIAN)
    assert assignment_next(round=rnd, rater=other) is None
    assert held is not None


def test_nothing_is_held_when_nothing_is_left(make_round, physician):
    rnd = make_round(1)
    assignment_next(round=rnd, rater=physician)
    assert assignment_upcoming(round=rnd, rater=physician) is None


def test_nothing_is_held_without_a_current_image(make_round, physician):
    rnd = make_round(2)
    assert assignment_upcoming(round=rnd, rater=physician) is None
    assert not Assignment.objects.exists()


def test_skip_shows_the_held_image(make_round, physician):
    rnd = make_round(3)
    current = assignment_next(round=rnd, rater=physician)
    held = assignment_upcoming(round=rnd, rater=physician)
    assignment_skip(round=rnd, rater=physician, image=current.round_image.image)
    assert assignment_next(round=rnd, rater=physician).pk == held.pk


def test_undo_brings_the_rated_image_back_before_the_held_one(make_round, physician):
    rnd = make_round(3)
    first = assignment_next(round=rnd, rater=physician)
    held = assignment_upcoming(round=rnd, rater=physician)
    rating_submit(round=rnd, rater=physician, image=first.round_image.image, score=1)
    rating_undo(round=rnd, rater=physician)
    assert assignment_next(round=rnd, rater=physician).pk == first.pk
    assert assignment_upcoming(round=rnd, rater=physician).pk == held.pk


def test_closing_a_round_releases_the_held_image(make_round, physician, admin_user):
    rnd = make_round(3)
    assignment_next(round=rnd, rater=physician)
    held = assignment_upcoming(round=rnd, rater=physician)
    round_close(round=rnd, actor=admin_user)
    held.refresh_from_db()
    assert held.expired_at is not None


def test_every_image_is_rated_once_with_the_page_holding_the_next(
    client, make_round, physician
):
    rnd = make_round(4)
    client.force_login(physician)
    rated = []
    for _ in range(4):
        page = client.get(reverse("rate", args=[rnd.pk]))
        image = page.context["image"]
        rated.append(image.uid)
        client.post(
            reverse("rate-submit", args=[rnd.pk]),
            {"image": str(image.uid), "score": "2"},
        )
    assert len(set(rated)) == 4
    assert client.get(reverse("rate", args=[rnd.pk])).context["image"] is None
    assert not Assignment.objects.filter(upcoming=True).exists()
