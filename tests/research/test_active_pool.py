"""The active-learning pool builder end to end at test size."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from research import active_pool
from research.active_learning import pool_from_run
from research.active_pool import (
    PoolConfig,
    build_pool,
    quick_config,
    rating_counts,
)

pytestmark = pytest.mark.research


def test_command_line_sets_the_generators_and_seeds_per_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[PoolConfig] = []

    def fake_build(config: PoolConfig) -> dict[str, object]:
        seen.append(config)
        return {"rating_counts": {}, "sets": {}, "seconds": {}}

    monkeypatch.setattr(active_pool, "build_pool", fake_build)
    active_pool.main(
        ["--output_dir", str(tmp_path), "--generator_steps", "5", "50"]
        + ["--images_per_prompt", "3"]
    )

    assert seen[0].generator_steps == (5, 50)
    assert seen[0].images_per_prompt == 3
    assert seen[0].modalities == ("Fundus", "Chest X-ray", "CT")


def test_rating_counts_name_every_rating_even_when_absent() -> None:
    assert rating_counts([3, 2, 3]) == {"1": 0, "2": 1, "3": 2}


@pytest.mark.slow
def test_pool_has_every_generator_on_the_same_seeds_and_reads_as_a_run(
    tmp_path: Path,
) -> None:
    config = quick_config(tmp_path)  # 3 modalities x 2 prompts, 2 seeds each
    report = build_pool(config)

    with (tmp_path / "samples.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["set"] for r in rows] == ["base_4"] * 12 + ["base_12"] * 12
    seeds = [r["seed"] for r in rows]
    assert seeds[:12] == seeds[12:]
    assert sum(report["rating_counts"].values()) == 24
    pool, facts = pool_from_run(tmp_path)
    assert facts["n_images"] == 24 and facts["n_seed_groups"] == 12
    assert set(np.unique(pool.ratings)) <= {1, 2, 3}
    assert (tmp_path / "base_12" / "model").is_dir()
