"""Preference pairs for Diffusion-DPO: a CSV of (preferred, other) images.

One row is one physician's judgement that, for the same prompt, the first
image is better than the second. The columns are those of the platform's
pairs export (``chosen_image_path``, ``rejected_image_path``, ``prompt``,
``modality``) or the short spellings ``chosen_path``, ``rejected_path``,
``Text``; ``weight`` is optional (1 by default). Paths are relative to the
CSV's folder, or absolute. Every bad row is reported, by line, before
anything is decoded. The same pair on several rows is several judgements
(two physicians who agree): each row counts.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data import TrainingBatch, TrainingSet, conditioning_modality, prepare_image
from .errors import DatasetError
from .images import load_pil
from .readers import InvalidModalityError, normalize_modality
from .readers.limits import DEFAULT_LIMITS
from .readers.manifest import check_absolute_path, check_relative_path

_COLUMNS = {
    "chosen": ("chosen_path", "chosen_image_path"),
    "rejected": ("rejected_path", "rejected_image_path"),
    "text": ("text", "prompt"),
}


@dataclass(frozen=True)
class PairRow:
    line: int
    chosen: Path
    rejected: Path
    text: str
    modality: str | None
    weight: float = 1.0


@dataclass
class PairSet:
    """Decoded pairs: ``chosen[i]`` was preferred to ``rejected[i]``."""

    source: Path
    chosen: TrainingSet
    rejected: TrainingSet

    def __len__(self) -> int:
        return len(self.chosen)

    @property
    def weights(self) -> torch.Tensor:
        return self.chosen.weights

    def batch(self, indices: list[int]) -> tuple[TrainingBatch, TrainingBatch]:
        return self.chosen.batch(indices), self.rejected.batch(indices)


def _header_columns(csv_path: Path, header: list[str]) -> dict[str, int | None]:
    names = [h.strip().lower() for h in header]
    found: dict[str, int | None] = {}
    for key, options in _COLUMNS.items():
        found[key] = next((names.index(o) for o in options if o in names), None)
        if found[key] is None:
            raise DatasetError(
                f"{csv_path}: header must name {' or '.join(options)}; found "
                f"{', '.join(header) or 'nothing'}"
            )
    for optional in ("modality", "weight"):
        found[optional] = names.index(optional) if optional in names else None
    return found


def _unguarded(text: str) -> str:
    """Undo the export's spreadsheet guard (a ``'`` before ``= + - @``)."""
    if len(text) > 1 and text[0] == "'" and text[1] in "=+-@\t\r":
        return text[1:]
    return text


def _resolve(root: Path, raw: str) -> tuple[Path | None, str | None]:
    if raw.startswith("/") and "\x00" not in raw:
        return check_absolute_path(raw)
    return check_relative_path(root, raw)


def _parse_pair(
    record: list[str], columns: dict[str, int | None], root: Path, line: int
) -> PairRow:
    cells = [_unguarded(c.strip()) for c in record]

    def cell(key: str) -> str:
        index = columns[key]
        return "" if index is None else cells[index]

    text = cell("text")
    if not text:
        raise ValueError("prompt is empty")
    if len(text) > DEFAULT_LIMITS.max_text_chars:
        raise ValueError(f"prompt is longer than {DEFAULT_LIMITS.max_text_chars}")
    modality = None
    if cell("modality"):
        try:
            modality = conditioning_modality(normalize_modality(cell("modality")))
        except InvalidModalityError as exc:
            raise ValueError(f"modality: {exc}") from exc
    paths = []
    for key in ("chosen", "rejected"):
        resolved, problem = _resolve(root, cell(key))
        if problem is not None or resolved is None:
            raise ValueError(f"{key}: {problem or 'invalid path'}")
        paths.append(resolved)
    if paths[0] == paths[1]:
        raise ValueError("chosen and rejected are the same image")
    weight = 1.0
    if cell("weight"):
        try:
            weight = float(cell("weight"))
        except ValueError:
            raise ValueError(f"weight {cell('weight')!r} is not a number") from None
        if not np.isfinite(weight) or weight <= 0:
            raise ValueError("weight must be a number above 0")
    return PairRow(line, paths[0], paths[1], text, modality, weight)


def read_pairs_csv(csv_path: Path | str) -> list[PairRow]:
    """Every pair of the CSV; any bad row fails the file with a ``DatasetError``
    that names each bad line."""
    csv_path = Path(csv_path)
    try:
        size = csv_path.stat().st_size
        if size > DEFAULT_LIMITS.max_csv_bytes:
            raise DatasetError(
                f"{csv_path}: CSV is {size} bytes, more than "
                f"{DEFAULT_LIMITS.max_csv_bytes}"
            )
        text = csv_path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise DatasetError(f"{csv_path}: cannot read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{csv_path}: not valid UTF-8 ({exc.reason})") from exc
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True)
    rows: list[PairRow] = []
    errors: list[str] = []
    header: list[str] | None = None
    columns: dict[str, int | None] = {}
    line = 1
    try:
        for record in reader:
            start, line = line, reader.line_num + 1
            if not any(c.strip() for c in record):
                continue
            if header is None:
                header, columns = record, _header_columns(csv_path, record)
                continue
            if len(rows) + len(errors) >= DEFAULT_LIMITS.max_csv_rows:
                raise DatasetError(
                    f"{csv_path}: more than {DEFAULT_LIMITS.max_csv_rows} pairs"
                )
            if len(record) != len(header):
                errors.append(
                    f"line {start}: expected {len(header)} columns, found {len(record)}"
                )
                continue
            try:
                rows.append(_parse_pair(record, columns, csv_path.parent, start))
            except ValueError as exc:
                errors.append(f"line {start}: {exc}")
    except csv.Error as exc:
        raise DatasetError(f"{csv_path}: CSV syntax error near line {line}") from exc
    if errors:
        listed = "; ".join(errors[:20])
        more = f"; and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise DatasetError(f"{csv_path}: {len(errors)} bad pair(s): {listed}{more}")
    if not rows:
        raise DatasetError(f"{csv_path}: no pairs under the header")
    return rows


def load_pair_set(csv_path: Path | str, resolution: int) -> PairSet:
    """Read and decode every pair at ``resolution`` (one picture per image)."""
    csv_path = Path(csv_path)
    rows = read_pairs_csv(csv_path)
    decoded: dict[Path, np.ndarray] = {}
    for row in rows:
        for path in (row.chosen, row.rejected):
            if path in decoded:
                continue
            try:
                decoded[path] = prepare_image(load_pil(path), resolution)
            except DatasetError as exc:
                raise DatasetError(f"{csv_path}, line {row.line}: {exc}") from exc

    def side(key: str) -> TrainingSet:
        return TrainingSet(
            source=csv_path,
            pixels=torch.from_numpy(np.stack([decoded[getattr(r, key)] for r in rows])),
            prompts=[r.text for r in rows],
            modalities=[r.modality for r in rows],
            weights=torch.tensor([r.weight for r in rows], dtype=torch.float32),
        )

    return PairSet(source=csv_path, chosen=side("chosen"), rejected=side("rejected"))
