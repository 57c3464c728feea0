"""Training data: the dataset CSV, image loading, and deterministic batching.

Images are decoded once, resized and kept in memory as uint8, so every bad row
is reported before training starts. Batches are a pure function of
(seed, micro-step), which makes resumed runs draw exactly the batches an
uninterrupted run would.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import DatasetError

PIL_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class DatasetRow:
    line: int
    path: Path
    text: str
    modality: str | None
    weight: float = 1.0


@dataclass
class TrainingSet:
    """Decoded images (N, 3, R, R) uint8 with their prompts, modalities, weights."""

    source: Path
    pixels: torch.Tensor
    prompts: list[str]
    modalities: list[str | None]
    weights: torch.Tensor

    def __len__(self) -> int:
        return len(self.prompts)

    def batch(self, indices: list[int]) -> TrainingBatch:
        return TrainingBatch(
            pixels=self.pixels[indices],
            prompts=[self.prompts[i] for i in indices],
            modalities=[self.modalities[i] for i in indices],
            weights=self.weights[indices],
        )


@dataclass
class TrainingBatch:
    pixels: torch.Tensor
    prompts: list[str]
    modalities: list[str | None]
    weights: torch.Tensor


def _read_dataset_csv(csv_path: Path, *, need_weight: bool = False) -> list[DatasetRow]:
    """Rows of ``path,Text[,modality][,weight]``; paths are relative to the CSV.

    Kept private and small so the shared readers can replace it.
    """
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path}: dataset CSV not found")
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, skipinitialspace=True)
        header = [h.strip() for h in next(reader, [])]
        names = {h.lower(): i for i, h in enumerate(header)}
        for field in ("path", "text") + (("weight",) if need_weight else ()):
            if field not in names:
                raise DatasetError(f"{csv_path}: header lacks column {field!r}")
        rows = []
        for line, record in enumerate(reader, start=2):
            if not any(cell.strip() for cell in record):
                continue
            cells = [c.strip() for c in record] + [""] * len(header)
            raw_path = cells[names["path"]]
            if not raw_path:
                raise DatasetError(f"{csv_path}, line {line}: field 'path' is empty")
            path = Path(raw_path)
            path = path if path.is_absolute() else csv_path.parent / path
            modality = cells[names["modality"]] if "modality" in names else ""
            weight = 1.0
            if "weight" in names:
                try:
                    weight = float(cells[names["weight"]])
                except ValueError as exc:
                    raise DatasetError(
                        f"{csv_path}, line {line}: field 'weight' is not a number"
                    ) from exc
                if not np.isfinite(weight) or weight < 0:
                    raise DatasetError(
                        f"{csv_path}, line {line}: field 'weight' must be >= 0"
                    )
            rows.append(
                DatasetRow(
                    line=line,
                    path=path,
                    text=cells[names["text"]],
                    modality=modality or None,
                    weight=weight,
                )
            )
    if not rows:
        raise DatasetError(f"{csv_path}: dataset is empty")
    return rows


def _load_training_image(path: Path) -> Image.Image:
    """Open one PNG/JPEG image. The shared readers will take over this job."""
    if path.suffix.lower() not in PIL_SUFFIXES:
        raise DatasetError(f"{path}: only PNG and JPEG are read here")
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: image file not found") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"{path}: not a readable image ({exc})") from exc


def prepare_image(image: Image.Image, resolution: int) -> np.ndarray:
    """Square centre crop, resize, RGB; returns (3, R, R) uint8."""
    if image.mode in ("I;16", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low) * 255 if high > low else array * 0
        image = Image.fromarray(scaled.astype(np.uint8), mode="L")
    image = image.convert("RGB")
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    image = image.resize((resolution, resolution), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy()


def load_training_set(
    csv_path: Path | str,
    resolution: int,
    *,
    need_weight: bool = False,
    min_weight: float | None = None,
) -> TrainingSet:
    """Read and decode every row; errors name the CSV line and the image file.

    ``min_weight`` keeps only rows whose weight reaches it (the filtered
    fine-tuning variant); the rows kept then count equally.
    """
    csv_path = Path(csv_path)
    rows = _read_dataset_csv(csv_path, need_weight=need_weight)
    if min_weight is not None:
        rows = [r for r in rows if r.weight >= min_weight]
        if not rows:
            raise DatasetError(
                f"{csv_path}: no row has weight >= {min_weight}; nothing to train on"
            )
        rows = [
            DatasetRow(line=r.line, path=r.path, text=r.text, modality=r.modality)
            for r in rows
        ]
    arrays = []
    for row in rows:
        try:
            image = _load_training_image(row.path)
        except DatasetError as exc:
            raise DatasetError(f"{csv_path}, line {row.line}: {exc}") from exc
        arrays.append(prepare_image(image, resolution))
    return TrainingSet(
        source=csv_path,
        pixels=torch.from_numpy(np.stack(arrays)),
        prompts=[r.text for r in rows],
        modalities=[r.modality for r in rows],
        weights=torch.tensor([r.weight for r in rows], dtype=torch.float32),
    )


@functools.lru_cache(maxsize=8)
def _epoch_order(size: int, seed: int, epoch: int) -> tuple[int, ...]:
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return tuple(torch.randperm(size, generator=generator).tolist())


def batch_indices(
    size: int,
    batch_size: int,
    micro_step: int,
    *,
    seed: int,
    num_processes: int = 1,
    process_index: int = 0,
) -> list[int]:
    """Indices of one micro-batch: a fresh shuffle per epoch, no state to save."""
    start = (micro_step * num_processes + process_index) * batch_size
    indices = []
    for position in range(start, start + batch_size):
        epoch, offset = divmod(position, size)
        indices.append(_epoch_order(size, seed, epoch)[offset])
    return indices
