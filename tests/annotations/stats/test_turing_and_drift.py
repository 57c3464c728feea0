"""Visual Turing test and session drift against hand-worked values and scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import linregress, mannwhitneyu

from annotations.stats.drift import drift, session_positions
from annotations.stats.turing import mean_estimate, turing_by_group, visual_turing_test


def test_p_synthetic_at_least_real_counts_ties_half_by_hand() -> None:
    # real 3 3 2, synthetic 3 2 1 1: 12 pairs.
    # S=3: ties with two 3s (0.5 + 0.5) and beats the 2 (1)   -> 2
    # S=2: loses to two 3s, ties the 2 (0.5)                  -> 0.5
    # S=1 twice: loses every pair                             -> 0
    # P = 2.5 / 12
    result = visual_turing_test([3, 3, 2], [3, 2, 1, 1], n_boot=0)

    assert result.p_synthetic_at_least_real.value == pytest.approx(2.5 / 12)
    assert result.p_synthetic_at_least_real.n == 7
    assert result.real.counts == {1: 0, 2: 1, 3: 2}
    assert result.synthetic.counts == {1: 2, 2: 1, 3: 1}


def test_p_synthetic_at_least_real_equals_the_mann_whitney_auc() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        real = list(rng.integers(1, 4, 30))
        synthetic = list(rng.integers(1, 4, 45))
        u = mannwhitneyu(synthetic, real).statistic

        result = visual_turing_test(real, synthetic, n_boot=0)

        assert result.p_synthetic_at_least_real.value == pytest.approx(u / (30 * 45))


def test_indistinguishable_images_give_one_half_inside_the_interval() -> None:
    rng = np.random.default_rng(1)
    real = list(rng.integers(1, 4, 200))
    synthetic = list(rng.integers(1, 4, 200))

    p = visual_turing_test(
        real, synthetic, n_boot=500, seed=3
    ).p_synthetic_at_least_real

    assert p.ci_low < 0.5 < p.ci_high
    assert p.n_boot == 500
    assert (
        p
        == visual_turing_test(
            real, synthetic, n_boot=500, seed=3
        ).p_synthetic_at_least_real
    )


def test_worse_synthetic_images_give_an_interval_below_one_half() -> None:
    p = visual_turing_test([3] * 30 + [2] * 10, [1] * 25 + [2] * 15, n_boot=400)
    assert p.p_synthetic_at_least_real.ci_high < 0.5


def test_turing_test_without_real_controls_says_so() -> None:
    result = visual_turing_test([], [1, 2, 3])

    assert result.p_synthetic_at_least_real.value is None
    assert result.p_synthetic_at_least_real.note == "no real images rated"
    assert result.synthetic.mean.value == pytest.approx(2.0)
    assert result.real.mean.value is None


def test_mean_estimate_has_a_student_t_interval() -> None:
    # mean 8/3, sd 0.57735, se 1/3, t(2, .975) = 4.3027 -> half-width 1.4342
    est = mean_estimate([3, 3, 2])

    assert est.value == pytest.approx(8 / 3)
    assert est.ci_high - est.value == pytest.approx(1.4342, abs=1e-4)
    assert mean_estimate([2]).ci_low is None


def test_turing_by_group_splits_records_into_groups_and_arms() -> None:
    records = [("dr_a", False, 3), ("dr_a", True, 1), ("dr_b", True, 2)]

    out = turing_by_group(records, n_boot=0)

    assert out["dr_a"].p_synthetic_at_least_real.value == 0.0
    assert out["dr_b"].real.n == 0 and out["dr_b"].synthetic.n == 1


def test_a_score_outside_the_scale_is_refused() -> None:
    with pytest.raises(ValueError, match="score 7"):
        visual_turing_test([7], [1])


def test_session_positions_restart_after_a_long_pause() -> None:
    assert session_positions([0, 10, 20, 4000, 4010], gap_seconds=1800) == [
        1,
        2,
        3,
        1,
        2,
    ]
    with pytest.raises(ValueError, match="ascending"):
        session_positions([5, 1])


def test_drift_slope_matches_a_hand_computed_line_and_scipy() -> None:
    # x 1..4, y 1 2 2 3: Sxy = 3, Sxx = 5 -> slope 0.6, intercept 2 - 0.6*2.5 = 0.5
    d = drift([1, 2, 3, 4], [1, 2, 2, 3])

    assert d.slope.value == pytest.approx(0.6)
    assert d.intercept == pytest.approx(0.5)
    fit = linregress([1, 2, 3, 4], [1, 2, 2, 3])
    # t(2, .975) = 4.3027
    assert d.slope.ci_high - 0.6 == pytest.approx(4.3027 * fit.stderr, rel=1e-4)


def test_drift_detects_fatigue_and_not_its_absence() -> None:
    rng = np.random.default_rng(5)
    positions = np.tile(np.arange(1, 101), 5)
    tired = np.clip(np.rint(2.6 - 0.01 * positions + rng.normal(0, 0.5, 500)), 1, 3)
    # A flat series has a 5 % chance of a false alarm; this seed is not one.
    steady = np.clip(np.rint(2.0 + np.random.default_rng(7).normal(0, 0.5, 500)), 1, 3)

    falling = drift(list(positions), list(tired)).slope
    flat = drift(list(positions), list(steady)).slope

    assert falling.ci_high < 0
    assert flat.ci_low < 0 < flat.ci_high


def test_drift_bins_positions_for_the_chart_and_handles_tiny_inputs() -> None:
    d = drift(list(range(1, 41)), [1.0] * 20 + [3.0] * 20, max_bins=4)

    assert [(b.first, b.last, b.n, b.mean) for b in d.bins] == [
        (1, 10, 10, 1.0),
        (11, 20, 10, 1.0),
        (21, 30, 10, 3.0),
        (31, 40, 10, 3.0),
    ]
    assert drift([], []).slope.note == "no ratings"
    assert drift([1, 2], [1, 2]).slope.value is None
    assert drift([1, 1, 1], [1, 2, 3]).slope.note == "every rating at one position"


def test_a_constant_series_has_slope_zero_with_a_zero_width_interval() -> None:
    d = drift([1, 2, 3, 4], [10.0, 10.0, 10.0, 10.0])

    assert (d.slope.value, d.slope.ci_low, d.slope.ci_high) == (0.0, 0.0, 0.0)
    assert d.intercept == 10.0
