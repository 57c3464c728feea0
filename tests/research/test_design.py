"""Greedy Bayesian design: the serving order for most-informative-first."""

from __future__ import annotations

import numpy as np
import pytest

from research.design import (
    kernel_features,
    posterior_covariance,
    serving_order,
)

pytestmark = pytest.mark.research


def _total_variance(targets: np.ndarray, rated: np.ndarray, ridge: float) -> float:
    """Predictive variance summed over targets, computed from scratch."""
    sigma = np.linalg.inv(ridge * np.eye(targets.shape[1]) + rated.T @ rated)
    return float(np.einsum("nd,de,ne->", targets, sigma, targets))


def _brute_force_order(
    candidates: np.ndarray, rated: np.ndarray, ridge: float, steps: int
) -> tuple[list[int], list[float]]:
    chosen: list[int] = []
    gains: list[float] = []
    current = rated
    for _ in range(steps):
        before = _total_variance(candidates, current, ridge)
        best, best_gain = -1, -np.inf
        for i in range(len(candidates)):
            if i in chosen:
                continue
            after = _total_variance(
                candidates, np.vstack([current, candidates[i]]), ridge
            )
            if before - after > best_gain + 1e-12:
                best, best_gain = i, before - after
        chosen.append(best)
        gains.append(best_gain)
        current = np.vstack([current, candidates[best]])
    return chosen, gains


def test_greedy_order_and_gains_equal_recomputing_the_variance_from_scratch() -> None:
    rng = np.random.default_rng(3)
    candidates = rng.normal(size=(25, 4))
    rated = rng.normal(size=(6, 4))

    design = serving_order(candidates, rated=rated, ridge=2.0, limit=8)
    expected_order, expected_gain = _brute_force_order(candidates, rated, 2.0, 8)

    assert design.order[:8].tolist() == expected_order
    np.testing.assert_allclose(design.gain[:8], expected_gain, rtol=1e-9)
    assert design.greedy == 8


def test_every_candidate_appears_once_and_the_tail_is_ranked_by_its_gain() -> None:
    rng = np.random.default_rng(0)
    candidates = rng.normal(size=(30, 5))

    design = serving_order(candidates, limit=10)

    assert sorted(design.order.tolist()) == list(range(30))
    tail = design.gain[10:]
    assert (np.diff(tail) <= 1e-12).all()


def test_a_typical_image_comes_before_an_outlier_that_top_spread_would_serve() -> None:
    rng = np.random.default_rng(1)
    cluster = np.array([1.0, 0.0]) + 0.05 * rng.normal(size=(40, 2))
    outlier = np.array([[0.0, 3.0]])
    candidates = np.vstack([cluster, outlier])
    spread = (candidates @ posterior_covariance(None, 2) * candidates).sum(1)

    design = serving_order(candidates, ridge=1.0)

    assert int(np.argmax(spread)) == 40  # the model is least sure of the outlier
    assert design.order[0] != 40  # but one rating in the cluster teaches more
    assert design.order[0] < 40


def test_a_near_duplicate_of_a_pick_loses_its_place() -> None:
    base = np.array(
        [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.9, 0.0], [0.0, 0.0, 0.8]]
    )

    design = serving_order(base, ridge=1.0)

    assert design.order[0] in (0, 1)
    assert design.order[1] not in (0, 1)  # the twin waits for the others


def test_what_the_reward_model_already_saw_counts_as_known() -> None:
    candidates = np.array([[1.0, 0.0], [0.0, 1.0]])
    rated = np.tile([[1.0, 0.0]], (20, 1))

    assert serving_order(candidates, rated=rated, ridge=1.0).order[0] == 1
    weights = np.full(20, 0.001)  # barely counted: the two are alike again
    light = serving_order(candidates, rated=rated, rated_weights=weights, ridge=1.0)
    assert light.gain[0] == pytest.approx(light.gain[1], rel=0.05)


def test_targets_other_than_the_candidates_steer_the_order() -> None:
    candidates = np.array([[1.0, 0.0], [0.0, 1.0]])
    targets = np.tile([[0.0, 1.0]], (10, 1))

    assert serving_order(candidates, targets=targets).order.tolist() == [1, 0]


def test_the_order_is_the_same_every_time_and_ties_go_to_the_lower_index() -> None:
    candidates = np.ones((5, 3))

    first = serving_order(candidates, limit=2)
    again = serving_order(candidates, limit=2)

    assert first.order.tolist() == again.order.tolist() == [0, 1, 2, 3, 4]


def test_no_candidates_give_an_empty_order() -> None:
    design = serving_order(np.empty((0, 4)))

    assert design.order.tolist() == []
    assert design.greedy == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"candidates": np.ones(3)}, "2-D"),
        ({"candidates": np.array([[1.0, np.nan]])}, "non-finite"),
        ({"candidates": np.ones((2, 2)), "targets": np.ones((2, 3))}, "2 features"),
        ({"candidates": np.ones((2, 2)), "rated": np.ones((2, 3))}, "expected 2"),
        ({"candidates": np.ones((2, 2)), "ridge": 0.0}, "ridge must be positive"),
        (
            {
                "candidates": np.ones((2, 2)),
                "rated": np.ones((2, 2)),
                "rated_weights": np.array([1.0, -1.0]),
            },
            "non-negative",
        ),
    ],
)
def test_bad_input_is_refused_by_name(kwargs: dict, message: str) -> None:
    candidates = kwargs.pop("candidates")
    with pytest.raises(ValueError, match=message):
        serving_order(candidates, **kwargs)


def test_kernel_features_approximate_a_gaussian_kernel() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6))

    phi = kernel_features(x, dims=4096, length_scale=2.0, seed=1)

    sq = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(phi @ phi.T, np.exp(-sq / 8.0), atol=0.08)


def test_kernel_features_are_fixed_by_their_seed_and_reference() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 5))

    same = kernel_features(x, seed=4), kernel_features(x, seed=4)
    other = kernel_features(x, seed=5)

    np.testing.assert_array_equal(*same)
    assert not np.allclose(same[0], other)
    # The length scale comes from the reference rows, not from x.
    ref = x[:10]
    np.testing.assert_array_equal(
        kernel_features(x[10:], reference=ref, seed=4),
        kernel_features(x, reference=ref, seed=4)[10:],
    )


@pytest.mark.parametrize(
    ("x", "kwargs", "message"),
    [
        (np.ones(3), {}, "2-D"),
        (np.ones((3, 2)), {"length_scale": -1.0}, "length_scale must be positive"),
        (np.ones((3, 2)), {"dims": 0}, "dims must be at least 1"),
    ],
)
def test_kernel_features_refuse_bad_input(x: np.ndarray, kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        kernel_features(x, **kwargs)
