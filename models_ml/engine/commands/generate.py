"""``generate``: sample images with provenance, optionally beside a baseline."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "generate images from a trained model into a folder with a manifest"


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    parser = subparsers.add_parser("generate", help=HELP, description=HELP)
    add = parser.add_argument
    add("--model_path", required=True, help="model folder (medrlhf or diffusers SD)")
    add("--checkpoint", help="a checkpoint-N folder of a training run to use instead")
    add(
        "--prompt",
        action="append",
        required=True,
        help="prompt text; repeat for several prompts",
    )
    add(
        "--modality",
        help="modality for every prompt (Fundus, CT, MRI, X-Ray ...); by default "
        "the text before ':' in each prompt, as in 'CT: axial slice'",
    )
    add("--output_dir", required=True, help="folder for PNGs and manifest files")
    add(
        "--num_images",
        "--img_num",
        dest="num_images",
        type=int,
        default=1,
        help="images per prompt",
    )
    add("--seed", type=int, default=0, help="first seed; image k uses seed+k")
    add("--num_inference_steps", type=int, help="sampling steps (default 50)")
    add(
        "--guidance_scale",
        type=float,
        help="classifier-free guidance (default: tiny 1, i.e. none; sd 7.5)",
    )
    add(
        "--scheduler",
        choices=("ddim", "dpm", "euler", "ddpm"),
        default=None,
        help="sampler (default ddpm, ancestral: docs/benchmarks.md, 'Which sampler')",
    )
    add("--batch_size", type=int, default=8, help="images sampled together")
    add(
        "--baseline_model_path",
        help="also generate with this model and write a side-by-side grid",
    )
    add("--device", default="cpu", help="cpu, cuda, cuda:1 ...")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..backends.base import GenerationRequest
    from ..errors import EngineError
    from ..generate import generate_images

    if args.num_images < 1:
        raise EngineError("--num_images must be at least 1")
    model = (
        Path(args.checkpoint) / "model" if args.checkpoint else Path(args.model_path)
    )
    requests = [
        GenerationRequest(
            prompt=p, modality=args.modality or _prefix(p), seed=args.seed + k
        )
        for p in args.prompt
        for k in range(args.num_images)
    ]
    bar = tqdm(total=1, unit="step", dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        result = generate_images(
            model,
            requests,
            output_dir=args.output_dir,
            steps=args.num_inference_steps,
            guidance=args.guidance_scale,
            scheduler=args.scheduler,
            batch_size=args.batch_size,
            device=args.device,
            baseline_model_dir=args.baseline_model_path,
            progress=progress,
        )
    finally:
        bar.close()
    print(f"{len(result.files)} images, manifest: {result.manifest_csv}")
    if result.side_by_side:
        print(f"side by side: {result.side_by_side}")
    return 0


def _prefix(prompt: str) -> str | None:
    """'CT: axial slice' names modality CT, the seeds' prompt convention."""
    head, sep, _ = prompt.partition(":")
    return head.strip() or None if sep else None
