"""``evaluate``: compare generated with real images: local FD/KID, diversity, reward."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import EngineError


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="compare generated images with real ones",
        description=(
            "Local FD and KID (features from a local extractor, NOT comparable "
            "with published FID), MS-SSIM diversity per prompt and, with a reward "
            "model, reward statistics."
        ),
    )
    parser.add_argument(
        "--generated_dir",
        required=True,
        type=Path,
        help="folder of generated images (its manifest.csv is used if present) "
        "or a manifest CSV path,prompt,modality",
    )
    parser.add_argument(
        "--real_csv", required=True, type=Path, help="import CSV path,Text[,modality]"
    )
    parser.add_argument(
        "--reward_model", type=Path, help="reward model folder, for reward statistics"
    )
    parser.add_argument(
        "--features",
        help="extractor for local FD/KID: handcrafted, unet:<dir> or hf:<folder> "
        "(default: the reward model's, else handcrafted)",
    )
    parser.add_argument(
        "--threshold", type=float, help="report the share of rewards at or above this"
    )
    parser.add_argument("--output_json", type=Path, help="also write the results here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate_sets
    from ..features import feature_extractor_from_spec
    from .train_reward import format_metrics

    extractor = feature_extractor_from_spec(args.features) if args.features else None
    result = evaluate_sets(
        args.generated_dir,
        args.real_csv,
        reward_model=args.reward_model,
        feature_extractor=extractor,
        threshold=args.threshold,
    )
    print(format_metrics(result))
    if "reward" in result:
        print("reward:")
        print(format_metrics(result["reward"]))
    if args.output_json:
        args.output_json.parent.mkdir(parents=True, exist_ok=True)
        args.output_json.write_text(json.dumps(result, indent=2))
        print(f"results written to {args.output_json}")
    return 0
