"""The objectives experiment: its arms train on the platform's rules, its
report says what each did against the parent and the control, and a rerun
reuses what is cached."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from research.feedback_objectives import (
    ArmSettings,
    RoundSample,
    arm_summary,
    finetune_data,
    main,
)
from tests.engine.helpers import command_line_refusal

pytestmark = pytest.mark.research


def sample(
    name: str, prompt: str, rating: int, rated: bool = True, **kw
) -> RoundSample:
    return RoundSample(
        path=f"/{name}.png",
        prompt=prompt,
        modality="CT",
        seed=0,
        rating=rating,
        rated=rated,
        **kw,
    )


def test_arms_train_on_the_platforms_rules() -> None:
    samples = [
        sample("a3", "p", 3),
        sample("a1", "p", 1),
        sample("a2", "p", 2),
        sample("u", "p", 0, rated=False, reward=0.9),
    ]
    arm = ArmSettings(kto_middle="dropped", kto_unrated_weight=0.5)

    assert [r[0] for r in finetune_data(samples, "filtered", arm).rows] == [
        "/a3.png",
        "/u.png",
    ]
    kto = {r[0]: (r[3], r[4]) for r in finetune_data(samples, "kto", arm).rows}
    assert kto == {
        "/a3.png": ("1.000000", "1"),
        "/a1.png": ("1.000000", "-1"),
        "/u.png": ("0.400000", "1"),
    }
    pairs = {(r[0], r[1]) for r in finetune_data(samples, "dpo", arm).rows}
    assert pairs == {
        ("/a3.png", "/a1.png"),
        ("/a3.png", "/a2.png"),
        ("/a2.png", "/a1.png"),
    }
    assert len(finetune_data(samples, "none", arm).rows) == 4


def test_arm_summary_tests_against_parent_and_control_on_the_same_seeds() -> None:
    summary = arm_summary([3, 3, 3, 1], parent=[1, 1, 3, 1], control=[3, 1, 3, 1])
    assert summary["share_3"] == 0.75 and summary["counts"] == {"1": 1, "2": 0, "3": 3}
    assert (summary["vs_parent"]["gained"], summary["vs_parent"]["lost"]) == (2, 0)
    assert summary["vs_parent"]["difference"] == 0.5
    assert summary["vs_control"]["gained"] == 1
    assert summary["phi_with_parent"] is not None


def test_with_recipes_each_objective_has_a_control_of_its_own_schedule(
    tmp_path: Path,
) -> None:
    from models_ml.engine.recipes import recipe_for
    from research.feedback_objectives import (
        ExperimentConfig,
        arm_settings,
        schedule,
    )

    config = ExperimentConfig(output_dir=tmp_path, recipes=True)
    kto, filtered = arm_settings(config, "kto"), arm_settings(config, "filtered")
    assert (kto.steps, kto.learning_rate) == (
        recipe_for("kto")["max_steps"],
        recipe_for("kto")["learning_rate"],
    )
    assert kto.kto_beta == recipe_for("kto")["kto_beta"]
    # A control on its own takes the default objective's (DPO's) schedule.
    dpo = arm_settings(config, "dpo")
    assert schedule(dpo) == schedule(arm_settings(config, "none"))
    assert schedule(filtered) != schedule(arm_settings(config, "none"))
    assert schedule(filtered) != schedule(arm_settings(config, "weighted"))
    plain = ExperimentConfig(output_dir=tmp_path)
    assert arm_settings(plain, "kto") == plain.arm


def test_arm_settings_key_changes_only_with_what_the_arm_uses() -> None:
    base = ArmSettings()
    assert base.key("weighted") == ArmSettings(kto_beta=5.0).key("weighted")
    assert base.key("kto") != ArmSettings(kto_beta=5.0).key("kto")
    assert base.key("dpo") != ArmSettings(dpo_beta=5.0).key("dpo")
    assert base.key("none") != ArmSettings(steps=7).key("none")


@pytest.mark.slow
def test_a_quick_run_reports_every_arm_and_reuses_its_cache(tmp_path: Path) -> None:
    out = tmp_path / "run"
    report = main(
        ["--output_dir", str(out), "--seeds", "7", "--quick", "--best_of", "2"]
    )

    (seed,) = report["seeds"]
    control = "none (4 steps, lr 0.0001)"
    assert set(seed["arms"]) == {"weighted", "filtered", "kto", "dpo", control}
    for name, arm in seed["arms"].items():
        if "skipped" in arm:
            continue
        assert arm["n"] == 6 * 4
        assert "vs_parent" in arm and ("vs_control" in arm) == (name != control)
        assert arm["finetune"]["objective"] == name.split()[0]
        assert arm["fd_vs_parent"] > 0
    markdown = (out / "report.md").read_text()
    assert "| 7 | parent | 24 |" in markdown
    rounds = list((out / "seed-7").glob("round-*"))
    assert len(rounds) == 1 and (rounds[0] / "reward_model").is_dir()

    again = main(
        ["--output_dir", str(out), "--seeds", "7", "--quick", "--best_of", "2"]
    )
    assert again["seeds"][0]["parent"] == seed["parent"]
    assert json.loads((out / "report.json").read_text())["seeds"][0]["seed"] == 7


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--steps", "0"], "--steps must be above 0"),
        (["--rated_per_prompt", "500"], "--rated_per_prompt must be 1-96"),
        (["--best_of", "40"], "--best_of must be 1-16"),
        (["--objectives", "ppo"], "invalid choice: 'ppo'"),
    ],
)
def test_bad_options_are_refused_by_name(tmp_path, capsys, argv, message) -> None:
    error = command_line_refusal(main, ["--output_dir", str(tmp_path), *argv], capsys)
    assert message in error
