"""Progress a physician sees: exact in small rounds, cheap in large ones."""

from __future__ import annotations

from typing import Any

import pytest

from annotations import selectors
from annotations.models import Role
from annotations.rating.serving import assignment_next
from annotations.rating.submit import rating_submit

pytestmark = pytest.mark.django_db


def _rate(rnd: Any, rater: Any, score: int = 2) -> None:
    assignment = assignment_next(round=rnd, rater=rater)
    assert assignment is not None
    rating_submit(
        round=rnd, rater=rater, image=assignment.round_image.image, score=score
    )


def test_small_round_progress_counts_exactly(make_round, physician):
    rnd = make_round(4, raters_per_image=2)
    _rate(rnd, physician)
    progress = selectors.round_progress(round=rnd, user=physician)
    assert (progress.mine, progress.my_remaining) == (1, 3)
    assert (progress.total_items, progress.needed, progress.done) == (4, 8, 1)


def test_items_other_raters_filled_leave_my_count_of_finished_open_items(
    make_round, make_user
):
    first, second = make_user(Role.PHYSICIAN), make_user(Role.PHYSICIAN)
    rnd = make_round(3, raters_per_image=2)
    _rate(rnd, first)
    # The second physician is served from a random point; rate until the
    # first physician's item is full.
    for _ in range(3):
        _rate(rnd, second)
    progress = selectors.round_progress(round=rnd, user=first)
    # Every item now has the second rater; the first's item is full, the two
    # others are open and new to the first physician.
    assert (progress.mine, progress.my_remaining) == (1, 2)


def test_large_round_brings_the_cached_count_forward_with_own_ratings(
    make_round, physician, monkeypatch
):
    monkeypatch.setattr(selectors, "ROUND_TOTALS_CACHE_MIN_ITEMS", 3)
    rnd = make_round(6, raters_per_image=2)
    _rate(rnd, physician)
    before = selectors.round_progress(round=rnd, user=physician)
    assert (before.mine, before.my_remaining) == (1, 5)
    _rate(rnd, physician)
    _rate(rnd, physician)
    after = selectors.round_progress(round=rnd, user=physician)
    # The round totals are cached too, so open items stay at 6; the
    # physician's own two new ratings are taken off what is left for them.
    assert (after.mine, after.my_remaining) == (3, 3)


def test_large_round_reads_the_per_rater_join_once_per_ttl(
    make_round, physician, monkeypatch
):
    monkeypatch.setattr(selectors, "ROUND_TOTALS_CACHE_MIN_ITEMS", 3)
    calls = []
    real = selectors._my_finished_open

    def counting(round: Any, user: Any) -> int:
        calls.append(user.pk)
        return real(round, user)

    monkeypatch.setattr(selectors, "_my_finished_open", counting)
    rnd = make_round(6, raters_per_image=2)
    for _ in range(3):
        _rate(rnd, physician)
        selectors.round_progress(round=rnd, user=physician)
    assert calls == [physician.pk]
