"""The noisy-physician serving experiment's pieces and one tiny run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from research.active_learning import ActiveConfig, Pool
from research.noisy_serving import (
    NoisyConfig,
    lagging_modality,
    noisy_score,
    pick_image,
    run_experiment,
    score_variance,
    serving_key,
)
from tests.engine.helpers import command_line_refusal

pytestmark = pytest.mark.research


def test_a_noisy_score_moves_one_level_at_most_and_as_often_as_its_noise() -> None:
    rng = np.random.default_rng(0)
    for true in (1, 2, 3):
        scores = np.array([noisy_score(true, 0.3, rng) for _ in range(4000)])
        assert set(scores.tolist()) <= {true - 1, true, true + 1} - {0, 4}
        assert (scores != true).mean() == pytest.approx(0.3, abs=0.03)
    assert {noisy_score(2, 0.0, rng) for _ in range(50)} == {2}


def test_policies_pick_as_the_product_orders_a_round() -> None:
    rng = np.random.default_rng(1)
    eligible = np.array([0, 1, 2, 3])
    counts = np.array([1, 0, 0, 1])
    info = np.array([9.0, 0.2, 0.5, 0.1])

    assert pick_image("informative", eligible, counts, info, rng) == 2
    assert {pick_image("coverage", eligible, counts, info, rng) for _ in range(40)} == {
        1,
        2,
    }
    assert {pick_image("random", eligible, counts, info, rng) for _ in range(80)} == {
        0,
        1,
        2,
        3,
    }
    with pytest.raises(ValueError, match="policy"):
        pick_image("best", eligible, counts, info, rng)


def test_balanced_serves_the_modality_that_lags_its_share_most_informative_first() -> (
    None
):
    rng = np.random.default_rng(2)
    # Six images: modality 0 holds four (2/3 of the round), modality 1 two.
    modality = np.array([0, 0, 0, 0, 1, 1])
    round_idx = np.arange(6)
    info = np.array([0.1, 0.2, 0.3, 0.4, 0.9, 0.8])
    counts = np.zeros(6, dtype=np.int64)

    # Nothing rated: both lag by their share, modality 0 the most.
    assert lagging_modality(round_idx, modality, round_idx, counts, rng) == 0

    def balanced() -> int:
        return pick_image(
            "balanced",
            round_idx,
            counts,
            info,
            rng,
            modality=modality,
            round_idx=round_idx,
        )

    assert balanced() == 3
    # One rating of modality 0: modality 1 (0 of 1 against 1/3) now lags.
    counts[3] = 1
    assert balanced() == 4
    # Plain informative would have taken image 4 first, whatever the modality.
    assert pick_image("informative", round_idx, np.zeros(6, int), info, rng) == 4
    with pytest.raises(ValueError, match="balanced needs"):
        pick_image("balanced", round_idx, counts, info, rng)


def test_score_variance_is_zero_below_two_scores() -> None:
    assert score_variance([[], [3], [1, 3], [2, 2]]).tolist() == [0.0, 0.0, 1.0, 0.0]


def _pool(n: int = 60) -> Pool:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(n, 8)).astype(np.float32)
    which = np.arange(n) % 2
    modality = np.zeros((n, 2), dtype=np.float32)
    modality[np.arange(n), which] = 1
    return Pool(
        image=image,
        prompt=rng.normal(size=(2, 6)).astype(np.float32)[which],
        modality=modality,
        ratings=np.digitize(image[:, 0], [-0.5, 0.5]) + 1,
        group=np.arange(n) // 2,
        sets=np.array(["old", "new"])[(np.arange(n) // 2) % 2],
    )


def test_a_run_caps_ratings_per_image_and_each_physician_rates_an_image_once(
    tmp_path: Path,
) -> None:
    report = run_experiment(_pool(), _tiny_config(tmp_path))

    assert (tmp_path / "report.md").exists() and (tmp_path / "curves.png").exists()
    for run in report["runs"]:
        points = run["points"]
        assert [p["n_ratings"] for p in points] == [0, 6, 12, 18, 24, 30]
        assert max(p["most_ratings_of_an_image"] for p in points) <= 2
        if run["strategy"] in ("coverage", "informative"):
            # Fewest ratings first: a new image while any is left.
            assert [p["distinct_images"] for p in points] == [
                min(p["n_ratings"], run["n_pool"]) for p in points
            ]


def test_mixed_tosses_a_coin_per_rating_and_warmup_switches_at_its_share() -> None:
    config = NoisyConfig(output_dir=Path("."), mix_share=0.25, warmup_share=0.4)
    rng = np.random.default_rng(3)

    keys = [serving_key("mixed", config, 0.0, rng) for _ in range(4000)]
    assert set(keys) == {"informative", "random"}
    assert keys.count("informative") / len(keys) == pytest.approx(0.25, abs=0.03)
    assert serving_key("warmup", config, 0.39, rng) == "random"
    assert serving_key("warmup", config, 0.4, rng) == "informative"
    assert serving_key("coverage", config, 0.0, rng) == "coverage"


def _tiny_config(tmp_path: Path, **kwargs: object) -> NoisyConfig:
    settings: dict[str, object] = {"budget": 30, "batch": 6, "seeds": (0,)}
    settings.update(kwargs)
    return NoisyConfig(
        output_dir=tmp_path,
        active=ActiveConfig(
            output_dir=tmp_path,
            warm_sets=("old",),
            warm_ratings=6,
            ensemble_size=2,
            epochs=10,
        ),
        **settings,  # type: ignore[arg-type]
    )


def test_spread_scored_once_orders_first_ratings_by_the_starting_model(
    tmp_path: Path,
) -> None:
    """With ``spread="round"`` informativeness does not change until an image
    has two ratings, so first ratings come in falling order of it; re-scored
    after every batch, the order restarts with each batch."""
    fixed = run_experiment(
        _pool(), _tiny_config(tmp_path / "round", spread="round", budget=24)
    )
    rescored = run_experiment(
        _pool(), _tiny_config(tmp_path / "batch", spread="batch", budget=24)
    )

    def firsts(report: dict) -> list[float]:
        run = next(r for r in report["runs"] if r["strategy"] == "informative")
        return [p["informativeness"] for p in run["picks"]]

    once = firsts(fixed)
    assert len(once) == 24 and once == sorted(once, reverse=True)
    assert firsts(rescored) != sorted(firsts(rescored), reverse=True)
    assert fixed["config"]["spread"] == "round"
    assert "scored once" in (tmp_path / "round" / "report.md").read_text()


def test_hybrid_runs_record_which_plain_policy_served_each_rating(
    tmp_path: Path,
) -> None:
    config = _tiny_config(
        tmp_path,
        policies=("random", "mixed", "warmup", "balanced"),
        warmup_share=0.2,
    )

    report = run_experiment(_pool(), config)

    by_name = {r["strategy"]: r for r in report["runs"]}
    assert by_name["random"]["served_by"] == {"random": 30}
    assert set(by_name["mixed"]["served_by"]) == {"random", "informative"}
    # The pool's two modalities are half each: balanced alternates them.
    balanced = by_name["balanced"]["picks"]
    kinds = [p["image"] % 2 for p in balanced]  # _pool: modality = index % 2
    assert all(abs(kinds[:n].count(0) - kinds[:n].count(1)) <= 1 for n in range(31))
    warm = by_name["warmup"]
    # Random until a fifth of the round's images has a rating, then informative.
    keys = [p["by"] for p in warm["picks"]]
    switch = keys.index("informative")
    assert set(keys[:switch]) == {"random"} and set(keys[switch:]) == {"informative"}
    rated_before_switch = len({p["image"] for p in warm["picks"][:switch]})
    assert rated_before_switch == int(np.ceil(0.2 * warm["n_pool"]))


@pytest.mark.parametrize(
    "flag",
    [
        ["--budget", "0"],
        ["--batch", "0"],
        ["--noise", "0.1", "1.5"],
        ["--mix_share", "1.5"],
        ["--warmup_share", "-0.1"],
        ["--policies", "informative", "mixed"],
    ],
)
def test_command_line_refuses_a_budget_batch_or_noise_out_of_range(
    tmp_path: Path, flag: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from research.noisy_serving import main

    argv = ["--source_dir", str(tmp_path), "--output_dir", str(tmp_path), *flag]
    assert flag[0] in command_line_refusal(main, argv, capsys)
