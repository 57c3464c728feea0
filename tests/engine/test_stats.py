"""Paired tests, intervals and the gate's power."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest
from scipy.stats import binomtest

from models_ml.engine.stats import (
    gate_power,
    images_per_prompt_for_power,
    mcnemar_exact,
    paired_sign_flip_test,
    wilson_interval,
)


def test_with_binary_outcomes_the_sign_flip_test_is_exact_mcnemar() -> None:
    for gained, lost in [(12, 3), (30, 21), (5, 0), (7, 7), (0, 4)]:
        differences = [1] * gained + [-1] * lost + [0] * 40
        test = paired_sign_flip_test(differences)
        expected = binomtest(gained, gained + lost, 0.5).pvalue
        assert test.p_value == pytest.approx(expected, rel=1e-9)
        assert (test.better, test.worse) == (gained, lost)


def test_sign_flip_p_value_matches_full_enumeration_for_fractions() -> None:
    differences = [Fraction(1, 2), Fraction(1, 3), Fraction(-1, 6), Fraction(1)]
    observed = abs(sum(differences))
    extreme = sum(
        1
        for signs in itertools.product((1, -1), repeat=4)
        if abs(sum(s * d for s, d in zip(signs, differences, strict=True))) >= observed
    )

    test = paired_sign_flip_test(differences)

    assert test.p_value == pytest.approx(extreme / 16)
    assert test.mean_difference == pytest.approx(float(sum(differences)) / 4)


def test_no_difference_gives_p_one_and_beats_needs_the_right_direction() -> None:
    assert paired_sign_flip_test([0, 0, 0]).p_value == 1.0
    assert paired_sign_flip_test([]).p_value == 1.0
    worse = paired_sign_flip_test([-1] * 20)
    assert worse.p_value < 0.001 and not worse.beats(0.05)
    assert paired_sign_flip_test([1] * 20).beats(0.05)


def test_mcnemar_counts_gains_and_losses() -> None:
    result = mcnemar_exact([False, True, True, False], [True, True, False, True])
    assert (result["gained"], result["lost"]) == (2, 1)
    with pytest.raises(ValueError, match="differ in length"):
        mcnemar_exact([True], [True, False])


def test_wilson_interval_contains_the_share_and_handles_no_data() -> None:
    low, high = wilson_interval(40, 100)
    assert low < 0.4 < high and high - low == pytest.approx(0.19, abs=0.01)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_gate_power_grows_with_the_round_and_the_gain() -> None:
    small = gate_power(n_pairs=28, p_base=0.5, gain=0.1)
    large = gate_power(n_pairs=224, p_base=0.5, gain=0.1)
    bigger_gain = gate_power(n_pairs=28, p_base=0.5, gain=0.3)
    no_gain = gate_power(n_pairs=224, p_base=0.5, gain=0.0)

    assert small < large and small < bigger_gain
    # Without a real gain the gate rarely passes (two one-sided 2.5 % tests).
    assert no_gain < 0.03
    assert gate_power(n_pairs=224, p_base=0.5, gain=0.1) == large


def test_pairing_makes_the_gate_stronger() -> None:
    loose = gate_power(n_pairs=112, p_base=0.5, gain=0.1, correlation=0.0)
    paired = gate_power(n_pairs=112, p_base=0.5, gain=0.1, correlation=0.7)
    assert paired > loose


def test_power_table_stops_at_the_first_size_reaching_the_target() -> None:
    rows = images_per_prompt_for_power(prompts=7, p_base=0.5, gain=0.2, target=0.8)
    sizes = [size for size, _ in rows]
    powers = [power for _, power in rows]
    assert powers[-1] >= 0.8 and all(p < 0.8 for p in powers[:-1])
    assert sizes == sorted(sizes)
