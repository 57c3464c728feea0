"""``finetune``: fine-tune a model from feedback on its own samples."""

from __future__ import annotations

import argparse

from .train import add_training_options, config_kwargs, run_training

HELP = (
    "fine-tune a diffusion model from rated samples (weighted, filtered, kto, "
    "dpo) or, as a control, from the same samples without feedback (none)"
)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    from ..objectives import OBJECTIVES

    parser = subparsers.add_parser("finetune", help=HELP, description=HELP)
    add = parser.add_argument
    add(
        "--objective",
        choices=OBJECTIVES,
        default="weighted",
        help="weighted: reward-weighted likelihood; filtered: rows whose weight "
        "reaches --filter_threshold; kto: Diffusion-KTO on a 'label' column "
        "(desirable / undesirable / neutral) against the frozen parent; dpo: "
        "Diffusion-DPO on --pairs_csv against the frozen parent; none: the same "
        "rows counted equally, the no-feedback control (docs/engine.md)",
    )
    add(
        "--weights_csv",
        help="synthetic samples: path,Text,modality,weight[,label] rows (weights "
        "already normalised per prompt; label for kto)",
    )
    add(
        "--pairs_csv",
        help="dpo: chosen_path,rejected_path,Text[,modality][,weight] rows (the "
        "platform's pairs export reads as it is)",
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
        help="filtered: train only on samples with weight >= this",
    )
    add(
        "--weighting",
        choices=("loss", "sample"),
        default="sample",
        help="sample (default): batches drawn in proportion to the weights, "
        "counted equally; loss: every sample in the batches, its loss scaled "
        "by its weight",
    )
    add("--kto_beta", type=_positive, default=2000.0, help="KTO temperature")
    add(
        "--kto_desirable_weight",
        type=_positive,
        default=1.0,
        help="KTO lambda_D, the weight of desirable rows",
    )
    add(
        "--kto_undesirable_weight",
        type=_positive,
        default=1.0,
        help="KTO lambda_U, the weight of undesirable rows",
    )
    add(
        "--no_kto_balance",
        action="store_true",
        help="keep the rows' own weights instead of giving desirable and "
        "undesirable rows the same total weight",
    )
    add("--dpo_beta", type=_positive, default=1500.0, help="DPO temperature")
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
    from ..train_config import TrainConfig

    if not args.model_path:
        raise EngineError("finetune needs --model_path (the model to improve)")
    if args.objective == "dpo" and not args.pairs_csv:
        raise EngineError("--objective dpo needs --pairs_csv")
    if args.objective != "dpo" and not args.weights_csv:
        raise EngineError(f"--objective {args.objective} needs --weights_csv")
    config = TrainConfig(
        objective=args.objective,
        weights_csv=args.weights_csv,
        pairs_csv=args.pairs_csv,
        real_csv=args.real_csv,
        beta=args.beta,
        filter_threshold=args.filter_threshold,
        weighting=args.weighting,
        kto_beta=args.kto_beta,
        kto_desirable_weight=args.kto_desirable_weight,
        kto_undesirable_weight=args.kto_undesirable_weight,
        kto_balance=not args.no_kto_balance,
        dpo_beta=args.dpo_beta,
        max_drift=args.max_drift,
        min_diversity_fraction=args.min_diversity_fraction,
        drift_check_steps=args.drift_check_steps,
        **config_kwargs(args),
    )
    return run_training(config)
