"""``train``: train the tiny model from scratch, or fine-tune a local model."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "train a diffusion model on a CSV of path,Text[,modality] rows"


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``train`` and ``finetune``."""
    add = parser.add_argument
    add("--output_dir", required=True, help="folder for checkpoints and the model")
    add(
        "--backend",
        choices=("tiny", "sd"),
        default="tiny",
        help="tiny: built-in pixel model; sd: a local Stable Diffusion folder",
    )
    add("--model_path", help="model folder to start from (required for sd)")
    add("--resolution", type=int, help="image side in pixels (tiny default 64)")
    add(
        "--channels",
        type=int,
        nargs="+",
        default=[32, 64, 128],
        help="tiny UNet channels per level (new models only)",
    )
    add(
        "--batch_size",
        "--train_batch_size",
        type=int,
        default=16,
        help="images per step and process",
    )
    add("--max_train_steps", type=int, default=1000, help="optimizer steps")
    add("--learning_rate", type=float, default=2e-4, help="peak AdamW learning rate")
    add(
        "--gradient_accumulation_steps",
        type=int,
        default=1,
        help="micro-batches per optimizer step",
    )
    add(
        "--lr_scheduler",
        choices=("cosine", "constant", "linear"),
        default="cosine",
        help="learning-rate shape after warm-up",
    )
    add("--lr_warmup_steps", type=int, default=20, help="linear warm-up steps")
    add("--max_grad_norm", type=float, default=1.0, help="gradient clipping norm")
    add("--seed", type=int, default=0, help="seed for weights, batches and noise")
    add(
        "--checkpointing_steps",
        type=int,
        default=0,
        help="save a resumable checkpoint every N steps (0: never)",
    )
    add(
        "--checkpoints_total_limit",
        type=int,
        default=3,
        help="keep only the newest N checkpoints",
    )
    add(
        "--resume_from_checkpoint",
        metavar="latest|PATH",
        help="resume from the newest checkpoint in output_dir, or a given one",
    )
    add(
        "--validation_prompts",
        nargs="+",
        default=[],
        help="prompts sampled during training ('CT: ...' picks modality CT)",
    )
    add(
        "--validation_steps",
        type=int,
        default=0,
        help="write validation grids every N steps (0: never)",
    )
    add(
        "--mixed_precision",
        choices=("no", "fp16", "bf16"),
        default="no",
        help="half precision on GPU",
    )
    add("--use_lora", action="store_true", help="train LoRA adapters (sd only)")
    add("--lora_rank", type=int, default=4, help="LoRA rank")
    add(
        "--train_text_encoder",
        action="store_true",
        help="also train LoRA on the text encoder (sd with --use_lora)",
    )
    add("--use_ema", action="store_true", help="keep an EMA copy for the final model")
    add("--snr_gamma", type=float, help="Min-SNR loss weighting gamma (5.0 is usual)")
    add(
        "--gradient_checkpointing", action="store_true", help="trade compute for memory"
    )
    add("--device", help="cpu, cuda, cuda:1 ... (default: best available)")
    add(
        "--save_precision",
        choices=("fp32", "fp16"),
        default="fp32",
        help="precision of the final model's weights file (fp16: tiny only, half "
        "the size; it loads back into float32)",
    )


def config_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """TrainConfig fields from the shared options."""
    return {
        "output_dir": args.output_dir,
        "backend": args.backend,
        "model_path": args.model_path,
        "resolution": args.resolution,
        "channels": tuple(args.channels),
        "batch_size": args.batch_size,
        "max_steps": args.max_train_steps,
        "learning_rate": args.learning_rate,
        "grad_accum": args.gradient_accumulation_steps,
        "lr_scheduler": args.lr_scheduler,
        "lr_warmup_steps": args.lr_warmup_steps,
        "max_grad_norm": args.max_grad_norm,
        "seed": args.seed,
        "checkpointing_steps": args.checkpointing_steps,
        "checkpoints_total_limit": args.checkpoints_total_limit,
        "resume": args.resume_from_checkpoint,
        "validation_prompts": list(args.validation_prompts),
        "validation_steps": args.validation_steps,
        "mixed_precision": args.mixed_precision,
        "use_lora": args.use_lora,
        "lora_rank": args.lora_rank,
        "train_text_encoder": args.train_text_encoder,
        "use_ema": args.use_ema,
        "snr_gamma": args.snr_gamma,
        "gradient_checkpointing": args.gradient_checkpointing,
        "device": args.device,
        "save_precision": args.save_precision,
    }


def run_training(config: Any) -> int:
    """Train with a tqdm bar and print where the result went."""
    from tqdm import tqdm

    from ..train import train
    from ..train_config import TrainProgress

    bar = tqdm(total=config.max_steps, unit="step", dynamic_ncols=True)

    def progress(p: TrainProgress) -> None:
        bar.n = p.step
        bar.set_postfix(loss=f"{p.loss:.4f}", img_s=f"{p.samples_per_second:.1f}")
        bar.refresh()

    try:
        result = train(config, progress=progress)
    finally:
        bar.close()
    print(f"steps: {result.steps}  samples/s: {result.samples_per_second:.2f}")
    if result.validation_images:
        print(f"validation: {result.validation_images[-1]}")
    if result.stopped_reason:
        print(f"stopped: {result.stopped_reason}")
        return 1
    print(f"model: {result.final_dir}  version: {result.version}")
    return 0


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    parser = subparsers.add_parser("train", help=HELP, description=HELP)
    parser.add_argument(
        "--data",
        "--dataset_csv",
        dest="data",
        required=True,
        help="CSV with columns path,Text[,modality]",
    )
    add_training_options(parser)


def run(args: argparse.Namespace) -> int:
    from ..train_config import TrainConfig

    return run_training(TrainConfig(data_csv=args.data, **config_kwargs(args)))
