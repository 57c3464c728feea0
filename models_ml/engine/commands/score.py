"""``score``: score images with a saved reward model and write a CSV."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from ..errors import DatasetError, EngineError


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    parser = subparsers.add_parser(
        "score",
        help="score images with a trained reward model",
        description=(
            "Predict rating probabilities, reward (0-1) and ensemble uncertainty "
            "for every image in a folder or manifest."
        ),
    )
    parser.add_argument(
        "--reward_model",
        required=True,
        type=Path,
        help="folder written by train-reward",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--input_dir",
        type=Path,
        help="folder of images (needs --prompt and --modality)",
    )
    source.add_argument(
        "--manifest",
        type=Path,
        help="CSV with path (or image_path), prompt (or Text) and optional modality",
    )
    parser.add_argument("--prompt", help="prompt for images that have none")
    parser.add_argument("--modality", help="modality for images that have none")
    parser.add_argument(
        "--output_csv", required=True, type=Path, help="where to write the scores"
    )
    parser.add_argument(
        "--batch_size", type=int, default=16, help="images scored at once (default 16)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..evaluation import read_generated
    from ..images import load_pil
    from ..reward import RewardModel

    generated = read_generated(args.input_dir or args.manifest)
    if not generated:
        raise DatasetError(f"no images in {args.input_dir or args.manifest}")
    # (path, prompt, modality) of each image, none of them empty
    items: list[tuple[str, str, str]] = []
    for row in generated:
        prompt: str | None = row["prompt"] or args.prompt
        modality: str | None = row["modality"] or args.modality
        if not prompt or not modality:
            raise DatasetError(
                f"{row['path']}: no prompt or modality; pass --prompt and --modality"
            )
        items.append((row["path"], prompt, modality))
    model = RewardModel.load(args.reward_model)
    args.output_csv.parent.mkdir(parents=True, exist_ok=True)
    with args.output_csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "image_path",
                "prompt",
                "modality",
                "reward",
                "p1",
                "p2",
                "p3",
                "uncertainty",
            ]
        )
        for start in tqdm(
            range(0, len(items), args.batch_size), desc="score", file=sys.stderr
        ):
            batch = items[start : start + args.batch_size]
            pred = model.predict(
                [load_pil(path) for path, _, _ in batch],
                [prompt for _, prompt, _ in batch],
                [modality for _, _, modality in batch],
            )
            for k, (path, prompt, modality) in enumerate(batch):
                writer.writerow(
                    [
                        path,
                        prompt,
                        modality,
                        f"{pred.reward[k]:.6f}",
                    ]
                    + [f"{p:.6f}" for p in pred.probs[k]]
                    + [f"{pred.uncertainty[k]:.6f}"]
                )
    print(f"scored {len(items)} images -> {args.output_csv}")
    return 0
