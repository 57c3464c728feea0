"""Command line: discovery of commands, user errors, train then generate."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from models_ml.engine import cli
from tests.engine.helpers import write_tiny_dataset


def test_help_lists_the_diffusion_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])

    out = capsys.readouterr().out
    assert "train" in out and "generate" in out and "finetune" in out


def test_missing_command_module_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "COMMANDS", ("no_such_command", "generate"))

    parser = cli.build_parser()

    assert "generate" in parser.format_help()


def test_import_error_inside_an_existing_module_is_not_hidden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(name: str) -> None:
        raise ModuleNotFoundError("No module named 'missing_dependency'", name="x")

    monkeypatch.setattr(importlib, "import_module", broken)

    with pytest.raises(ModuleNotFoundError, match="missing_dependency"):
        cli.build_parser()


def test_user_error_prints_one_line_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("path,Text\n")

    code = cli.main(
        ["train", "--data", str(empty), "--output_dir", str(tmp_path / "o")]
    )

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: ") and "empty.csv" in err[-1]
    assert not any("Traceback" in line for line in err)


def test_train_then_generate_from_the_command_line(tmp_path: Path) -> None:
    data = write_tiny_dataset(tmp_path / "data")
    run = tmp_path / "run"
    trained = cli.main(
        [
            "train",
            "--dataset_csv",
            str(data),
            "--output_dir",
            str(run),
            "--resolution",
            "16",
            "--channels",
            "8",
            "16",
            "--batch_size",
            "2",
            "--max_train_steps",
            "2",
            "--checkpointing_steps",
            "2",
            "--device",
            "cpu",
        ]
    )
    generated = cli.main(
        [
            "generate",
            "--model_path",
            str(run / "model"),
            "--prompt",
            "CT: slice",
            "--modality",
            "CT",
            "--img_num",
            "2",
            "--seed",
            "5",
            "--num_inference_steps",
            "2",
            "--output_dir",
            str(tmp_path / "out"),
        ]
    )
    from_checkpoint = cli.main(
        [
            "generate",
            "--model_path",
            str(run / "model"),
            "--checkpoint",
            str(run / "checkpoint-2"),
            "--prompt",
            "CT: slice",
            "--num_inference_steps",
            "2",
            "--output_dir",
            str(tmp_path / "out2"),
        ]
    )

    rows = (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()
    assert (trained, generated, from_checkpoint) == (0, 0, 0)
    assert [json.loads(r)["seed"] for r in rows] == [5, 6]


@pytest.mark.parametrize(("given", "expected"), [([], "sample"), (["loss"], "loss")])
def test_finetune_passes_how_the_weights_act_to_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: list[str], expected: str
) -> None:
    from models_ml.engine.commands import finetune

    seen = []
    monkeypatch.setattr(
        finetune, "run_training", lambda config: seen.append(config) or 0
    )
    weights = write_tiny_dataset(tmp_path, weights=[1.0] * 8)
    argv = ["finetune", "--weights_csv", str(weights), "--model_path", str(tmp_path)]
    argv += ["--output_dir", str(tmp_path / "out")]
    argv += ["--weighting", *given] if given else []

    cli.main(argv)

    assert [c.weighting for c in seen] == [expected]
    with pytest.raises(SystemExit):
        cli.main([*argv[:7], "--weighting", "both"])


def test_finetune_passes_the_objective_and_its_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models_ml.engine.commands import finetune

    seen = []
    monkeypatch.setattr(
        finetune, "run_training", lambda config: seen.append(config) or 0
    )
    pairs = tmp_path / "pairs.csv"
    common = ["--model_path", str(tmp_path), "--output_dir", str(tmp_path / "o")]

    cli.main(["finetune", "--objective", "dpo", "--pairs_csv", str(pairs), *common])
    cli.main(
        [
            "finetune",
            "--objective",
            "kto",
            "--weights_csv",
            "w.csv",
            "--kto_beta",
            "500",
            "--kto_undesirable_weight",
            "1.5",
            "--no_kto_balance",
            *common,
        ]
    )

    dpo, kto = seen
    assert (dpo.objective, dpo.pairs_csv, dpo.weights_csv) == ("dpo", str(pairs), None)
    assert (kto.objective, kto.kto_beta, kto.kto_undesirable_weight) == (
        "kto",
        500.0,
        1.5,
    )
    assert kto.kto_balance is False


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--objective", "dpo", "--weights_csv", "w.csv"], "dpo needs --pairs_csv"),
        (["--objective", "kto"], "kto needs --weights_csv"),
    ],
)
def test_finetune_refuses_an_objective_without_its_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code = cli.main(
        ["finetune", *argv, "--model_path", str(tmp_path), "--output_dir", "o"]
    )

    assert code == 2 and message in capsys.readouterr().err


def test_finetune_refuses_an_unknown_objective_and_a_nonpositive_beta(
    tmp_path: Path,
) -> None:
    base = ["finetune", "--model_path", str(tmp_path), "--output_dir", "o"]
    with pytest.raises(SystemExit):
        cli.main([*base, "--objective", "ppo"])
    with pytest.raises(SystemExit):
        cli.main([*base, "--objective", "kto", "--weights_csv", "w", "--kto_beta", "0"])
