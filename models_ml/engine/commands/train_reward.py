"""``train-reward``: fit the reward model on ratings, report held-out metrics."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import EngineError


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    parser = subparsers.add_parser(
        "train-reward",
        help="train the reward model on physicians' ratings",
        description=(
            "Train the ordinal reward model (frozen image features + prompt "
            "embedding, an ensemble of small heads) on a ratings CSV, report "
            "metrics on prompts held out by cross-validation, and save the model "
            "as safetensors + JSON."
        ),
    )
    parser.add_argument(
        "--ratings",
        required=True,
        type=Path,
        help="ratings CSV with image_path,rating,modality,expert_level,prompt "
        "(extra columns allowed; optional weight column); paths relative to the CSV",
    )
    parser.add_argument(
        "--output_dir", required=True, type=Path, help="folder for the trained model"
    )
    parser.add_argument(
        "--real_csv",
        type=Path,
        help="import CSV path,Text[,modality] of real images; each is paired with "
        "a mismatched prompt as a down-weighted rating-1 example",
    )
    parser.add_argument(
        "--features",
        default="handcrafted",
        help="image features: handcrafted (no weights), unet:<diffusers model dir> "
        "or hf:<local vision model folder> (default: handcrafted)",
    )
    parser.add_argument(
        "--ensemble_size", type=int, default=5, help="heads in the ensemble (default 5)"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=200,
        help="full-batch training steps (default 200)",
    )
    parser.add_argument(
        "--folds",
        type=int,
        default=5,
        help="cross-validation folds by prompt (default 5)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--negative_weight",
        type=float,
        default=0.3,
        help="weight of a free negative relative to a rating (default 0.3)",
    )
    parser.add_argument(
        "--target_precision",
        type=float,
        default=0.8,
        help="precision for 'rated 3' the suggested filter threshold must reach "
        "on held-out ratings (default 0.8)",
    )
    parser.set_defaults(func=run)


def tqdm_progress() -> Any:
    """A ``progress(stage, done, total)`` callback drawing one tqdm bar per stage."""
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(
                total=total, desc=stage, file=sys.stderr, leave=False
            )
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return progress


def format_metrics(metrics: dict[str, Any]) -> str:
    """The scalar metrics as an aligned two-column table."""
    rows = [(k, v) for k, v in metrics.items() if not isinstance(v, (list, dict))]
    width = max((len(k) for k, _ in rows), default=0)
    lines = []
    for key, value in rows:
        text = (
            "n/a"
            if value is None
            else f"{value:.3f}"
            if isinstance(value, float)
            else str(value)
        )
        lines.append(f"{key:<{width}}  {text}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from ..filtering import calibrate_threshold
    from ..reward import train_reward_model
    from ..reward_data import read_ratings_csv, read_real_csv
    from ..reward_head import RewardConfig

    records = read_ratings_csv(args.ratings)
    real = read_real_csv(args.real_csv) if args.real_csv else None
    config = RewardConfig(
        features=args.features,
        ensemble_size=args.ensemble_size,
        epochs=args.epochs,
        n_folds=args.folds,
        seed=args.seed,
        negative_weight=args.negative_weight,
    )
    result = train_reward_model(
        records, config=config, real_images=real, progress=tqdm_progress()
    )
    metrics = dict(result.metrics)
    if result.heldout is not None:
        calibration = calibrate_threshold(
            result.heldout.reward, result.heldout.ratings, args.target_precision
        )
        metrics["threshold"] = calibration.threshold
        metrics["threshold_precision"] = calibration.achieved_precision
        metrics["threshold_recall"] = calibration.recall
        metrics["threshold_note"] = calibration.message
        result.model.info["threshold"] = calibration.threshold
    out = result.model.save(args.output_dir)
    (out / "metrics.json").write_text(
        json.dumps({"heldout": metrics, "folds": result.fold_metrics}, indent=2)
    )
    if result.heldout is not None:
        with (out / "heldout_predictions.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(
                ["prompt", "rating", "reward", "p1", "p2", "p3", "uncertainty"]
            )
            h = result.heldout
            for i, prompt in enumerate(h.prompts):
                writer.writerow(
                    [prompt, int(h.ratings[i]), f"{h.reward[i]:.6f}"]
                    + [f"{p:.6f}" for p in h.probs[i]]
                    + [f"{h.uncertainty[i]:.6f}"]
                )
    print(f"held-out metrics ({metrics['n_folds']} folds by prompt):")
    print(format_metrics(metrics))
    print(f"reward model saved to {out}")
    return 0
