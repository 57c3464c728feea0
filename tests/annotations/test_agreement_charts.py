"""The agreement page's SVG charts: round ticks, escaped labels, n on every figure."""

from __future__ import annotations

import pytest

from annotations.stats.agreement import Estimate
from annotations.stats.drift import drift
from annotations.stats.raters import KappaMatrix
from annotations.views.agreement_charts import (
    ForestRow,
    fmt_ci,
    forest,
    kappa_heatmap,
    nice_ceiling,
    nice_ticks,
    trend,
)


@pytest.mark.parametrize(
    ("low", "high", "most", "ticks"),
    [
        (0, 1, 6, [0, 0.2, 0.4, 0.6, 0.8, 1]),
        (-0.2, 1, 6, [0, 0.25, 0.5, 0.75, 1]),
        (-0.2, 1, 7, [-0.2, 0, 0.2, 0.4, 0.6, 0.8, 1]),
        (1, 3, 6, [1, 1.5, 2, 2.5, 3]),
        (0, 17, 6, [0, 5, 10, 15]),
    ],
)
def test_nice_ticks_are_round_numbers_inside_the_range(low, high, most, ticks):
    assert nice_ticks(low, high, most) == pytest.approx(ticks)


def test_nice_ceiling_rounds_an_axis_top_up() -> None:
    assert nice_ceiling(15.9) == 20
    assert nice_ceiling(5.0) == 5


def test_heatmap_escapes_names_and_shows_kappa_and_n_per_cell() -> None:
    matrix = KappaMatrix(
        raters=["<b>x</b>", "dr_b"],
        kappa=[[None, 0.5], [0.5, None]],
        n=[[4, 3], [3, 5]],
    )

    svg = str(kappa_heatmap(matrix, title="κ"))

    assert "<b>x</b>" not in svg and "&lt;b&gt;x&lt;/b&gt;" in svg
    assert svg.count(">0.50<") == 2 and svg.count(">n=3<") == 2


def test_forest_writes_value_interval_and_n_and_marks_undefined() -> None:
    rows = [
        ForestRow("a", [("κ", Estimate(0.62, 40, 0.41, 0.8))]),
        ForestRow("b", [("κ", Estimate(None, 0, note="no overlap"))]),
        ForestRow("c", [("κ", Estimate(0.7, 3), "3 colleagues")]),
    ]

    svg = str(forest(rows, title="t", reference=0.5, reference_label="half"))

    assert "0.62 [0.41, 0.80]  n=40" in svg
    assert "undefined" in svg
    assert "0.70  3 colleagues" in svg
    assert 'class="reference"' in svg


def test_trend_draws_bins_and_the_fitted_line() -> None:
    fit = drift(list(range(1, 41)), [2.0 + 0.01 * i for i in range(40)])

    svg = str(trend(fit, title="t", y_label="score", y_low=1, y_high=3))

    assert svg.count('class="dot dot-hi"') == len(fit.bins)
    assert 'class="fit"' in svg


def test_fmt_ci_without_an_interval_or_value() -> None:
    assert fmt_ci(Estimate(0.5, 3)) == "0.50"
    assert fmt_ci(Estimate(None, 0)) == "undefined"
