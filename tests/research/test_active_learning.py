"""The active-learning experiment's plumbing on a small synthetic pool."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from research.active_learning import (
    ActiveConfig,
    Pool,
    label_entropy,
    ratings_to_reach,
    round_split,
    run_experiment,
    run_loop,
    select_by_spread,
    select_by_spread_per_prompt,
    select_diverse_batch,
    select_proportional,
    select_stratified,
    select_top,
    split_heldout,
    vote_entropy,
)
from tests.engine.helpers import command_line_refusal

pytestmark = pytest.mark.research


def _pool(n: int = 90, seed: int = 0) -> Pool:
    """Ratings follow the first image feature, so a head can learn them."""
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(n, 12)).astype(np.float32)
    ratings = np.digitize(image[:, 0], [-0.5, 0.5]) + 1
    prompts = rng.normal(size=(3, 8)).astype(np.float32)
    which = np.arange(n) % 3
    modality = np.zeros((n, 4), dtype=np.float32)
    modality[np.arange(n), which] = 1
    return Pool(
        image=image,
        prompt=prompts[which],
        modality=modality,
        ratings=ratings,
        group=np.arange(n) // 2,
    )


def _config(tmp_path: Path) -> ActiveConfig:
    return ActiveConfig(
        output_dir=tmp_path,
        initial=6,
        batch=6,
        budget=24,
        seeds=(0, 1),
        targets=(0.3, 0.99),
        warmup=12,
        ensemble_size=3,
        epochs=20,
    )


def test_select_by_spread_takes_the_largest_spreads_among_candidates() -> None:
    spread = np.array([0.1, 0.9, 0.5, 0.95, 0.7, 0.2])
    candidates = np.array([0, 1, 2, 4, 5])  # 3 is already rated

    assert select_by_spread(spread, candidates, 2).tolist() == [1, 4]
    assert select_by_spread(spread, candidates, 3).tolist() == [1, 4, 2]


def test_per_prompt_selection_takes_each_prompts_largest_spread_in_turn() -> None:
    spread = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.95])
    prompt_ids = np.array([0, 0, 0, 1, 1, 0])
    groups = np.array([0, 1, 2, 3, 4, 0])  # 5 shares a seed group with 0
    candidates = np.arange(6)

    chosen = select_by_spread_per_prompt(spread, candidates, 3, prompt_ids, groups)

    assert chosen.tolist() == [5, 4, 1]


def test_label_entropy_is_one_for_uniform_and_zero_for_certain_labels() -> None:
    probs = np.array([[1 / 3, 1 / 3, 1 / 3], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]])

    entropy = label_entropy(probs)

    assert entropy[0] == pytest.approx(1.0)
    assert entropy[1] == pytest.approx(0.0, abs=1e-9)
    assert 0.0 < entropy[2] < 1.0


def test_diverse_batch_skips_near_duplicates_of_rated_and_chosen_images() -> None:
    # 0 and 1 sit on top of each other, 2 on top of an already rated image,
    # 3 and 4 far from everything; scores favour 0, 1, 2.
    features = np.array([[0.0, 0.0], [0.0, 0.01], [5.0, 5.0], [-5.0, 3.0], [3, -5]])
    score = np.array([1.0, 0.99, 0.98, 0.5, 0.4])
    labelled = np.array([[5.0, 5.01], [10.0, 10.0]])
    groups = np.arange(5)

    chosen = select_diverse_batch(score, features, np.arange(5), labelled, 3, groups)

    assert chosen.tolist() == [0, 3, 4]


def test_diverse_batch_takes_one_image_per_seed_group_while_others_remain() -> None:
    features = np.array([[0.0], [10.0], [20.0], [30.0]])
    score = np.array([1.0, 0.9, 0.8, 0.1])
    groups = np.array([0, 0, 0, 1])

    chosen = select_diverse_batch(
        score, features, np.arange(4), np.empty((0, 1)), 3, groups
    )

    assert chosen.tolist()[:2] == [0, 3]
    assert len(set(chosen.tolist())) == 3


def test_heldout_split_keeps_seed_groups_on_one_side() -> None:
    groups = np.repeat(np.arange(20), 3)
    pool_idx, held_idx = split_heldout(groups, 0.3, seed=4)

    assert set(groups[pool_idx]).isdisjoint(set(groups[held_idx]))
    assert len(set(groups[held_idx])) == 6
    assert sorted(pool_idx.tolist() + held_idx.tolist()) == list(range(60))


def test_uncertainty_loop_rates_the_highest_spread_unrated_images(
    tmp_path: Path,
) -> None:
    pool = _pool()
    run = run_loop(pool, _config(tmp_path), strategy="uncertainty", seed=0)

    assert [p["n_ratings"] for p in run["points"]] == [6, 12, 18, 24]
    for pick in run["picks"]:
        assert len(pick["chosen"]) == 6
        assert min(pick["chosen_spread"]) >= pick["max_unchosen_spread"]
    chosen = [i for pick in run["picks"] for i in pick["chosen"]]
    assert len(set(chosen)) == len(chosen)


def test_random_and_uncertainty_start_from_the_same_first_batch(tmp_path: Path) -> None:
    pool = _pool()
    config = _config(tmp_path)
    runs = [
        run_loop(pool, config, strategy=s, seed=1) for s in ("uncertainty", "random")
    ]

    first = [r["points"][0]["spearman"] for r in runs]
    assert first[0] == first[1]
    assert runs[0]["picks"][0]["chosen"] != runs[1]["picks"][0]["chosen"]


def test_batch_strategy_serves_randoms_picks_until_the_warmup_is_in(
    tmp_path: Path,
) -> None:
    pool = _pool()
    config = _config(tmp_path)  # initial 6, batch 6, warm-up 12
    batch = run_loop(pool, config, strategy="uncertainty_batch", seed=2)
    rand = run_loop(pool, config, strategy="random", seed=2)

    assert batch["picks"][0]["random_warmup"] is True
    assert batch["picks"][0]["chosen"] == rand["picks"][0]["chosen"]
    assert batch["points"][1] == rand["points"][1]
    assert [p["random_warmup"] for p in batch["picks"][1:]] == [False, False]
    groups = [pool.group[p["chosen"]].tolist() for p in batch["picks"][1:]]
    assert all(len(set(g)) == len(g) for g in groups)


def test_ratings_to_reach_is_the_first_count_at_or_above_the_target() -> None:
    curve = [
        {"n_ratings": 6, "spearman": 0.2},
        {"n_ratings": 12, "spearman": 0.55},
        {"n_ratings": 18, "spearman": 0.5},
    ]
    assert ratings_to_reach(curve, 0.5) == 12
    assert ratings_to_reach(curve, 0.6) is None


def test_report_holds_both_curves_the_reach_table_and_a_plot(tmp_path: Path) -> None:
    report = run_experiment(_pool(), _config(tmp_path), {"n_images": 90})

    saved = json.loads((tmp_path / "report.json").read_text())
    strategies = {"uncertainty", "uncertainty_sampled", "random"}
    assert set(saved["summary"]) == strategies
    for strategy in strategies:
        curve = saved["summary"][strategy]["curve"]
        assert [p["n_ratings"] for p in curve] == [6, 12, 18, 24]
        assert all(p["n_seeds"] == 2 and p["ci95"] >= 0 for p in curve)
        assert ("minus_random" in curve[-1]) == (strategy != "random")
        assert set(saved["summary"][strategy]["ratings_to_reach"]) == {"0.3", "0.99"}
    assert "minus_random" not in saved["summary"]["random"]["curve"][0]
    assert saved["summary"]["uncertainty"]["curve"][0]["minus_random"] == 0.0
    assert len(saved["runs"]) == 6
    assert len(saved["ceiling"]["per_seed"]) == 2
    assert Image.open(report["plot"]).size == (640, 400)
    markdown = (tmp_path / "report.md").read_text()
    assert "| 24 |" in markdown and "Cold start" in markdown
    assert "Does the spread know where the model errs?" in markdown
    for run in saved["runs"]:
        assert all(-1 <= p["spread_error_rho"] <= 1 for p in run["points"])
    assert all("spread_error_rho" in p for p in saved["summary"]["random"]["curve"])


def test_vote_entropy_is_zero_when_members_agree_and_grows_with_dissent() -> None:
    agree = [[0.1, 0.2, 0.7]] * 4
    split = [[0.1, 0.2, 0.7], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.2, 0.5, 0.3]]
    member_probs = np.array([agree, split]).transpose(1, 0, 2)  # (members, N, 3)

    entropy = vote_entropy(member_probs)

    assert entropy[0] == 0.0
    assert entropy[1] == pytest.approx(1.5 * np.log(2) / np.log(3))


def test_top_selection_breaks_score_ties_by_the_tiebreak() -> None:
    score = np.array([0.5, 0.5, 0.9, 0.0])
    tiebreak = np.array([0.1, 0.8, 0.0, 1.0])

    assert select_top(score, tiebreak, np.arange(4), 2).tolist() == [2, 1]


def test_stratified_selection_keeps_the_candidates_mix_of_strata() -> None:
    # Stratum 0 has 6 candidates, stratum 1 has 2: a batch of 4 takes 3 + 1,
    # the top scores of each, although stratum 1 holds the largest scores.
    strata = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    score = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.9, 0.8])

    chosen = select_stratified(score, np.zeros(8), np.arange(8), 4, strata)

    assert sorted(chosen.tolist()) == [3, 4, 5, 6]


@pytest.mark.parametrize(
    "strategy",
    [
        "vote_entropy",
        "vote_entropy_stratified",
        "vote_entropy_mixed",
        "uncertainty_sampled",
        "design",
    ],
)
def test_disagreement_and_sampled_strategies_rate_new_images_after_the_shared_start(
    tmp_path: Path, strategy: str
) -> None:
    pool = _pool()
    config = _config(tmp_path)
    run = run_loop(pool, config, strategy=strategy, seed=3)
    rand = run_loop(pool, config, strategy="random", seed=3)

    assert run["points"][0] == rand["points"][0]
    assert [p["n_ratings"] for p in run["points"]] == [6, 12, 18, 24]
    chosen = [i for pick in run["picks"] for i in pick["chosen"]]
    assert len(chosen) == 18 and len(set(chosen)) == 18


def test_design_strategy_takes_the_first_picks_of_the_design_order(
    tmp_path: Path,
) -> None:
    from research.active_learning import (
        head_inputs,
        select_by_design,
        split_heldout,
    )
    from research.design import kernel_features, serving_order

    pool = _pool()
    config = _config(tmp_path)
    servable, _ = split_heldout(pool.group, 0.3, 0)
    labelled, unlabelled = servable[:6], servable[6:]

    picks = select_by_design(pool, labelled, unlabelled, servable, 5, config)

    phi, _ = head_inputs(pool, labelled, np.concatenate([labelled, servable]))
    mapped = kernel_features(phi, reference=phi[6:])
    expected = serving_order(mapped[6 + 6 :], rated=mapped[:6], targets=mapped[6:])
    assert picks.tolist() == expected.order[:5].tolist()
    assert len(set(picks.tolist())) == 5


def test_proportional_selection_draws_distinct_images_and_never_zero_scores() -> None:
    score = np.array([0.0, 1.0, 0.0, 2.0, 3.0, 0.0])
    rng = np.random.default_rng(0)

    for _ in range(20):
        chosen = select_proportional(score, 3, rng)
        assert sorted(chosen.tolist()) == [1, 3, 4]
    assert len(set(select_proportional(score, 5, rng).tolist())) == 5


def _sets_pool(n: int = 120) -> Pool:
    """Two generators per seed group: ``old`` (rated before) and ``new``."""
    pool = _pool(n)
    pool.group = np.arange(n) // 2
    pool.sets = np.array(["old", "new"] * (n // 2))
    return pool


def test_next_round_split_rates_only_warm_sets_before_and_serves_the_others(
    tmp_path: Path,
) -> None:
    pool = _sets_pool()
    config = _config(tmp_path)
    config.warm_sets, config.warm_ratings = ("old",), 20

    before, servable, held = round_split(pool, config, seed=5)

    assert len(before) == 20 and set(pool.sets[before]) == {"old"}
    assert set(pool.sets[servable]) == {"new"} and set(pool.sets[held]) == {"new"}
    assert set(pool.group[before]).isdisjoint(pool.group[held])
    assert set(pool.group[servable]).isdisjoint(pool.group[held])
    assert len(servable) + len(held) == 60
    again = round_split(pool, config, seed=5)
    assert all(
        (a == b).all() for a, b in zip(again, (before, servable, held), strict=True)
    )


def test_next_round_starts_every_strategy_from_the_earlier_rounds_model(
    tmp_path: Path,
) -> None:
    pool = _sets_pool()
    config = _config(tmp_path)
    config.warm_sets, config.warm_ratings = ("old",), 20
    runs = {
        s: run_loop(pool, config, strategy=s, seed=1)
        for s in ("uncertainty", "uncertainty_sampled", "random")
    }

    for run in runs.values():
        assert run["n_rated_before"] == 20
        assert [p["n_ratings"] for p in run["points"]] == [0, 6, 12, 18, 24]
        chosen = [i for pick in run["picks"] for i in pick["chosen"]]
        assert len(set(chosen)) == 24 and set(pool.sets[chosen]) == {"new"}
    first = {r["points"][0]["spearman"] for r in runs.values()}
    assert len(first) == 1
    assert (
        runs["uncertainty"]["picks"][0]["chosen"]
        != runs["random"]["picks"][0]["chosen"]
    )
    top = runs["uncertainty"]["picks"][0]
    assert min(top["chosen_spread"]) >= top["max_unchosen_spread"]


@pytest.mark.parametrize(
    ("sets", "warm", "message"),
    [
        (None, ("old",), "name their set"),
        (["old", "new"], ("older",), "not in the pool"),
        (["old", "old"], ("old",), "nothing to serve"),
    ],
)
def test_next_round_refuses_warm_sets_it_cannot_use(
    tmp_path: Path, sets: list[str] | None, warm: tuple[str, ...], message: str
) -> None:
    pool = _sets_pool(20)
    pool.sets = None if sets is None else np.array(sets * 10)
    config = _config(tmp_path)
    config.warm_sets = warm

    with pytest.raises(ValueError, match=message):
        round_split(pool, config, seed=0)


@pytest.mark.parametrize(
    "flag", [["--budget", "0"], ["--batch", "0"], ["--design_ridge", "0"]]
)
def test_command_line_refuses_a_budget_batch_or_ridge_below_its_floor(
    tmp_path: Path, flag: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from research.active_learning import main

    argv = ["--source_dir", str(tmp_path), "--output_dir", str(tmp_path), *flag]
    assert flag[0] in command_line_refusal(main, argv, capsys)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "samples.csv: not found"),
        ({"samples.csv": "path,prompt\n", "real.csv": ""}, "missing columns"),
        (
            {"samples.csv": "set,path,prompt,modality,seed,rating\n", "real.csv": ""},
            "no samples",
        ),
    ],
)
def test_command_line_names_a_source_folder_that_is_not_a_pool(
    tmp_path: Path, files: dict[str, str], message: str, capsys
) -> None:
    from research.active_learning import main

    source = tmp_path / "pool"
    source.mkdir()
    for name, text in files.items():
        (source / name).write_text(text)
    argv = ["--source_dir", str(source), "--output_dir", str(tmp_path / "out")]

    error = command_line_refusal(main, argv, capsys)

    assert message in error and str(source) in error
    assert not (tmp_path / "out").exists()  # nothing written


def test_importance_draw_mixes_an_even_share_that_bounds_the_weights() -> None:
    from research.active_learning import importance_draw

    spread = np.array([0.0, 0.1, 0.3, 0.6])

    draw = importance_draw(spread, 0.5)

    assert draw.sum() == pytest.approx(1.0)
    assert draw.tolist() == pytest.approx([0.125, 0.175, 0.275, 0.425])
    weights = 1 / (len(spread) * draw)
    assert weights.max() <= 1 / 0.5 + 1e-9  # never more than twice an even pick
    assert importance_draw(np.zeros(3), 0.5).tolist() == pytest.approx([1 / 3] * 3)


def test_weighted_strategy_trains_on_inverse_draw_probabilities(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import research.active_learning as al

    seen: list[np.ndarray] = []
    real_fit = al._fit_and_predict

    def spy(pool, train_idx, predict_idx, config, seed, train_weights=None):
        seen.append(np.asarray(train_weights))
        return real_fit(pool, train_idx, predict_idx, config, seed, train_weights)

    monkeypatch.setattr(al, "_fit_and_predict", spy)
    run = al.run_loop(
        _pool(), _config(tmp_path), strategy="uncertainty_weighted", seed=0
    )

    assert [p["n_ratings"] for p in run["points"]] == [6, 12, 18, 24]
    assert np.allclose(seen[0], 1.0)  # the shared random start counts evenly
    assert not np.allclose(seen[-1], 1.0)  # spread-drawn picks do not
    assert all(w.mean() == pytest.approx(1.0) for w in seen)
    # The first six (the random start) keep one weight among themselves, and
    # no spread-drawn pick outweighs an even one more than twice.
    last = seen[-1]
    assert np.allclose(last[:6], last[0])
    assert last.max() <= 2.0 * last[0] + 1e-6
