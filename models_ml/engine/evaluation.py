"""Evaluating a generated set against real images: local FD/KID overall and
per modality, MS-SSIM diversity per prompt and, given a reward model, reward
statistics.

Importing this module does not import torch.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
from PIL import Image

from .errors import DatasetError
from .images import load_pil
from .metrics import local_fd_kid, ms_ssim_diversity, reward_statistics
from .readers import normalize_modality

if TYPE_CHECKING:
    from .features import FeatureExtractor

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
LOCAL_NOTE = (
    "local FD/KID use a local feature extractor, not Inception-v3: "
    "not comparable with published FID/KID"
)


class GeneratedRow(TypedDict):
    """A generated image to evaluate: its file, and its prompt and modality
    when the manifest gives them."""

    path: str
    prompt: str | None
    modality: str | None


def read_generated(source: str | Path) -> list[GeneratedRow]:
    """Generated images from a folder or a manifest CSV.

    A manifest has ``path`` (or ``image_path``), ``prompt`` (or ``Text``) and
    optionally ``modality`` and ``seed``; relative paths resolve against its
    folder. A folder is scanned for images, and its ``manifest.csv`` is used
    when present.
    """
    source = Path(source)
    if source.is_dir() and (source / "manifest.csv").is_file():
        source = source / "manifest.csv"
    if source.is_dir():
        files = sorted(
            p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
        )
        return [GeneratedRow(path=str(p), prompt=None, modality=None) for p in files]
    if not source.is_file():
        raise DatasetError(f"generated images not found: {source}")
    rows: list[GeneratedRow] = []
    with source.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, skipinitialspace=True)
        header = {name.strip().lower(): name for name in reader.fieldnames or []}
        path_col = header.get("path") or header.get("image_path")
        prompt_col = header.get("prompt") or header.get("text")
        if not path_col:
            raise DatasetError(f"{source}: manifest needs a path or image_path column")
        for row in reader:
            raw = (row.get(path_col) or "").strip()
            if not raw:
                raise DatasetError(f"{source} line {reader.line_num}: empty path")
            path = Path(raw) if Path(raw).is_absolute() else source.parent / raw
            if not path.is_file():
                raise DatasetError(
                    f"{source} line {reader.line_num}: image not found: {path}"
                )
            modality = (row.get(header.get("modality", ""), "") or "").strip()
            prompt = (row.get(prompt_col) or "").strip() if prompt_col else ""
            rows.append(
                GeneratedRow(
                    path=str(path), prompt=prompt or None, modality=modality or None
                )
            )
    return rows


def evaluate_sets(
    generated_dir_or_manifest: str | Path,
    real_csv: str | Path,
    *,
    reward_model: Any = None,
    feature_extractor: FeatureExtractor | None = None,
    threshold: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare a generated set with real images: local FD/KID (overall and per
    modality), MS-SSIM diversity per prompt and, given a reward model (object
    or folder), reward statistics for images whose prompt is known.
    """
    from .features import HandcraftedFeatures
    from .reward import RewardModel
    from .reward_data import read_real_csv

    generated = read_generated(generated_dir_or_manifest)
    real = read_real_csv(real_csv)
    if len(generated) < 2:
        raise DatasetError(
            f"{generated_dir_or_manifest}: need at least 2 generated images"
        )
    if isinstance(reward_model, (str, Path)):
        reward_model = RewardModel.load(reward_model)
    extractor = feature_extractor or (
        reward_model.feature_extractor if reward_model else HandcraftedFeatures()
    )
    gen_images = [load_pil(g["path"]) for g in generated]
    real_images = [load_pil(p) for p, _, _ in real]
    out: dict[str, Any] = {
        "n_generated": len(generated),
        "n_real": len(real),
        "note": LOCAL_NOTE,
    }
    out.update(local_fd_kid(gen_images, real_images, extractor, seed=seed))
    del out["n_a"], out["n_b"]

    out["per_modality"] = _per_modality_fd(
        generated, gen_images, real, real_images, extractor, seed=seed
    )
    out["ms_ssim_diversity"] = _diversity_by_prompt(generated, gen_images, seed=seed)
    if reward_model is not None:
        out["reward"] = _reward_summary(
            generated, gen_images, reward_model, threshold=threshold
        )
    return out


def _per_modality_fd(
    generated: Sequence[GeneratedRow],
    gen_images: Sequence[Image.Image],
    real: Sequence[tuple[str, str, str]],
    real_images: Sequence[Image.Image],
    extractor: FeatureExtractor,
    *,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """Local FD/KID per modality with at least 2 images on each side."""
    gen_by_mod: dict[str, list[Image.Image]] = defaultdict(list)
    real_by_mod: dict[str, list[Image.Image]] = defaultdict(list)
    # Grouped by canonical slug: the real CSV and a generated manifest may spell
    # a modality differently ("Chest X-ray", "CXR").
    for g, image in zip(generated, gen_images, strict=True):
        if g["modality"]:
            gen_by_mod[normalize_modality(g["modality"])].append(image)
    for (_, _, modality), image in zip(real, real_images, strict=True):
        real_by_mod[normalize_modality(modality)].append(image)
    per_modality = {}
    for modality in sorted(gen_by_mod):
        if len(gen_by_mod[modality]) >= 2 and len(real_by_mod.get(modality, [])) >= 2:
            result = local_fd_kid(
                gen_by_mod[modality], real_by_mod[modality], extractor, seed=seed
            )
            per_modality[modality] = {
                "local_fd": result["local_fd"],
                "local_kid_mean": result["local_kid_mean"],
                "n_generated": result["n_a"],
                "n_real": result["n_b"],
            }
    return per_modality


def _diversity_by_prompt(
    generated: Sequence[GeneratedRow],
    gen_images: Sequence[Image.Image],
    *,
    seed: int,
) -> dict[str, Any]:
    """MS-SSIM diversity per prompt and its mean over prompts that have one."""
    by_prompt: dict[str, list[Image.Image]] = defaultdict(list)
    for g, image in zip(generated, gen_images, strict=True):
        by_prompt[g["prompt"] or "(no prompt)"].append(image)
    diversity = {p: ms_ssim_diversity(ims, seed=seed) for p, ims in by_prompt.items()}
    known = [v for v in diversity.values() if v is not None]
    return {
        "mean": float(np.mean(known)) if known else None,
        "per_prompt": diversity,
    }


def _reward_summary(
    generated: Sequence[GeneratedRow],
    gen_images: Sequence[Image.Image],
    reward_model: Any,
    *,
    threshold: float | None,
) -> dict[str, Any]:
    """Reward statistics over the generated images whose prompt is known."""
    scored = [
        (g, im) for g, im in zip(generated, gen_images, strict=True) if g["prompt"]
    ]
    if not scored:
        return {"n": 0, "note": "no prompts known: use a manifest to score"}
    prediction = reward_model.predict(
        [im for _, im in scored],
        [g["prompt"] for g, _ in scored],
        [g["modality"] or "unspecified" for g, _ in scored],
    )
    summary = reward_statistics(prediction.reward, threshold=threshold)
    summary["mean_uncertainty"] = float(prediction.uncertainty.mean())
    return summary
