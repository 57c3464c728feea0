"""``finetune``: reward-weighted fine-tuning on rated synthetic samples."""

from __future__ import annotations

import argparse
from typing import Any

from .train import add_training_options, config_kwargs, run_training

HELP = "reward-weighted fine-tuning from a CSV of path,Text,modality,weight rows"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("finetune", help=HELP, description=HELP)
    add = parser.add_argument
    add(
        "--weights_csv",
        required=True,
        help="synthetic samples with weights already normalised per prompt",
    )
    add(
        "--real_csv",
        "--data",
        "--dataset_csv",
        dest="real_csv",
        help="real images (path,Text[,modality]) that regularise the model",
    )
    add("--beta", type=float, default=1.0, help="weight of the real-image loss")
    add(
        "--filter_threshold",
        type=float,
        help="filtered variant: train only on samples with weight >= this",
    )
    add(
        "--weighting",
        choices=("loss", "sample"),
        default="sample",
        help="sample (default): batches drawn in proportion to the weights, "
        "counted equally; loss: every sample in the batches, its loss scaled "
        "by its weight",
    )
    add(
        "--max_drift",
        type=float,
        help="stop when distance to real images grows beyond this factor",
    )
    add(
        "--min_diversity_fraction",
        type=float,
        default=0.5,
        help="stop when sample diversity falls below this share of the start",
    )
    add("--drift_check_steps", type=int, default=50, help="measure drift every N steps")
    add_training_options(parser)
    parser.set_defaults(learning_rate=5e-5, max_train_steps=200)


def run(args: argparse.Namespace) -> int:
    from ..errors import EngineError
    from ..train import TrainConfig

    if not args.model_path:
        raise EngineError("finetune needs --model_path (the model to improve)")
    config = TrainConfig(
        weights_csv=args.weights_csv,
        real_csv=args.real_csv,
        beta=args.beta,
        filter_threshold=args.filter_threshold,
        weighting=args.weighting,
        max_drift=args.max_drift,
        min_diversity_fraction=args.min_diversity_fraction,
        drift_check_steps=args.drift_check_steps,
        **config_kwargs(args),
    )
    return run_training(config)
