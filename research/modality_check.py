"""Does a model draw each modality so that a program recognises it?

A number beside the look at a sample grid. The program is the simulated
physician of ``simulated_raters`` (logistic regression on
``HandcraftedFeatures``), here fitted on the real demo images of **every**
modality at the model's resolution. For each modality the model draws
``--images_per_modality`` images from the modality's two most frequent demo
prompts (the same prompts and seeds for every model) and the program says
which modality each image shows. Reported per modality and model:

- **recognised**: the share the program assigns to the prompted modality
  (rating 2 or 3 in ``simulated_raters`` terms);
- **realistic**: the share also as close to the real images as held-out real
  images are (rating 3);
- **seen as**: what the rest were taken for, most often first.

Held-out real images (30 % per modality, never used to fit the program) give
each modality's ceiling. Several ``--model_path`` are compared side by side;
a grid per model (rows: modalities) is written beside the report.

    python -m research.modality_check \\
        --model_path models_ml/demo_model [--model_path runs/x/model ...] \\
        --output_dir runs/modality_check [--images_per_modality 16] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from models_ml.engine import DEFAULT_SCHEDULER, DEFAULT_STEPS, EngineError

from .simulated_raters import (
    SimulatedRater,
    _at_resolution,
    _requests,
    choose_prompts,
    fit_simulated_rater,
)


@dataclass
class CheckConfig:
    model_paths: tuple[Path, ...]
    output_dir: Path
    images_per_modality: int = 16
    seed: int = 0
    demo_per_modality: int = 60
    sample_steps: int = DEFAULT_STEPS
    guidance: float = 1.0
    scheduler: str = DEFAULT_SCHEDULER
    batch_size: int = 16
    modalities: tuple[str, ...] = field(default_factory=tuple)  # empty: all


def seen_as(rater: SimulatedRater, images: Sequence[Image.Image]) -> list[str]:
    """The modality the program takes each image for (its most likely class)."""
    if not images:
        return []
    features = rater._features(images)
    return [str(c) for c in rater.classifier.predict(features)]


def modality_table(
    rater: SimulatedRater,
    images: Sequence[Image.Image],
    modalities: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """Per prompted modality: n, recognised, realistic and what else it was seen as."""
    ratings = rater.rate(list(images), list(modalities))
    taken = seen_as(rater, images)
    table: dict[str, dict[str, Any]] = {}
    for modality in sorted(set(modalities)):
        idx = [i for i, m in enumerate(modalities) if m == modality]
        others = Counter(taken[i] for i in idx if taken[i] != modality)
        table[modality] = {
            "n": len(idx),
            "recognised": float(np.mean([ratings[i] >= 2 for i in idx])),
            "realistic": float(np.mean([ratings[i] == 3 for i in idx])),
            "seen_as": dict(others.most_common()),
        }
    return table


def run_check(config: CheckConfig) -> dict[str, Any]:
    from models_ml.engine import (
        build_demo_dataset,
        load_backend,
        load_pil,
        read_real_csv,
    )

    # The same folder named twice is checked once.
    config.model_paths = tuple(dict.fromkeys(Path(p) for p in config.model_paths))
    if not config.model_paths:
        raise EngineError("modality_check: give at least one --model_path")
    if config.images_per_modality < 2:
        raise EngineError("modality_check: --images_per_modality must be at least 2")
    for path in config.model_paths:
        if not Path(path).is_dir():
            raise EngineError(f"{path}: no such model folder")
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    backends = [load_backend(path, device="cpu") for path in config.model_paths]
    resolutions = {b.resolution for b in backends}
    if len(resolutions) != 1:
        raise EngineError(
            "modality_check: the models have different resolutions "
            f"{sorted(resolutions)}"
        )
    resolution = resolutions.pop()
    summary = build_demo_dataset(
        out / "demo", per_modality=config.demo_per_modality, size=64, seed=config.seed
    )
    real = read_real_csv(summary.csv_path)
    modalities = list(config.modalities) or sorted({m for _, _, m in real})
    missing = sorted(set(modalities) - {m for _, _, m in real})
    if missing:
        raise EngineError(f"modality_check: no demo images of {missing}")
    real = [r for r in real if r[2] in modalities]
    rater = fit_simulated_rater(real, resolution=resolution, seed=config.seed)

    # The ceiling: the program's own held-out split of the real images.
    from sklearn.model_selection import train_test_split

    labels = [m for _, _, m in real]
    _, test_idx = train_test_split(
        np.arange(len(real)), test_size=0.3, random_state=config.seed, stratify=labels
    )
    held_images = [_at_resolution(load_pil(real[i][0]), resolution) for i in test_idx]
    ceiling = modality_table(rater, held_images, [labels[i] for i in test_idx])

    prompts = choose_prompts(real, modalities)
    per_prompt = {m: sum(1 for _, pm in prompts if pm == m) for m in modalities}
    requests = []
    for modality in modalities:
        mine = [p for p in prompts if p[1] == modality]
        base, extra = divmod(config.images_per_modality, per_prompt[modality])
        for k, prompt in enumerate(mine):
            requests += _requests([prompt], base + (k < extra), config.seed + 100 * k)
    models: dict[str, Any] = {}
    for path, backend in zip(config.model_paths, backends, strict=True):
        began = time.perf_counter()
        generated = backend.generate(
            requests,
            steps=config.sample_steps,
            guidance=config.guidance,
            scheduler=config.scheduler,
            batch_size=config.batch_size,
        )
        images = [g.image for g in generated]
        table = modality_table(rater, images, [r.modality for r in requests])
        name = str(path)
        grid = _grid(images, [r.modality for r in requests], modalities)
        grid_path = out / f"grid_{len(models)}.png"
        grid.save(grid_path)
        models[name] = {
            "per_modality": table,
            "recognised_modalities": sum(
                1 for m in modalities if table[m]["recognised"] >= 0.5
            ),
            "grid": str(grid_path),
            "seconds": round(time.perf_counter() - began, 1),
        }
    report = {
        "config": {
            "model_paths": [str(p) for p in config.model_paths],
            "images_per_modality": config.images_per_modality,
            "seed": config.seed,
            "sampler": {
                "scheduler": config.scheduler,
                "steps": config.sample_steps,
                "guidance": config.guidance,
            },
            "resolution": resolution,
        },
        "prompts": [list(p) for p in prompts],
        "rater": {
            "classes": rater.classes,
            "n_train": rater.n_train,
            "n_heldout": rater.n_heldout,
            "heldout_accuracy": rater.heldout_accuracy,
        },
        "ceiling": ceiling,
        "models": models,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown_report(report))
    return report


def _grid(
    images: Sequence[Image.Image], modalities: Sequence[str], order: Sequence[str]
) -> Image.Image:
    """One row per modality, its images left to right, shown at 64 px."""
    rows = [
        [im for im, m in zip(images, modalities, strict=True) if m == o] for o in order
    ]
    columns = max(len(r) for r in rows)
    cell = 64
    grid = Image.new("RGB", (columns * cell, len(rows) * cell), "white")
    for y, row in enumerate(rows):
        for x, image in enumerate(row):
            grid.paste(image.convert("RGB").resize((cell, cell)), (x * cell, y * cell))
    return grid


def markdown_report(report: dict[str, Any]) -> str:
    models = report["models"]
    names = list(models)
    lines = [
        "# Modality check: does the program recognise what each model draws?",
        "",
        f"{report['config']['images_per_modality']} images per modality and model "
        f"({report['config']['resolution']} px, {report['config']['sampler']}); "
        f"the program: logistic regression on {report['rater']['n_train']} real "
        f"images, held-out accuracy {report['rater']['heldout_accuracy']:.3f}. "
        "Cells: recognised / realistic share; in brackets what the others were "
        "taken for.",
        "",
        "| modality | held-out real | "
        + " | ".join(f"model {i}" for i in range(len(names)))
        + " |",
        "| --- | --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for modality, real in report["ceiling"].items():
        cells = [f"{real['recognised']:.2f} / {real['realistic']:.2f}"]
        for name in names:
            row = models[name]["per_modality"].get(modality)
            if row is None:
                cells.append("")
                continue
            seen = ", ".join(f"{k} {v}" for k, v in list(row["seen_as"].items())[:2])
            cell = f"{row['recognised']:.2f} / {row['realistic']:.2f}"
            cells.append(cell + (f" ({seen})" if seen else ""))
        lines.append(f"| {modality} | " + " | ".join(cells) + " |")
    lines += [""]
    for i, name in enumerate(names):
        lines.append(
            f"- model {i}: `{name}`: {models[name]['recognised_modalities']} of "
            f"{len(report['ceiling'])} modalities recognised in at least half of "
            f"their images; grid `{models[name]['grid']}`"
        )
    lines += ["", f"{report['seconds']} s in all.", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m research.modality_check",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--model_path",
        action="append",
        required=True,
        type=Path,
        help="model folder to check; repeat to compare several side by side",
    )
    parser.add_argument("--output_dir", required=True, type=Path, help="results folder")
    parser.add_argument(
        "--images_per_modality", type=int, default=16, help="images drawn per modality"
    )
    parser.add_argument("--seed", type=int, default=0, help="first sampling seed")
    parser.add_argument(
        "--modality",
        action="append",
        default=[],
        help="check only this demo modality (repeat); default: all of them",
    )
    args = parser.parse_args(argv)
    try:
        report = run_check(
            CheckConfig(
                model_paths=tuple(args.model_path),
                output_dir=args.output_dir,
                images_per_modality=args.images_per_modality,
                seed=args.seed,
                modalities=tuple(args.modality),
            )
        )
    except EngineError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(markdown_report(report))
    return report


if __name__ == "__main__":
    main()
