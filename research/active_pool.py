"""A servable pool for the active-learning experiment with all three ratings.

The pool of a ``simulated_raters`` run is a narrow target: a well-trained
base gives ratings 2 and 3 only. Here the same three modalities are prompted,
but the images come from base models stopped after 10, 20, 120 and 300
training steps, so the pool holds what a platform sees while its model is
still learning: images that do not show the prompted modality (rated 1,
all from the 10- and 20-step models), ambiguous ones (2) and good
ones (3). Prompting all eight demo modalities instead was tried first: the
rater then gave 3s to 7 of 64 images of a 300-step model, too few. The rater
is ``simulated_raters``' program, fitted on the real images of the same
modalities; every generator uses the same prompts and seeds, so a seed's
images across generators form one group for the held-out split.

Writes ``samples.csv`` and ``real.csv`` in the format of a
``simulated_raters`` run, so ``active_learning --source_dir`` reads it as is.

    python -m research.active_pool --output_dir DIR [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .simulated_raters import MODALITIES


@dataclass
class PoolConfig:
    output_dir: Path
    modalities: tuple[str, ...] = MODALITIES
    per_modality: int = 60
    resolution: int = 16
    channels: tuple[int, ...] = (32, 64)
    # One generator per entry: the base model trained for that many steps.
    generator_steps: tuple[int, ...] = (10, 20, 120, 300)
    base_lr: float = 1e-3
    batch_size: int = 16
    images_per_prompt: int = 40
    sample_steps: int = 40
    seed: int = 0


def quick_config(output_dir: Path) -> PoolConfig:
    return PoolConfig(
        output_dir=output_dir,
        per_modality=10,
        channels=(8, 16),
        generator_steps=(4, 12),
        batch_size=8,
        images_per_prompt=2,
        sample_steps=6,
    )


def build_pool(config: PoolConfig) -> dict[str, Any]:
    """Train the generators (reused when already saved), generate, rate, write."""
    import torch

    from models_ml.engine import TrainConfig, finetune, load_backend

    from .simulated_raters import (
        ExperimentConfig,
        Timer,
        _generate_and_rate,
        _load_average,
        _requests,
        _write_csv,
        choose_prompts,
        real_data_and_rater,
    )

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    timer = Timer()
    report: dict[str, Any] = {
        "config": json.loads(json.dumps(dataclasses.asdict(config), default=str)),
        "load_average_start": _load_average(),
    }
    real_csv, real, rater, report["rater"] = real_data_and_rater(
        out,
        timer,
        per_modality=config.per_modality,
        modalities=config.modalities,
        resolution=config.resolution,
        seed=config.seed,
    )
    prompts = choose_prompts(real, config.modalities)
    requests = _requests(prompts, config.images_per_prompt, config.seed)
    sampling = ExperimentConfig(
        output_dir=out,
        batch_size=config.batch_size,
        sample_steps=config.sample_steps,
    )
    rows: list[tuple[Any, ...]] = []
    report["sets"] = {}
    for steps in config.generator_steps:
        name = f"base_{steps}"
        final = out / name / "model"
        with timer.step(f"train_{name}"):
            if not final.is_dir():
                result = finetune(
                    TrainConfig(
                        data_csv=str(real_csv),
                        output_dir=str(out / name),
                        resolution=config.resolution,
                        channels=config.channels,
                        max_steps=steps,
                        learning_rate=config.base_lr,
                        batch_size=config.batch_size,
                        lr_warmup_steps=0,
                        seed=config.seed,
                        device="cpu",
                        checkpoints_total_limit=1,
                    )
                )
                assert result.final_dir is not None
                final = result.final_dir
        with timer.step(f"generate_{name}"):
            samples = _generate_and_rate(
                load_backend(final), requests, rater, out / f"images_{name}", sampling
            )
        rows += [
            (name, s.path.relative_to(out), s.prompt, s.modality, s.seed, s.rating)
            for s in samples
        ]
        report["sets"][name] = rating_counts([s.rating for s in samples])
    _write_csv(
        out / "samples.csv",
        ("set", "path", "prompt", "modality", "seed", "rating"),
        rows,
    )
    report["rating_counts"] = rating_counts([int(r[-1]) for r in rows])
    report["per_modality"] = {
        m: rating_counts([int(r[-1]) for r in rows if r[3] == m])
        for m in config.modalities
    }
    report["seconds"] = timer.seconds
    report["load_average_end"] = _load_average()
    (out / "pool.json").write_text(json.dumps(report, indent=2))
    return report


def rating_counts(ratings: Sequence[int]) -> dict[str, int]:
    counts = Counter(ratings)
    return {str(v): counts.get(v, 0) for v in (1, 2, 3)}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m research.active_pool",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--output_dir", required=True, type=Path, help="pool folder")
    parser.add_argument("--quick", action="store_true", help="test-size pool")
    parser.add_argument(
        "--images_per_prompt", type=int, help="seeds per prompt and generator"
    )
    parser.add_argument(
        "--generator_steps",
        type=int,
        nargs="+",
        help="training steps of each generator (default: 10 20 120 300)",
    )
    args = parser.parse_args(argv)
    config = (
        quick_config(args.output_dir)
        if args.quick
        else PoolConfig(output_dir=args.output_dir)
    )
    if args.images_per_prompt:
        config.images_per_prompt = args.images_per_prompt
    if args.generator_steps:
        config.generator_steps = tuple(args.generator_steps)
    report = build_pool(config)
    print(json.dumps({k: report[k] for k in ("rating_counts", "sets", "seconds")}))
    return report


if __name__ == "__main__":
    main()
