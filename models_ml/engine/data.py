"""Training data: the dataset CSV, image loading, and deterministic batching.

Images are decoded once, resized and kept in memory as uint8, so every bad row
is reported before training starts. Batches are a pure function of
(seed, micro-step), which makes resumed runs draw exactly the batches an
uninterrupted run would.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import DatasetError
from .images import load_frames
from .readers import (
    MODALITY_LABELS,
    ReaderError,
    normalize_modality,
    parse_manifest,
)


@dataclass(frozen=True)
class DatasetRow:
    line: int
    path: Path
    text: str
    modality: str | None
    weight: float = 1.0
    label: float = 0.0


@dataclass
class TrainingSet:
    """Decoded images (N, 3, R, R) uint8 with their prompts, modalities,
    weights and, for KTO, labels (+1 desirable, -1 undesirable, 0 neutral)."""

    source: Path
    pixels: torch.Tensor
    prompts: list[str]
    modalities: list[str | None]
    weights: torch.Tensor
    labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.prompts)

    def batch(self, indices: list[int]) -> TrainingBatch:
        return TrainingBatch(
            pixels=self.pixels[indices],
            prompts=[self.prompts[i] for i in indices],
            modalities=[self.modalities[i] for i in indices],
            weights=self.weights[indices],
            labels=None if self.labels is None else self.labels[indices],
        )


@dataclass
class TrainingBatch:
    pixels: torch.Tensor
    prompts: list[str]
    modalities: list[str | None]
    weights: torch.Tensor
    labels: torch.Tensor | None = None


def conditioning_modality(raw: str | None) -> str | None:
    """The modality name a model is conditioned on.

    Known modalities get their display name, so "CXR", "chest_xray" and
    "Chest X-ray" train alike (and match a "Chest X-ray: ..." prompt prefix);
    any other name is kept as written.
    """
    if raw is None or not raw.strip():
        return None
    return MODALITY_LABELS.get(normalize_modality(raw), raw.strip())


def _record_starts(text: str) -> dict[int, list[str]]:
    """CSV records by the line they start on, counted as ``parse_manifest`` does."""
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True)
    records: dict[int, list[str]] = {}
    line = 1
    for record in reader:
        start, line = line, reader.line_num + 1
        records[start] = record
    return records


def _parse_weight(cell: str) -> float:
    weight = float(cell)
    if not np.isfinite(weight) or weight < 0:
        raise ValueError("must be a number >= 0")
    return weight


LABELS = {"desirable": 1.0, "undesirable": -1.0, "neutral": 0.0}


def _parse_label(cell: str) -> float:
    text = cell.strip().lower()
    if text in LABELS:
        return LABELS[text]
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if number in (-1.0, 0.0, 1.0):
        return number
    raise ValueError("must be desirable, undesirable or neutral (or 1, -1, 0)")


def _read_column(
    csv_path: Path, lines: list[int], name: str, parse: Callable[[str], float]
) -> dict[int, float]:
    """The ``name`` cell of each given line, parsed; the manifest has checked
    the rest of each row."""
    text = csv_path.read_bytes().decode("utf-8-sig", errors="replace")
    records = _record_starts(text)
    first = min(n for n, cells in records.items() if any(c.strip() for c in cells))
    header = [h.strip().lower() for h in records[first]]
    if name not in header:
        raise DatasetError(f"{csv_path}: header lacks column {name!r}")
    column = header.index(name)
    values = {}
    for line in lines:
        cell = records[line][column].strip()
        try:
            values[line] = parse(cell)
        except ValueError as exc:
            message = str(exc) if "must" in str(exc) else "is not a number"
            raise DatasetError(
                f"{csv_path}, line {line}: field {name!r} {cell!r} {message}"
            ) from exc
    return values


def read_dataset_csv(
    csv_path: Path | str, *, need_weight: bool = False, need_label: bool = False
) -> list[DatasetRow]:
    """Rows of the seeds' ``path,Text[,modality][,weight]`` CSV or the platform's
    ratings export (``image_path,...,prompt,modality``).

    Paths are relative to the CSV's folder. Any bad row fails the whole file
    with a ``DatasetError`` that lists every bad line.
    """
    csv_path = Path(csv_path)
    try:
        # Engine CSVs are the user's own or the platform's exports, which name
        # stored files by absolute path; uploads never come through here.
        manifest = parse_manifest(csv_path, allow_absolute=True)
    except ReaderError as exc:
        raise DatasetError(f"{csv_path}: dataset CSV unusable: {exc.reason}") from exc
    if manifest.errors:
        listed = "; ".join(
            f"line {e.line}: {f'{e.field}: ' if e.field else ''}{e.message}"
            for e in manifest.errors[:20]
        )
        more = len(manifest.errors) - 20
        raise DatasetError(
            f"{csv_path}: {len(manifest.errors)} bad row(s): {listed}"
            + (f"; and {more} more" if more > 0 else "")
        )
    lines = [row.line for row in manifest.rows]
    weights = (
        _read_column(csv_path, lines, "weight", _parse_weight) if need_weight else {}
    )
    labels = _read_column(csv_path, lines, "label", _parse_label) if need_label else {}
    return [
        DatasetRow(
            line=row.line,
            path=row.path,
            text=row.text,
            modality=conditioning_modality(row.modality),
            weight=weights.get(row.line, 1.0),
            label=labels.get(row.line, 0.0),
        )
        for row in manifest.rows
    ]


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
    need_label: bool = False,
    equal_weights: bool = False,
) -> TrainingSet:
    """Read and decode every row; errors name the CSV line and the image file.

    A DICOM row yields all its frames and a NIfTI row all its non-constant
    slices, each paired with the row's text.

    ``min_weight`` keeps only rows whose weight reaches it (the filtered
    fine-tuning variant); the rows kept then count equally. ``need_label``
    reads the ``label`` column (KTO); ``equal_weights`` reads every row and
    counts each as 1, whatever its weight says (the no-feedback control).
    """
    csv_path = Path(csv_path)
    rows = read_dataset_csv(csv_path, need_weight=need_weight, need_label=need_label)
    if equal_weights:
        rows = [
            DatasetRow(line=r.line, path=r.path, text=r.text, modality=r.modality)
            for r in rows
        ]
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
    arrays, kept = [], []
    for row in rows:
        try:
            frames = load_frames(row.path)
        except DatasetError as exc:
            raise DatasetError(f"{csv_path}, line {row.line}: {exc}") from exc
        for frame in frames:
            arrays.append(prepare_image(frame, resolution))
            kept.append(row)
    return TrainingSet(
        source=csv_path,
        pixels=torch.from_numpy(np.stack(arrays)),
        prompts=[r.text for r in kept],
        modalities=[r.modality for r in kept],
        weights=torch.tensor([r.weight for r in kept], dtype=torch.float32),
        labels=torch.tensor([r.label for r in kept], dtype=torch.float32)
        if need_label
        else None,
    )


@functools.lru_cache(maxsize=8)
def _epoch_order(size: int, seed: int, epoch: int) -> tuple[int, ...]:
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return tuple(torch.randperm(size, generator=generator).tolist())


def weighted_batch_indices(
    weights: torch.Tensor,
    batch_size: int,
    micro_step: int,
    *,
    seed: int,
    num_processes: int = 1,
    process_index: int = 0,
) -> list[int]:
    """Indices of one micro-batch drawn with replacement, each row with
    probability proportional to its weight: a pure function of the seed and
    the step, so a resumed run draws the same batches."""
    weights = weights.double()
    if not bool(torch.isfinite(weights).all()) or float(weights.sum()) <= 0:
        raise DatasetError("every weight is 0: nothing to draw a batch from")
    draw = micro_step * num_processes + process_index
    generator = torch.Generator().manual_seed(
        (seed * 1_000_003 + draw * 7_919 + 17) % (2**63 - 1)
    )
    picks = torch.multinomial(
        weights, batch_size, replacement=True, generator=generator
    )
    return [int(i) for i in picks]


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
