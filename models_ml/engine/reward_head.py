"""The reward model's trainable part: an ordinal head (a shared score and two
ordered thresholds, CORAL style) on frozen features, fitted as an ensemble on
bootstrap resamples, and the normaliser that projects the features first."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


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


# --- the ordinal ensemble head ----------------------------------------------


class EnsembleHead(torch.nn.Module):
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
) -> tuple[EnsembleHead, FeatureNormaliser]:
    norm = FeatureNormaliser.fit(
        image, prompt, image_dims=config.image_dims, prompt_dims=config.prompt_dims
    )
    img, cond = norm.apply(image, prompt, modality)
    members = config.ensemble_size
    torch.manual_seed(seed)
    head = EnsembleHead(
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
