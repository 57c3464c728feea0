"""Row labels of the dashboard's SVG charts."""

from __future__ import annotations

import pytest

from annotations.views.charts import ShareRow, fit_label, share_intervals


def test_a_label_that_fits_is_left_whole() -> None:
    assert fit_label("Round 1 · tiny base", 28) == "Round 1 · tiny base"


def test_a_long_round_and_version_label_keeps_the_start_of_both() -> None:
    label = "Demo round 2: the base model against real images · retina tuned 1"

    shown = fit_label(label, 28)

    assert len(shown) == 28
    assert shown.startswith("Demo round 2")
    assert " · retina tune" in shown


def test_two_versions_of_one_round_stay_told_apart() -> None:
    name = "Demo round 2: the base model against real images"

    assert fit_label(f"{name} · tiny base", 28) != fit_label(f"{name} · tuned 1", 28)


@pytest.mark.parametrize("fits", [4, 10, 28])
def test_a_label_without_parts_is_cut_at_its_end(fits: int) -> None:
    shown = fit_label("x" * 60, fits)

    assert len(shown) == fits
    assert shown.endswith("…")


def test_the_whole_label_stays_in_the_chart_for_hover() -> None:
    label = "Demo round 2: the base model against real images · retina tuned 1"

    svg = share_intervals([ShareRow(label, 3, 10)], title="Share rated 3")

    assert f"<title>{label}</title>" in svg


@pytest.mark.parametrize("fits", [1, 2, 4, 6, 9, 12])
def test_a_narrow_column_never_gets_more_characters_than_it_holds(fits: int) -> None:
    label = "Demo round 2: the base model against real images · retina tuned 1"

    shown = fit_label(label, fits)

    assert 0 < len(shown) <= fits
