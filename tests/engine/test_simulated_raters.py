"""The simulated-rater experiment: statistics and an end-to-end quick run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from models_ml.engine.experiments.simulated_raters import (
    main,
    rating_summary,
    wilson_interval,
)


def test_wilson_interval_matches_known_values_and_stays_inside_zero_one() -> None:
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3)
    assert high == pytest.approx(0.9433, abs=1e-3)
    assert wilson_interval(0, 18)[0] == 0.0
    assert wilson_interval(5, 5)[1] == 1.0


def test_rating_summary_counts_threes_per_modality() -> None:
    summary = rating_summary([3, 1, 3, 2], ["CT", "CT", "Fundus", "Fundus"])

    assert summary["n"] == 4 and summary["rated_3"] == 2
    assert summary["share_3"] == 0.5
    assert summary["counts"] == {"1": 1, "2": 1, "3": 2}
    assert summary["per_modality"]["CT"] == {"n": 2, "rated_3": 1}


@pytest.mark.slow
def test_quick_run_goes_end_to_end_and_writes_the_report(tmp_path: Path) -> None:
    main(["--output_dir", str(tmp_path), "--quick"])

    report = json.loads((tmp_path / "report.json").read_text())
    for key in ("before", "after_one_round", "best_of_4_after"):
        assert report[key]["n"] == 18
        assert 0.0 <= report[key]["share_3_wilson95"][0] <= 1.0
    assert report["best_of_4_after"]["filter_stats"]["n_generated"] == 72
    assert 0.0 <= report["rater"]["heldout_accuracy"] <= 1.0
    assert "spearman" in report["reward_model"]
    assert set(report["seconds"]) >= {"base_train", "finetune", "best_of_4", "total"}
    assert Image.open(tmp_path / "grid.png").size[0] > 0
    assert "share 3" in (tmp_path / "report.md").read_text()
