"""The reward model's data: ratings read from the export's CSV (or handed
over as records), the real images beside them, the prompt and modality
encodings, the free negatives (real images with a mismatched prompt) and the
folds grouped by prompt."""

from __future__ import annotations

import csv
import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .data import read_dataset_csv
from .errors import DatasetError, EngineError

RATINGS = (1, 2, 3)
REQUIRED_RATING_COLUMNS = ("image_path", "rating", "modality", "prompt")


class RatingsCSVError(DatasetError):
    """A ratings CSV is malformed; the message names the file and line."""


@dataclass(frozen=True)
class RatingRecord:
    image_path: str
    prompt: str
    modality: str
    rating: int
    weight: float = 1.0


# --- reading ratings -------------------------------------------------------


def read_ratings_csv(
    path: str | Path, *, check_images: bool = True
) -> list[RatingRecord]:
    """Read ``image_path,rating,modality,expert_level,prompt`` rows (extra columns ok).

    Relative image paths resolve against the CSV's folder. An optional
    ``weight`` (or ``sample_weight``) column gives per-rating weights.
    """
    path = Path(path)
    if not path.is_file():
        raise RatingsCSVError(f"ratings CSV not found: {path}")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, skipinitialspace=True)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [col for col in REQUIRED_RATING_COLUMNS if col not in header]
        if missing:
            raise RatingsCSVError(
                f"{path}: header lacks column(s) {', '.join(missing)}; "
                f"need {', '.join(REQUIRED_RATING_COLUMNS)}"
            )
        reader.fieldnames = header
        weight_col = next((c for c in ("weight", "sample_weight") if c in header), None)
        records = []
        for row in reader:
            where = f"{path} line {reader.line_num}"
            records.append(
                _rating_row(row, where, path.parent, weight_col, check_images)
            )
    if not records:
        raise RatingsCSVError(f"{path}: no ratings")
    return records


def _rating_row(
    row: dict[str, str | None],
    where: str,
    root: Path,
    weight_col: str | None,
    check_images: bool,
) -> RatingRecord:
    values = {k: (v or "").strip() for k, v in row.items() if k is not None}
    for col in REQUIRED_RATING_COLUMNS:
        if not values.get(col):
            raise RatingsCSVError(f"{where}: empty {col}")
    try:
        rating = int(values["rating"])
    except ValueError:
        rating = 0
    if rating not in RATINGS:
        raise RatingsCSVError(f"{where}: rating {values['rating']!r} is not 1, 2 or 3")
    weight = 1.0
    if weight_col and values.get(weight_col):
        try:
            weight = float(values[weight_col])
        except ValueError:
            weight = -1.0
        if not (math.isfinite(weight) and weight >= 0):
            raise RatingsCSVError(
                f"{where}: {weight_col} {values[weight_col]!r} is not a number >= 0"
            )
    image_path = Path(values["image_path"])
    if not image_path.is_absolute():
        image_path = root / image_path
    if check_images and not image_path.is_file():
        raise RatingsCSVError(f"{where}: image not found: {image_path}")
    return RatingRecord(
        image_path=str(image_path),
        prompt=values["prompt"],
        modality=values["modality"],
        rating=rating,
        weight=weight,
    )


def read_real_csv(path: str | Path) -> list[tuple[str, str, str]]:
    """Read an import CSV ``path,Text[,modality]`` into (path, prompt, modality).

    Same rules as training data (``data.read_dataset_csv``); a row without a
    modality gets ``"unspecified"``.
    """
    return [
        (str(row.path), row.text, row.modality or "unspecified")
        for row in read_dataset_csv(path)
    ]


# --- prompt and modality encodings -----------------------------------------


class PromptEmbedder(Protocol):
    def embed(self, prompts: list[str]) -> np.ndarray:
        """Return ``[N, D]`` float32 embeddings."""
        ...

    def config(self) -> dict[str, Any]: ...


class MiniLMPromptEmbedder:
    """Pooled MiniLM embedding (``TextEncoder.pooled``), cached per prompt."""

    def __init__(self, path: str | Path | None = None) -> None:
        from .text import TextEncoder

        self.path = str(path) if path else None
        self.encoder = TextEncoder(path)
        self._cache: dict[str, np.ndarray] = {}

    def config(self) -> dict[str, Any]:
        return {"kind": "minilm", "path": self.path}

    def embed(self, prompts: list[str]) -> np.ndarray:
        todo = sorted({p for p in prompts if p not in self._cache})
        for start in range(0, len(todo), 64):
            chunk = todo[start : start + 64]
            pooled = self.encoder.encode(chunk, pad_to_max=False).pooled.cpu().numpy()
            self._cache.update(zip(chunk, pooled, strict=True))
        return np.stack([self._cache[p] for p in prompts]).astype(np.float32)


@lru_cache(maxsize=4)
def _minilm(path: str | None) -> MiniLMPromptEmbedder:
    return MiniLMPromptEmbedder(path)


def prompt_embedder_from_config(config: dict[str, Any] | None) -> PromptEmbedder:
    """The default MiniLM embedder (shared per process) or one from a config."""
    config = config or {"kind": "minilm", "path": None}
    if config.get("kind") != "minilm":
        raise EngineError(f"unknown prompt embedder {config.get('kind')!r}")
    return _minilm(config.get("path"))


def modality_vectors(modalities: Sequence[str], buckets: int) -> np.ndarray:
    """Hashed one-hot of the lower-cased modality (stable across processes)."""
    out = np.zeros((len(modalities), buckets), dtype=np.float32)
    for i, modality in enumerate(modalities):
        out[i, zlib.crc32(modality.strip().lower().encode()) % buckets] = 1.0
    return out


# --- free negatives and folds -----------------------------------------------


def make_free_negatives(
    real_images: Sequence[tuple[str, str, str]],
    *,
    per_image: int,
    weight: float,
    seed: int = 0,
    exclude_prompts: Iterable[str] = (),
) -> list[RatingRecord]:
    """Pair real images with another image's prompt and modality as rating 1.

    Prompts from another modality are preferred; prompts in
    ``exclude_prompts`` (a fold's held-out prompts) are never used.
    """
    excluded = set(exclude_prompts)
    pool = sorted({(p, m) for _, p, m in real_images if p not in excluded})
    rng = np.random.default_rng(seed)
    negatives = []
    for image_path, prompt, modality in real_images:
        other_modality = [pm for pm in pool if pm[1] != modality and pm[0] != prompt]
        candidates = other_modality or [pm for pm in pool if pm[0] != prompt]
        if not candidates:
            continue
        picks = rng.choice(
            len(candidates), size=min(per_image, len(candidates)), replace=False
        )
        for pick in picks:
            neg_prompt, neg_modality = candidates[int(pick)]
            negatives.append(
                RatingRecord(
                    image_path, neg_prompt, neg_modality, rating=1, weight=weight
                )
            )
    return negatives


def prompt_folds(
    prompts: Sequence[str], n_folds: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, held-out) index pairs with every prompt on one side only."""
    from sklearn.model_selection import GroupKFold

    n_groups = len(set(prompts))
    n_splits = min(n_folds, n_groups)
    if n_splits < 2:
        return []
    index = np.arange(len(prompts))
    return list(GroupKFold(n_splits=n_splits).split(index, groups=list(prompts)))
