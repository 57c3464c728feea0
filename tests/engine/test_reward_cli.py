import argparse
import csv
import json

import numpy as np
import pytest
from PIL import Image

from models_ml.engine.commands import evaluate, score, train_reward


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="engine")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (train_reward, score, evaluate):
        module.add_parser(sub)
    return parser


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def ratings_dir(tmp_path_factory):
    """60 ratings of grey squares: prompts 'light'/'dark', rated by agreement."""
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    rows = ["image_path,rating,modality,expert_level,prompt,rater,round"]
    for k in range(6):
        for word in ("light", "dark"):
            for j in range(5):
                value = rng.uniform(0, 1)
                name = f"{word}{k}_{j}.png"
                Image.fromarray(np.full((24, 24), int(value * 255), np.uint8)).save(
                    root / name
                )
                match = value if word == "light" else 1 - value
                rating = 3 if match > 0.66 else 2 if match > 0.33 else 1
                rows.append(f"{name},{rating},ct,senior,{word} square case {k},r1,1")
    (root / "ratings.csv").write_text("\n".join(rows) + "\n")
    return root


def test_train_reward_writes_a_model_dir_and_prints_metrics(ratings_dir, capsys):
    out = ratings_dir / "model"
    rc = _run(
        [
            "train-reward",
            "--ratings",
            str(ratings_dir / "ratings.csv"),
            "--output_dir",
            str(out),
            "--ensemble_size",
            "2",
            "--epochs",
            "60",
            "--folds",
            "3",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "spearman" in printed and "kappa_quadratic" in printed
    assert (out / "reward_model.safetensors").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["heldout"]["n"] == 60 and len(metrics["folds"]) == 3
    with (out / "heldout_predictions.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 60


def test_score_writes_one_row_per_image(ratings_dir, tmp_path):
    model = ratings_dir / "model"
    if not model.is_dir():
        pytest.fail("train-reward test must run first in this module")
    rc = _run(
        [
            "score",
            "--reward_model",
            str(model),
            "--manifest",
            str(ratings_dir / "ratings.csv"),
            "--output_csv",
            str(tmp_path / "scores.csv"),
        ]
    )
    assert rc == 0
    with (tmp_path / "scores.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 60
    assert all(0 <= float(r["reward"]) <= 1 for r in rows)


def test_bad_csv_row_exits_2_with_one_line_naming_the_row(tmp_path, capsys):
    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "ratings.csv").write_text(
        "image_path,rating,modality,expert_level,prompt\n"
        "a.png,2,ct,senior,x\n"
        "a.png,five,ct,senior,x\n"
    )
    rc = _run(
        [
            "train-reward",
            "--ratings",
            str(tmp_path / "ratings.csv"),
            "--output_dir",
            str(tmp_path / "m"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err == [
        f"error: {tmp_path / 'ratings.csv'} line 3: rating 'five' is not 1, 2 or 3"
    ]


def test_evaluate_writes_json_with_local_fd(tmp_path, capsys):
    rng = np.random.default_rng(0)
    lines = ["path,Text,modality"]
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8)).save(
            tmp_path / f"r{i}.png"
        )
        Image.fromarray(rng.integers(0, 128, (24, 24), dtype=np.uint8)).save(
            tmp_path / f"g{i}.png"
        )
        lines.append(f"r{i}.png,report {i},ct")
    (tmp_path / "real.csv").write_text("\n".join(lines) + "\n")
    gen = tmp_path / "gen"
    gen.mkdir()
    for i in range(4):
        (tmp_path / f"g{i}.png").rename(gen / f"g{i}.png")
    rc = _run(
        [
            "evaluate",
            "--generated_dir",
            str(gen),
            "--real_csv",
            str(tmp_path / "real.csv"),
            "--output_json",
            str(tmp_path / "eval.json"),
        ]
    )
    assert rc == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["local_fd"] > 0 and result["n_generated"] == 4
    assert "local_fd" in capsys.readouterr().out
