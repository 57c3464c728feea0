"""The simulated-rater experiment: statistics and an end-to-end quick run."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from research import simulated_raters
from research.simulated_raters import (
    ExperimentConfig,
    Sample,
    main,
    mcnemar_exact,
    rating_summary,
    variant_weights,
    weight_mass,
    wilson_interval,
)

pytestmark = pytest.mark.research


def test_wilson_interval_matches_known_values_and_stays_inside_zero_one() -> None:
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3)
    assert high == pytest.approx(0.9433, abs=1e-3)
    assert wilson_interval(0, 18)[0] == 0.0
    assert wilson_interval(5, 5)[1] == 1.0


def test_weight_mass_shares_weight_by_the_programs_rating() -> None:
    # Rated: a 3 (weight 2) and a 1 (weight 0). Unrated: a 2 (weight 1) and
    # a 3 (weight 1): total 4, half of it on the unrated images.
    mass = weight_mass([2.0, 0.0, 1.0, 1.0], [3, 1, 2, 3], [True, True, False, False])

    assert mass["share_by_rating"] == {"1": 0.0, "2": 0.25, "3": 0.75}
    assert mass["unrated_share_by_rating"] == {"1": 0.0, "2": 0.5, "3": 0.5}
    assert mass["unrated_weight_share"] == 0.5
    assert mass["effective_n"] == pytest.approx(16 / 6)
    assert mass["n"] == 4
    equal = weight_mass([1.0] * 4, [3, 1, 2, 3], [True] * 4)
    assert equal["effective_n"] == pytest.approx(4.0)
    assert equal["unrated_weight_share"] == 0.0
    assert equal["unrated_share_by_rating"] == {"1": 0.0, "2": 0.0, "3": 0.0}


def test_rating_summary_counts_threes_per_modality() -> None:
    summary = rating_summary([3, 1, 3, 2], ["CT", "CT", "Fundus", "Fundus"])

    assert summary["n"] == 4 and summary["rated_3"] == 2
    assert summary["share_3"] == 0.5
    assert summary["counts"] == {"1": 1, "2": 1, "3": 2}
    assert summary["per_modality"]["CT"] == {"n": 2, "rated_3": 1}


def test_mcnemar_counts_discordant_pairs_and_gives_a_two_sided_p() -> None:
    before = [True, True, False, False, False, False, False, False]
    after = [True, False, True, True, True, True, True, False]

    test = mcnemar_exact(before, after)

    assert (test["gained"], test["lost"]) == (5, 1)
    assert test["p_value"] == pytest.approx(0.21875)
    assert mcnemar_exact([True], [True])["p_value"] == 1.0


def _samples(ratings: list[int], prompts: list[str]) -> list[Sample]:
    return [
        Sample(path=Path(f"{i}.png"), prompt=p, modality="CT", seed=i, rating=r)
        for i, (r, p) in enumerate(zip(ratings, prompts, strict=True))
    ]


def test_variant_weights_follow_ratings_filter_on_3s_and_control_is_flat(
    tmp_path: Path,
) -> None:
    samples = _samples([3, 2, 1, 3], ["a", "a", "a", "b"])
    samples[3].reward = 0.9
    rated = [True, True, True, False]
    config = ExperimentConfig(output_dir=tmp_path, weight_power=1.0)

    weighted = variant_weights(samples, rated, "reward_weighted", config)
    filtered = variant_weights(samples, rated, "filtered", config)
    control = variant_weights(samples, rated, "equal_weights", config)

    assert weighted[:3] == pytest.approx([2.0, 1.0, 0.0])
    assert weighted[3] == pytest.approx(1.0)  # alone in its prompt
    assert filtered == pytest.approx([3.0, 0.0, 0.0, 1.0])
    assert control == [1.0, 1.0, 1.0, 1.0]
    assert variant_weights(samples, rated, "filtered_weights", config) == filtered
    config.normalise = "none"
    assert variant_weights(samples, rated, "filtered_weights", config) == [
        1.0,
        0.0,
        0.0,
        1.0,
    ]
    assert variant_weights(samples, rated, "reward_weighted", config) == (
        pytest.approx([1.0, 0.5, 0.0, 0.9])
    )
    with pytest.raises(ValueError, match="unknown variant"):
        variant_weights(samples, rated, "nope", config)


def test_images_per_prompt_option_sets_the_size_of_every_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[ExperimentConfig] = []

    def fake_run(config: ExperimentConfig) -> dict[str, object]:
        seen.append(config)
        return {}

    monkeypatch.setattr(simulated_raters, "run_experiment", fake_run)
    monkeypatch.setattr(simulated_raters, "markdown_report", lambda report: "")

    main(["--output_dir", str(tmp_path), "--images_per_prompt", "96"])
    main(["--output_dir", str(tmp_path), "--quick", "--images_per_prompt", "5"])
    main(["--output_dir", str(tmp_path)])

    assert [c.images_per_prompt for c in seen] == [96, 5, 24]
    with pytest.raises(SystemExit):
        main(["--output_dir", str(tmp_path), "--images_per_prompt", "0"])
    assert len(seen) == 3
    assert (seen[2].weight_power, seen[2].best_of) == (4.0, 4)
    assert seen[2].variants == ("reward_weighted", "filtered", "equal_weights")
    main(
        ["--output_dir", str(tmp_path), "--weight_power", "16", "--best_of", "1"]
        + ["--variants", "reward_weighted", "equal_weights", "equal_weights"]
    )
    assert (seen[3].weight_power, seen[3].best_of) == (16.0, 1)
    assert seen[2].normalise == seen[3].normalise == "prompt"
    assert seen[3].variants == ("reward_weighted", "equal_weights")
    for bad in (["--weight_power", "0"], ["--best_of", "0"], ["--variants", "x"]):
        with pytest.raises(SystemExit):
            main(["--output_dir", str(tmp_path), *bad])
    assert len(seen) == 4


@pytest.mark.slow
def test_quick_run_goes_end_to_end_and_writes_the_report(tmp_path: Path) -> None:
    main(["--output_dir", str(tmp_path), "--quick"])

    report = json.loads((tmp_path / "report.json").read_text())
    assert report["before"]["n"] == 18
    assert set(report["variants"]) == {"reward_weighted", "filtered", "equal_weights"}
    trained = {v: e for v, e in report["variants"].items() if "skipped" not in e}
    assert "reward_weighted" in trained and "equal_weights" in trained
    for entry in trained.values():
        assert entry["n"] == 18
        assert 0.0 <= entry["share_3_wilson95"][0] <= 1.0
        assert set(entry["vs_before"]) == {"gained", "lost", "p_value"}
    assert set(trained["reward_weighted"]["vs_control"]) == {
        "gained",
        "lost",
        "p_value",
    }
    assert "vs_control" not in trained["equal_weights"]
    best = report["best_of_n"]
    assert best["n"] == 18 and best["filter_stats"]["n_generated"] == 72
    assert best["all_candidates"]["n"] == 72
    assert 0.0 <= report["rater"]["heldout_accuracy"] <= 1.0
    assert "spearman" in report["reward_model"]
    assert set(report["seconds"]) >= {"base_train", "finetune_equal_weights", "total"}
    assert Image.open(tmp_path / "grid.png").size[0] > 0
    assert "share 3" in (tmp_path / "report.md").read_text()
    assert set(report["weight_mass"]) == set(report["variants"])
    equal = report["weight_mass"]["equal_weights"]
    assert equal["effective_n"] == pytest.approx(18)
    assert sum(equal["share_by_rating"].values()) == pytest.approx(1.0)
    assert (
        "Where each fine-tune's synthetic weight went"
        in (tmp_path / "report.md").read_text()
    )
    with (tmp_path / "samples.csv").open() as handle:
        sets = Counter(row["set"] for row in csv.DictReader(handle))
    expected = {"before": 18, "candidates_reward_weighted": 72}
    expected.update({f"after_{v}": 18 for v in trained if v != "reward_weighted"})
    assert sets == expected
