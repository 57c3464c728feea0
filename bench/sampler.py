"""Which sampler should every part of medrlhf use by default?

Quality per second of each sampler (scheduler, steps, guidance) on the
shipped demo model (tiny backend, 32 px, all demo modalities), side by side
in one process on the same prompts and seeds:

- UNet passes per image (steps, twice with classifier-free guidance): the
  cost, whatever else the machine is doing; and the seconds per image
  measured (batch 16, the threads this process has), which a busy machine
  skews;
- **realistic**: the share of images that the simulated physician (the
  logistic regression of ``simulated_raters``, fitted on the real demo
  images) would rate 3: recognised as the prompted modality and as close to
  the real images as held-out real images are;
- **local FD** between the images and the held-out real images (lower is
  closer).

The default is the cheapest configuration (fewest UNet passes) whose
realistic share is within ``--tolerance`` (0.03) of the best one's and whose
local FD is within 10 % of the best one's. Figures go to stdout and
``bench/out/sampler.json``.

    OMP_NUM_THREADS=2 python bench/sampler.py [--images_per_modality 16] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

OUT = ROOT / "bench" / "out"
# (scheduler, steps, guidance): the engine's tiny default (ddpm 100, g 3), the
# platform's round default (ddim 100), the demo's (dpm 25), and faster ones.
CONFIGS = (
    ("ddpm", 100, 3.0),
    ("ddpm", 50, 3.0),
    ("ddpm", 25, 3.0),
    ("ddpm", 50, 1.0),
    ("ddim", 100, 3.0),
    ("ddim", 50, 3.0),
    ("euler", 25, 3.0),
    ("dpm", 25, 3.0),
    ("dpm", 15, 3.0),
    ("dpm", 10, 3.0),
    ("dpm", 25, 1.0),
    ("dpm", 15, 1.0),
)
QUICK = (("ddpm", 10, 3.0), ("dpm", 5, 3.0), ("dpm", 5, 1.0))


def choose(rows: list[dict[str, Any]], tolerance: float) -> dict[str, Any]:
    """The cheapest row within ``tolerance`` of the best realistic share and
    within 10 % of the best local FD."""
    best_real = max(r["realistic"] for r in rows)
    best_fd = min(r["local_fd"] for r in rows)
    good = [
        r
        for r in rows
        if r["realistic"] >= best_real - tolerance and r["local_fd"] <= 1.1 * best_fd
    ]
    return min(good, key=lambda r: (r["unet_passes"], r["seconds_per_image"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_path", default=str(ROOT / "models_ml/demo_model"))
    parser.add_argument("--images_per_modality", type=int, default=16)
    parser.add_argument("--tolerance", type=float, default=0.03)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument(
        "--configs",
        nargs="+",
        metavar="SCHEDULER:STEPS:GUIDANCE",
        help="only these configurations (default: the built-in list)",
    )
    args = parser.parse_args()

    import numpy as np

    from models_ml.engine.backends import load_backend
    from models_ml.engine.demo import build_demo_dataset
    from models_ml.engine.features import HandcraftedFeatures
    from models_ml.engine.images import load_pil
    from models_ml.engine.metrics import local_fd_kid
    from models_ml.engine.reward_data import read_real_csv
    from research.modality_check import modality_table
    from research.simulated_raters import (
        _at_resolution,
        _requests,
        choose_prompts,
        fit_simulated_rater,
    )

    OUT.mkdir(parents=True, exist_ok=True)
    backend = load_backend(args.model_path, device="cpu")
    resolution = backend.resolution
    work = OUT / "sampler_demo"
    demo = build_demo_dataset(work, per_modality=60, size=64, seed=args.seed)
    real = read_real_csv(demo.csv_path)
    modalities = sorted({m for _, _, m in real})
    rater = fit_simulated_rater(real, resolution=resolution, seed=args.seed)
    real_images = [_at_resolution(load_pil(p), resolution) for p, _, _ in real]
    prompts = choose_prompts(real, modalities)
    per_prompt = max(1, args.images_per_modality // 2)
    if args.quick:
        per_prompt = 2
    requests = []
    for k, prompt in enumerate(prompts):
        requests += _requests([prompt], per_prompt, args.seed + 100 * k)
    extractor = HandcraftedFeatures()
    rows = []
    configs = QUICK if args.quick else CONFIGS
    if args.configs:
        configs = tuple(
            (c.split(":")[0], int(c.split(":")[1]), float(c.split(":")[2]))
            for c in args.configs
        )
    for scheduler, steps, guidance in configs:
        began = time.perf_counter()
        generated = backend.generate(
            requests, steps=steps, guidance=guidance, scheduler=scheduler, batch_size=16
        )
        seconds = time.perf_counter() - began
        images = [g.image for g in generated]
        table = modality_table(rater, images, [r.modality for r in requests])
        fd = local_fd_kid(images, real_images, extractor, kid_subset_size=50)
        row = {
            "scheduler": scheduler,
            "steps": steps,
            "guidance": guidance,
            "images": len(images),
            "unet_passes": steps * (2 if guidance > 1 else 1),
            "seconds_per_image": seconds / len(images),
            "realistic": float(np.mean([t["realistic"] for t in table.values()])),
            "recognised": float(np.mean([t["recognised"] for t in table.values()])),
            "local_fd": fd["local_fd"],
        }
        rows.append(row)
        print(
            f"{scheduler:>5} {steps:>3} steps, guidance {guidance:g}: "
            f"{row['unet_passes']:>3} passes, "
            f"{row['seconds_per_image']:.3f} s/image, realistic "
            f"{row['realistic']:.3f}, recognised {row['recognised']:.3f}, local FD "
            f"{row['local_fd']:.2f}",
            flush=True,
        )
    chosen = choose(rows, args.tolerance)
    result = {
        "model_path": args.model_path,
        "resolution": resolution,
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average": os.getloadavg(),
        "rows": rows,
        "chosen": chosen,
        "rule": f"fewest UNet passes within {args.tolerance} of the best realistic "
        "share and within 10 % of the best local FD",
    }
    (OUT / "sampler.json").write_text(json.dumps(result, indent=2))
    print(
        f"chosen: {chosen['scheduler']} {chosen['steps']} steps, guidance "
        f"{chosen['guidance']:g} ({result['rule']})"
    )


if __name__ == "__main__":
    main()
