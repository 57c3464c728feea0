"""``demo`` subcommand: build the demo dataset from package-shipped medical images."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Register the ``demo`` subcommand on the engine CLI."""
    parser = subparsers.add_parser(
        "demo",
        help="write a demo dataset made from real medical images in installed packages",
        description=(
            "Build metadata.csv (path,Text,modality) with PNG images augmented "
            "from the real fundus, CT, MRI, X-ray, ultrasound and histology "
            "samples that ship inside scikit-image, pydicom-data and nibabel, "
            "plus a few de-identified DICOM files and a NIfTI volume. Nothing "
            "is downloaded."
        ),
    )
    parser.add_argument(
        "--output_dir",
        type=Path,
        required=True,
        help="folder to write metadata.csv and the images into (created if absent)",
    )
    parser.add_argument(
        "--per_modality",
        type=int,
        default=60,
        help="number of PNG images to write for each modality (default: 60)",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=256,
        help="side in pixels of every square PNG image (default: 256)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed of the augmentation; the same seed gives "
        "byte-identical files (default: 0)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the dataset, print where it went and what it holds; return 0."""
    from models_ml.engine.demo import build_demo_dataset

    summary = build_demo_dataset(
        args.output_dir,
        per_modality=args.per_modality,
        size=args.size,
        seed=args.seed,
    )
    total = sum(summary.counts.values())
    print(f"wrote {total} rows to {summary.csv_path}")
    for modality, count in summary.counts.items():
        print(f"  {modality}: {count}")
    print(f"from {len(summary.sources)} package files")
    return 0
