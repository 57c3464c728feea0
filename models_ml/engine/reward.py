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

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .errors import DatasetError, EngineError, WeightsFormatError
from .features import (
    FeatureExtractor,
    as_numpy_features,
    feature_extractor_from_config,
    feature_extractor_from_spec,
)
from .images import load_pil
from .metrics import ordinal_metrics
from .reward_data import (
    RATINGS,
    PromptEmbedder,
    RatingRecord,
    make_free_negatives,
    modality_vectors,
    prompt_embedder_from_config,
    prompt_folds,
)
from .reward_head import (
    EnsembleHead,
    FeatureNormaliser,
    RewardConfig,
    RewardPrediction,
    fit_ensemble,
    summarise_members,
)

FORMAT = "medrlhf-reward-v1"
WEIGHTS_FILE = "reward_model.safetensors"
CONFIG_FILE = "reward_model.json"
Progress = Callable[[str, int, int], None]


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


# --- the model --------------------------------------------------------------


class RewardModel:
    """Frozen features + an ensemble of ordinal heads."""

    def __init__(
        self,
        *,
        head: EnsembleHead,
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
            head = EnsembleHead(
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
    oof, fold_metrics = _cross_validate(records, folds, table, real, config, progress)

    negatives = _negatives(real, config, seed=config.seed + 999, exclude=set())
    head, norm = fit_ensemble(
        *table.arrays(list(records) + negatives, config.modality_buckets),
        config=config,
        seed=config.seed,
    )
    if progress:
        progress("final", 1, 1)

    metrics, heldout = _heldout_summary(
        records, oof if folds else None, n_negatives=len(negatives), n_folds=len(folds)
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


def _cross_validate(
    records: Sequence[RatingRecord],
    folds: list[tuple[np.ndarray, np.ndarray]],
    table: _FeatureTable,
    real: list[tuple[str, str, str]],
    config: RewardConfig,
    progress: Progress | None,
) -> tuple[HeldoutPredictions, list[dict[str, Any]]]:
    """Fit one ensemble per prompt fold; predict the fold it did not see.

    Returns the out-of-fold predictions for every rating (zeros where no fold
    held it out) and each fold's metrics.
    """
    n = len(records)
    oof = HeldoutPredictions(
        ratings=np.array([r.rating for r in records]),
        probs=np.zeros((n, 3)),
        reward=np.zeros(n),
        uncertainty=np.zeros(n),
        prompts=[r.prompt for r in records],
    )
    fold_metrics: list[dict[str, Any]] = []
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
        oof.probs[test_idx] = pred.probs
        oof.reward[test_idx] = pred.reward
        oof.uncertainty[test_idx] = pred.uncertainty
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
    return oof, fold_metrics


def _heldout_summary(
    records: Sequence[RatingRecord],
    oof: HeldoutPredictions | None,
    *,
    n_negatives: int,
    n_folds: int,
) -> tuple[dict[str, Any], HeldoutPredictions | None]:
    """The held-out metrics (when there were folds) and the rating counts."""
    ratings_all = np.array([r.rating for r in records])
    if oof is not None:
        metrics = ordinal_metrics(ratings_all, oof.probs, oof.reward)
        metrics["mean_uncertainty"] = float(oof.uncertainty.mean())
    else:
        metrics = {"n": 0, "note": "fewer than 2 distinct prompts: no held-out metrics"}
    metrics.update(
        n_ratings=len(records),
        n_prompts=len({r.prompt for r in records}),
        n_negatives=n_negatives,
        n_folds=n_folds,
        rating_counts={str(v): int((ratings_all == v).sum()) for v in RATINGS},
    )
    return metrics, oof


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
