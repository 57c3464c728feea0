"""Reward model: (image, prompt, modality) -> distribution over ratings 1-3.

Image features and the prompt embedding are frozen; only a small ordinal head
is trained (a shared score and two ordered thresholds, CORAL style), so a few
hundred ratings suffice and training takes seconds on a CPU. An ensemble of
heads trained on bootstrap resamples gives the uncertainty (the spread of
their rewards). Real images paired with a mismatched prompt are free rating-1
examples with a lower weight, the weak feedback of the pathologist-in-the-loop
work. Held-out metrics come from cross-validation grouped by prompt, so a
prompt is never both trained on and scored.

Weights are saved as safetensors plus a JSON file; nothing is pickled.
"""

from __future__ import annotations

import csv
import json
import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from .data import read_dataset_csv
from .errors import DatasetError, EngineError, WeightsFormatError
from .features import (
    FeatureExtractor,
    as_numpy_features,
    feature_extractor_from_config,
    feature_extractor_from_spec,
)
from .images import load_pil
from .metrics import ordinal_metrics

FORMAT = "medrlhf-reward-v1"
WEIGHTS_FILE = "reward_model.safetensors"
CONFIG_FILE = "reward_model.json"
RATINGS = (1, 2, 3)
REQUIRED_RATING_COLUMNS = ("image_path", "rating", "modality", "prompt")

Progress = Callable[[str, int, int], None]


class RatingsCSVError(DatasetError):
    """A ratings CSV is malformed; the message names the file and line."""


@dataclass(frozen=True)
class RatingRecord:
    image_path: str
    prompt: str
    modality: str
    rating: int
    weight: float = 1.0


@dataclass
class RewardConfig:
    features: str = "handcrafted"
    ensemble_size: int = 5
    epochs: int = 200
    lr: float = 1e-2
    weight_decay: float = 1e-2
    hidden: int = 32
    rank: int = 8
    negatives_per_image: int = 1
    negative_weight: float = 0.3
    n_folds: int = 5
    seed: int = 0
    modality_buckets: int = 16
    image_dims: int = 48
    prompt_dims: int = 24


@dataclass(frozen=True)
class RewardPrediction:
    probs: np.ndarray  # (N, 3): P(rating = 1, 2, 3)
    reward: np.ndarray  # (N,): (E[rating] - 1) / 2, in [0, 1]
    uncertainty: np.ndarray  # (N,): std of the ensemble members' rewards


@dataclass(frozen=True)
class HeldoutPredictions:
    ratings: np.ndarray
    probs: np.ndarray
    reward: np.ndarray
    uncertainty: np.ndarray
    prompts: list[str]


@dataclass
class RewardTrainResult:
    model: RewardModel
    metrics: dict[str, Any]
    fold_metrics: list[dict[str, Any]]
    heldout: HeldoutPredictions | None = None
    negatives: list[RatingRecord] = field(default_factory=list)


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


# --- the ordinal ensemble head ----------------------------------------------


class _EnsembleHead(torch.nn.Module):
    """``members`` independent ordinal heads evaluated in one batched pass.

    Score = MLP([image, prompt, modality]) + low-rank bilinear(image, prompt):
    the bilinear term lets "does this image fit this prompt" be learned from few
    examples. Thresholds b1 < b2 split the score into ratings 1, 2, 3.
    """

    def __init__(self, members: int, n_image: int, n_cond: int, hidden: int, rank: int):
        super().__init__()
        n_in = n_image + n_cond

        def init(*shape: int, fan_in: int) -> torch.nn.Parameter:
            return torch.nn.Parameter(torch.randn(*shape) / math.sqrt(fan_in))

        self.w1 = init(members, n_in, hidden, fan_in=n_in)
        self.b1 = torch.nn.Parameter(torch.zeros(members, hidden))
        self.w2 = init(members, hidden, fan_in=hidden)
        self.bias = torch.nn.Parameter(torch.zeros(members))
        self.p_image = init(members, n_image, rank, fan_in=n_image)
        self.p_cond = init(members, n_cond, rank, fan_in=n_cond)
        self.cut = torch.nn.Parameter(torch.full((members,), -1.0))
        # softplus(1.8546) = 2: thresholds start at -1 and +1
        self.gap = torch.nn.Parameter(torch.full((members,), 1.8546))

    def forward(self, image: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Scores ``[members, N]``."""
        x = torch.cat([image, cond], dim=1)
        h = torch.nn.functional.gelu(torch.matmul(x, self.w1) + self.b1[:, None])
        mlp = (h * self.w2[:, None]).sum(-1) + self.bias[:, None]
        a = torch.matmul(image, self.p_image)
        b = torch.matmul(cond, self.p_cond)
        return mlp + (a * b).sum(-1)

    def thresholds(self) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.cut
        high = low + torch.nn.functional.softplus(self.gap) + 1e-3
        return low[:, None], high[:, None]

    def probs(self, image: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``[members, N, 3]`` rating probabilities."""
        score = self(image, cond)
        low, high = self.thresholds()
        above_1 = torch.sigmoid(score - low)
        above_2 = torch.sigmoid(score - high)
        return torch.stack([1 - above_1, above_1 - above_2, above_2], dim=-1)


_NORM_ARRAYS = (
    "image_mean",
    "image_std",
    "image_basis",
    "image_scale",
    "prompt_mean",
    "prompt_basis",
)


@dataclass
class FeatureNormaliser:
    """Standardise image features and centre prompt embeddings, then project
    each onto its leading principal components (fitted on the training rows).

    Few hundred ratings cannot support a 384-d prompt or 1280-d UNet input; the
    projection keeps the directions that vary in the data and makes training
    several times faster.
    """

    image_mean: np.ndarray
    image_std: np.ndarray
    image_basis: np.ndarray  # (F, k)
    image_scale: np.ndarray  # (1,)
    prompt_mean: np.ndarray
    prompt_basis: np.ndarray  # (D, j)
    prompt_scale: float

    @classmethod
    def fit(
        cls, image: np.ndarray, prompt: np.ndarray, *, image_dims: int, prompt_dims: int
    ) -> FeatureNormaliser:
        std = image.std(0)
        std = np.where(std > 1e-6, std, 1.0).astype(np.float32)
        image_mean = image.mean(0)
        standard = (image - image_mean) / std
        image_basis = _principal_axes(standard, image_dims)
        image_scale = np.sqrt(
            ((standard @ image_basis) ** 2).sum(1).mean() / image_basis.shape[1]
        )
        prompt_mean = prompt.mean(0)
        unique = np.unique(prompt, axis=0) - prompt_mean
        prompt_basis = _principal_axes(unique, prompt_dims)
        projected = (prompt - prompt_mean) @ prompt_basis
        # One scale for every prompt axis keeps the geometry between prompts
        # while giving their (small) differences unit size.
        scale = float(np.sqrt((projected**2).sum(1).mean() / projected.shape[1]))
        return cls(
            image_mean=image_mean,
            image_std=std,
            image_basis=image_basis,
            image_scale=np.array([max(float(image_scale), 1e-4)], dtype=np.float32),
            prompt_mean=prompt_mean,
            prompt_basis=prompt_basis,
            prompt_scale=max(scale, 1e-4),
        )

    def apply(
        self, image: np.ndarray, prompt: np.ndarray, modality: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        img = ((image - self.image_mean) / self.image_std) @ self.image_basis
        img = img / self.image_scale
        txt = (prompt - self.prompt_mean) @ self.prompt_basis / self.prompt_scale
        cond = np.concatenate([txt, modality], axis=1)
        return (
            torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(cond, dtype=np.float32)),
        )

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            f"norm.{name}": torch.from_numpy(
                np.ascontiguousarray(getattr(self, name), dtype=np.float32)
            )
            for name in _NORM_ARRAYS
        }

    @classmethod
    def from_tensors(
        cls, tensors: dict[str, torch.Tensor], prompt_scale: float
    ) -> FeatureNormaliser:
        arrays = {n: tensors[f"norm.{n}"].numpy() for n in _NORM_ARRAYS}
        return cls(**arrays, prompt_scale=prompt_scale)


def _principal_axes(centred: np.ndarray, dims: int) -> np.ndarray:
    """Up to ``dims`` leading right-singular vectors as columns (at least one)."""
    _, singular, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
    keep = max(1, min(dims, int((singular > 1e-6 * max(singular.max(), 1e-12)).sum())))
    # C order, as after loading: BLAS rounds differently per memory layout.
    return np.ascontiguousarray(vt[:keep].T, dtype=np.float32)


def fit_ensemble(
    image: np.ndarray,
    prompt: np.ndarray,
    modality: np.ndarray,
    ratings: np.ndarray,
    weights: np.ndarray,
    config: RewardConfig,
    seed: int,
) -> tuple[_EnsembleHead, FeatureNormaliser]:
    norm = FeatureNormaliser.fit(
        image, prompt, image_dims=config.image_dims, prompt_dims=config.prompt_dims
    )
    img, cond = norm.apply(image, prompt, modality)
    members = config.ensemble_size
    torch.manual_seed(seed)
    head = _EnsembleHead(
        members, img.shape[1], cond.shape[1], config.hidden, config.rank
    )
    rng = np.random.default_rng(seed)
    n = len(ratings)
    # Member 0 sees the data as is; the others a bootstrap resample (as counts).
    counts = np.ones((members, n), dtype=np.float32)
    for m in range(1, members):
        counts[m] = rng.multinomial(n, np.full(n, 1.0 / n))
    w = torch.from_numpy(counts * weights[None].astype(np.float32))
    w = w / w.sum(1, keepdim=True).clamp(min=1e-8)
    y = torch.from_numpy(ratings)
    targets = torch.stack([(y > 1).float(), (y > 2).float()], dim=-1)
    optimiser = torch.optim.AdamW(
        head.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    for _ in range(config.epochs):
        score = head(img, cond)
        low, high = head.thresholds()
        logits = torch.stack([score - low, score - high], dim=-1)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, targets.expand_as(logits), reduction="none"
        ).sum(-1)
        loss = (bce * w).sum()
        optimiser.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]  # unannotated in torch
        optimiser.step()
    head.eval().requires_grad_(False)
    return head, norm


def summarise_members(member_probs: torch.Tensor) -> RewardPrediction:
    expected = (member_probs * torch.tensor([1.0, 2.0, 3.0])).sum(-1)
    member_reward = (expected - 1.0) / 2.0
    return RewardPrediction(
        probs=member_probs.mean(0).numpy().astype(np.float64),
        reward=member_reward.mean(0).clamp(0, 1).numpy().astype(np.float64),
        uncertainty=member_reward.std(0, unbiased=False).numpy().astype(np.float64),
    )


# --- the model --------------------------------------------------------------


class RewardModel:
    """Frozen features + an ensemble of ordinal heads."""

    def __init__(
        self,
        *,
        head: _EnsembleHead,
        normaliser: FeatureNormaliser,
        feature_extractor: FeatureExtractor,
        prompt_embedder: PromptEmbedder,
        config: RewardConfig,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.head = head
        self.normaliser = normaliser
        self.feature_extractor = feature_extractor
        self.prompt_embedder = prompt_embedder
        self.config = config
        self.info = info or {}

    def predict(
        self,
        images: list[Image.Image],
        prompts: Sequence[str],
        modalities: Sequence[str],
    ) -> RewardPrediction:
        """Rating probabilities, reward in [0, 1] and ensemble spread per image."""
        if not (len(images) == len(prompts) == len(modalities)):
            raise EngineError(
                f"predict needs as many prompts ({len(prompts)}) and modalities "
                f"({len(modalities)}) as images ({len(images)})"
            )
        if not images:
            empty = np.zeros(0)
            return RewardPrediction(np.zeros((0, 3)), empty, empty)
        features = as_numpy_features(self.feature_extractor.extract(list(images)))
        return self.predict_features(features, prompts, modalities)

    def predict_features(
        self, features: np.ndarray, prompts: Sequence[str], modalities: Sequence[str]
    ) -> RewardPrediction:
        """As ``predict``, from image features already extracted."""
        expected = self.normaliser.image_mean.shape[0]
        if features.shape[1] != expected:
            raise EngineError(
                f"image features have {features.shape[1]} dims, the model expects "
                f"{expected}: wrong feature extractor?"
            )
        img, cond = self.normaliser.apply(
            features,
            self.prompt_embedder.embed(list(prompts)),
            modality_vectors(modalities, self.config.modality_buckets),
        )
        with torch.no_grad():
            return summarise_members(self.head.probs(img, cond))

    def save(self, directory: str | Path) -> Path:
        """Write ``reward_model.safetensors`` and ``reward_model.json``."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {
            f"head.{k}": v.contiguous() for k, v in self.head.state_dict().items()
        }
        tensors.update(self.normaliser.tensors())
        save_file(tensors, str(directory / WEIGHTS_FILE))
        meta = {
            "format": FORMAT,
            "config": asdict(self.config),
            "features": self.feature_extractor.config(),
            "prompt_embedder": self.prompt_embedder.config(),
            "prompt_scale": self.normaliser.prompt_scale,
            "n_image_features": int(self.normaliser.image_mean.shape[0]),
            "n_cond": int(self.head.p_cond.shape[1]),
            "info": self.info,
        }
        (directory / CONFIG_FILE).write_text(
            json.dumps(meta, indent=2, default=_json_default)
        )
        return directory

    @classmethod
    def load(
        cls,
        directory: str | Path,
        *,
        feature_extractor: FeatureExtractor | None = None,
        prompt_embedder: PromptEmbedder | None = None,
    ) -> RewardModel:
        """Load a saved model; the feature extractor is rebuilt from its config."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        directory = Path(directory)
        weights, meta_path = directory / WEIGHTS_FILE, directory / CONFIG_FILE
        if not weights.is_file() or not meta_path.is_file():
            others = sorted(
                p.name
                for p in directory.glob("*")
                if p.suffix in {".pt", ".pth", ".bin", ".ckpt", ".pkl"}
            )
            hint = (
                f" (found {', '.join(others)}: only safetensors is accepted)"
                if others
                else ""
            )
            raise WeightsFormatError(
                f"{directory} is not a reward model: needs {WEIGHTS_FILE} and "
                f"{CONFIG_FILE}{hint}"
            )
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise WeightsFormatError(f"{meta_path} is not valid JSON: {exc}") from exc
        if meta.get("format") != FORMAT:
            raise WeightsFormatError(
                f"{meta_path}: unknown format {meta.get('format')!r}"
            )
        try:
            tensors = load_file(str(weights))
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsFormatError(
                f"{weights} is not a safetensors file: {exc}"
            ) from exc
        config = RewardConfig(**meta["config"])
        head_state = {k[5:]: v for k, v in tensors.items() if k.startswith("head.")}
        try:
            members, n_in, hidden = head_state["w1"].shape
            n_cond = int(meta["n_cond"])
            head = _EnsembleHead(
                members, n_in - n_cond, n_cond, hidden, head_state["p_image"].shape[2]
            )
            head.load_state_dict(head_state)
            normaliser = FeatureNormaliser.from_tensors(
                tensors, float(meta["prompt_scale"])
            )
        except (KeyError, RuntimeError, ValueError) as exc:
            raise WeightsFormatError(
                f"{weights} does not hold a reward model: {exc}"
            ) from exc
        head.eval().requires_grad_(False)
        return cls(
            head=head,
            normaliser=normaliser,
            feature_extractor=feature_extractor
            or feature_extractor_from_config(meta["features"]),
            prompt_embedder=prompt_embedder
            or prompt_embedder_from_config(meta["prompt_embedder"]),
            config=config,
            info=meta.get("info", {}),
        )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# --- training -----------------------------------------------------------------


class _FeatureTable:
    """Image features per path and prompt embeddings per prompt, computed once."""

    def __init__(self, extractor: FeatureExtractor, embedder: PromptEmbedder) -> None:
        self.extractor = extractor
        self.embedder = embedder
        self.images: dict[str, np.ndarray] = {}

    def add_images(self, paths: Iterable[str], progress: Progress | None) -> None:
        todo = sorted(set(paths) - set(self.images))
        for start in range(0, len(todo), 16):
            chunk = todo[start : start + 16]
            feats = as_numpy_features(
                self.extractor.extract([load_pil(p) for p in chunk])
            )
            self.images.update(zip(chunk, feats, strict=True))
            if progress:
                progress("features", min(start + 16, len(todo)), len(todo))

    def arrays(
        self, records: Sequence[RatingRecord], buckets: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        image = np.stack([self.images[r.image_path] for r in records])
        prompt = self.embedder.embed([r.prompt for r in records])
        modality = modality_vectors([r.modality for r in records], buckets)
        ratings = np.array([r.rating for r in records], dtype=np.int64)
        weights = np.array([r.weight for r in records], dtype=np.float32)
        return image, prompt, modality, ratings, weights


def train_reward_model(
    records: Sequence[RatingRecord],
    *,
    config: RewardConfig,
    real_images: Sequence[tuple[str, str, str]] | None = None,
    feature_extractor: FeatureExtractor | None = None,
    prompt_embedder: PromptEmbedder | None = None,
    progress: Progress | None = None,
) -> RewardTrainResult:
    """Cross-validate by prompt, then fit the final ensemble on every rating.

    ``real_images`` are (path, prompt, modality) triples used for free
    negatives. ``progress(stage, done, total)`` is called as work proceeds.
    """
    if len(records) < 2:
        raise DatasetError(
            f"need at least 2 ratings to train a reward model, got {len(records)}"
        )
    if sum(r.weight for r in records) <= 0:
        raise DatasetError("every rating has weight 0")
    extractor = feature_extractor or feature_extractor_from_spec(config.features)
    embedder = prompt_embedder or prompt_embedder_from_config(None)
    table = _FeatureTable(extractor, embedder)
    real = list(real_images or [])
    table.add_images(
        [r.image_path for r in records] + [p for p, _, _ in real], progress
    )

    folds = prompt_folds([r.prompt for r in records], config.n_folds)
    fold_metrics: list[dict[str, Any]] = []
    n = len(records)
    oof_probs = np.zeros((n, 3))
    oof_reward = np.zeros(n)
    oof_unc = np.zeros(n)
    for k, (train_idx, test_idx) in enumerate(folds):
        train = [records[i] for i in train_idx]
        held = [records[i] for i in test_idx]
        negatives = _negatives(
            real, config, seed=config.seed + 1000 + k, exclude={r.prompt for r in held}
        )
        head, norm = fit_ensemble(
            *table.arrays(train + negatives, config.modality_buckets),
            config=config,
            seed=config.seed + k,
        )
        image, prompt, modality, ratings, _ = table.arrays(
            held, config.modality_buckets
        )
        img, cond = norm.apply(image, prompt, modality)
        with torch.no_grad():
            pred = summarise_members(head.probs(img, cond))
        oof_probs[test_idx], oof_reward[test_idx], oof_unc[test_idx] = (
            pred.probs,
            pred.reward,
            pred.uncertainty,
        )
        fold_metrics.append(
            {
                "fold": k,
                "n_train": len(train),
                "n_negatives": len(negatives),
                "n_heldout": len(held),
                "n_heldout_prompts": len({r.prompt for r in held}),
                **ordinal_metrics(ratings, pred.probs, pred.reward),
            }
        )
        if progress:
            progress("folds", k + 1, len(folds))

    negatives = _negatives(real, config, seed=config.seed + 999, exclude=set())
    head, norm = fit_ensemble(
        *table.arrays(list(records) + negatives, config.modality_buckets),
        config=config,
        seed=config.seed,
    )
    if progress:
        progress("final", 1, 1)

    ratings_all = np.array([r.rating for r in records])
    heldout = None
    if folds:
        metrics = ordinal_metrics(ratings_all, oof_probs, oof_reward)
        metrics["mean_uncertainty"] = float(oof_unc.mean())
        heldout = HeldoutPredictions(
            ratings=ratings_all,
            probs=oof_probs,
            reward=oof_reward,
            uncertainty=oof_unc,
            prompts=[r.prompt for r in records],
        )
    else:
        metrics = {"n": 0, "note": "fewer than 2 distinct prompts: no held-out metrics"}
    metrics.update(
        n_ratings=n,
        n_prompts=len({r.prompt for r in records}),
        n_negatives=len(negatives),
        n_folds=len(folds),
        rating_counts={str(v): int((ratings_all == v).sum()) for v in RATINGS},
    )
    model = RewardModel(
        head=head,
        normaliser=norm,
        feature_extractor=extractor,
        prompt_embedder=embedder,
        config=config,
        info={
            "heldout_metrics": {k: v for k, v in metrics.items() if k != "reliability"}
        },
    )
    return RewardTrainResult(
        model=model,
        metrics=metrics,
        fold_metrics=fold_metrics,
        heldout=heldout,
        negatives=negatives,
    )


def _negatives(
    real: list[tuple[str, str, str]],
    config: RewardConfig,
    *,
    seed: int,
    exclude: set[str],
) -> list[RatingRecord]:
    if not real or config.negatives_per_image <= 0:
        return []
    return make_free_negatives(
        real,
        per_image=config.negatives_per_image,
        weight=config.negative_weight,
        seed=seed,
        exclude_prompts=exclude,
    )
