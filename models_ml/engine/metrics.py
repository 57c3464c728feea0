"""Metrics for reward models and generated image sets.

Rating metrics: Spearman rho, AUC for "rated 3", quadratic-weighted Cohen's
kappa, expected calibration error with a reliability table.

Set metrics: "local FD" and "local KID" are the Frechet distance and kernel
inception distance computed on features from a local ``FeatureExtractor``
(handcrafted, a diffusion UNet encoder, or a local vision model). They are NOT
comparable with published FID/KID numbers, which need Inception-v3 weights that
cannot be fetched here; compare them only between runs using the same
extractor. MS-SSIM between images generated for one prompt measures diversity
(lower = more diverse). SSIM and PSNR compare paired images.

Importing this module does not import torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from .errors import DatasetError

if TYPE_CHECKING:
    from .features import FeatureExtractor

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _none_if_nan(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


# --- rating metrics -----------------------------------------------------------


def expected_calibration_error(
    probs: np.ndarray, ratings: np.ndarray, *, bins: int = 10
) -> tuple[float, list[dict[str, float]]]:
    """ECE of the top-class confidence and its reliability table.

    Each table row is one confidence bin: its bounds, how many predictions fell
    in it, their mean confidence and how often the top class was the rating.
    """
    probs = np.asarray(probs, dtype=np.float64)
    ratings = np.asarray(ratings)
    confidence = probs.max(1)
    correct = (probs.argmax(1) + 1 == ratings).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        mask = index == b
        if not mask.any():
            continue
        conf, acc = float(confidence[mask].mean()), float(correct[mask].mean())
        ece += mask.mean() * abs(conf - acc)
        table.append(
            {
                "bin_low": float(edges[b]),
                "bin_high": float(edges[b + 1]),
                "n": int(mask.sum()),
                "confidence": conf,
                "accuracy": acc,
            }
        )
    return float(ece), table


def ordinal_metrics(
    ratings: np.ndarray, probs: np.ndarray, reward: np.ndarray, *, bins: int = 10
) -> dict[str, Any]:
    """Held-out metrics of predicted rating distributions against true ratings.

    ``kappa_quadratic`` compares the most probable rating with the true one;
    ``auc_rated_3`` ranks by reward. Undefined values (one class only) are None.
    """
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score, roc_auc_score

    ratings = np.asarray(ratings).astype(int)
    probs = np.asarray(probs, dtype=np.float64)
    reward = np.asarray(reward, dtype=np.float64)
    n = len(ratings)
    predicted = probs.argmax(1) + 1 if n else np.zeros(0, dtype=int)
    out: dict[str, Any] = {"n": n}
    varied = n > 1 and len(set(ratings.tolist())) > 1
    if varied and np.ptp(reward) > 0:
        out["spearman"] = _none_if_nan(spearmanr(reward, ratings).statistic)
    else:
        out["spearman"] = None
    top = ratings == 3
    out["auc_rated_3"] = (
        float(roc_auc_score(top, reward)) if 0 < top.sum() < n else None
    )
    if varied:
        kappa = cohen_kappa_score(
            ratings, predicted, weights="quadratic", labels=[1, 2, 3]
        )
        out["kappa_quadratic"] = _none_if_nan(kappa)
    else:
        out["kappa_quadratic"] = None
    out["accuracy"] = float((predicted == ratings).mean()) if n else None
    expected = probs @ np.array([1.0, 2.0, 3.0]) if n else np.zeros(0)
    out["mae_expected_rating"] = float(np.abs(expected - ratings).mean()) if n else None
    if n:
        out["ece"], out["reliability"] = expected_calibration_error(
            probs, ratings, bins=bins
        )
    else:
        out["ece"], out["reliability"] = None, []
    return out


def reward_statistics(
    rewards: Sequence[float] | np.ndarray, *, threshold: float | None = None
) -> dict[str, Any]:
    """Mean, spread, quantiles and (given a threshold) the share at or above it."""
    values = np.asarray(rewards, dtype=np.float64)
    if values.size == 0:
        return {"n": 0}
    q = np.quantile(values, [0.1, 0.25, 0.5, 0.75, 0.9])
    out: dict[str, Any] = {
        "n": int(values.size),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "q10": float(q[0]),
        "q25": float(q[1]),
        "median": float(q[2]),
        "q75": float(q[3]),
        "q90": float(q[4]),
        "max": float(values.max()),
    }
    if threshold is not None:
        out["threshold"] = float(threshold)
        out["share_above"] = float((values >= threshold).mean())
    return out


# --- feature-set distances ------------------------------------------------------


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets."""
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        raise DatasetError("Frechet distance needs at least 2 images on each side")
    cov_a, cov_b = np.cov(a, rowvar=False, ddof=1), np.cov(b, rowvar=False, ddof=1)
    cov_a, cov_b = np.atleast_2d(cov_a), np.atleast_2d(cov_b)
    # tr sqrt(A B) = sum sqrt(eig(sqrt(A) B sqrt(A))): symmetric, so stable.
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = np.sqrt(np.clip(middle, 0, None)).sum()
    diff = a.mean(0) - b.mean(0)
    distance = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root
    return float(max(distance, 0.0))


def kernel_distance(
    features_a: np.ndarray,
    features_b: np.ndarray,
    *,
    subsets: int = 50,
    subset_size: int = 100,
    seed: int = 0,
) -> tuple[float, float]:
    """Unbiased MMD^2, cubic polynomial kernel (KID): mean and std over subsets."""
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise DatasetError("kernel distance needs at least 2 images on each side")
    rng = np.random.default_rng(seed)
    dim = a.shape[1]
    estimates = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx = (x @ x.T / dim + 1) ** 3
        kyy = (y @ y.T / dim + 1) ** 3
        kxy = (x @ y.T / dim + 1) ** 3
        same = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        estimates.append(same - 2 * kxy.mean())
    return float(np.mean(estimates)), float(np.std(estimates))


def local_fd_kid(
    images_a: list[Image.Image],
    images_b: list[Image.Image],
    extractor: FeatureExtractor,
    *,
    kid_subsets: int = 50,
    kid_subset_size: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """ "local FD" and "local KID" between two image sets (see module docstring)."""
    from .features import as_numpy_features

    fa = as_numpy_features(extractor.extract(images_a))
    fb = as_numpy_features(extractor.extract(images_b))
    kid_mean, kid_std = kernel_distance(
        fa, fb, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed
    )
    return {
        "local_fd": frechet_distance(fa, fb),
        "local_kid_mean": kid_mean,
        "local_kid_std": kid_std,
        "n_a": len(images_a),
        "n_b": len(images_b),
        "feature_extractor": extractor.config(),
    }


# --- structural similarity ------------------------------------------------------


def _gray(image: Image.Image | np.ndarray) -> np.ndarray:
    """Grayscale float64 in [0, 1]; arrays are taken as already in [0, 1]."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("L"), dtype=np.float64) / 255.0
    array = np.asarray(image, dtype=np.float64)
    return array.mean(-1) if array.ndim == 3 else array


def _ssim_and_cs(
    x: np.ndarray, y: np.ndarray, *, sigma: float = 1.5, data_range: float = 1.0
) -> tuple[float, float]:
    from scipy.ndimage import gaussian_filter

    def blur(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        blurred: npt.NDArray[np.float64] = gaussian_filter(z, sigma, truncate=3.5)
        return blurred

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    cs = (2 * cxy + c2) / (vx + vy + c2)
    luminance = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    # Borders see a reflected window; only fully covered pixels count.
    r = int(3.5 * sigma + 0.5)
    inner = (slice(r, -r or None), slice(r, -r or None))
    return float((luminance * cs)[inner].mean()), float(cs[inner].mean())


def ms_ssim(
    image_a: Image.Image | np.ndarray,
    image_b: Image.Image | np.ndarray,
    *,
    scales: int = 5,
    sigma: float = 1.5,
) -> float:
    """Multi-scale SSIM (Gaussian window) of two grayscale images, in [0, 1].

    Uses as many of ``scales`` as the image size allows (the coarsest scale
    must still hold a full window) and renormalises the standard weights.
    """
    x, y = _gray(image_a), _gray(image_b)
    if x.shape != y.shape:
        raise DatasetError(f"MS-SSIM needs equal sizes, got {x.shape} and {y.shape}")
    window = 2 * int(3.5 * sigma + 0.5) + 1
    usable = 1
    while usable < scales and min(x.shape) // 2**usable >= 2 * window:
        usable += 1
    weights = np.array(MS_SSIM_WEIGHTS[:usable])
    weights = weights / weights.sum()
    values = []
    for level in range(usable):
        ssim, cs = _ssim_and_cs(x, y, sigma=sigma)
        values.append(max(ssim if level == usable - 1 else cs, 0.0))
        h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
        x = x[:h, :w].reshape(h // 2, 2, w // 2, 2).mean((1, 3))
        y = y[:h, :w].reshape(h // 2, 2, w // 2, 2).mean((1, 3))
    return float(np.prod(np.power(values, weights)))


def ms_ssim_diversity(
    images: list[Image.Image], *, max_pairs: int = 200, seed: int = 0
) -> float | None:
    """Mean pairwise MS-SSIM in a set (lower = more diverse); None under 2 images."""
    if len(images) < 2:
        return None
    size = images[0].size
    arrays = [_gray(im if im.size == size else im.resize(size)) for im in images]
    pairs = list(combinations(range(len(arrays)), 2))
    if len(pairs) > max_pairs:
        rng = np.random.default_rng(seed)
        pairs = [pairs[i] for i in rng.choice(len(pairs), max_pairs, replace=False)]
    return float(np.mean([ms_ssim(arrays[i], arrays[j]) for i, j in pairs]))


def ssim(image_a: Image.Image | np.ndarray, image_b: Image.Image | np.ndarray) -> float:
    """SSIM of two grayscale images scaled to [0, 1] (skimage)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(_gray(image_a), _gray(image_b), data_range=1.0))


def psnr(image_a: Image.Image | np.ndarray, image_b: Image.Image | np.ndarray) -> float:
    """PSNR in dB of two grayscale images scaled to [0, 1]; inf when identical."""
    from skimage.metrics import peak_signal_noise_ratio

    a, b = _gray(image_a), _gray(image_b)
    if np.array_equal(a, b):
        return math.inf
    return float(peak_signal_noise_ratio(a, b, data_range=1.0))


def paired_ssim_psnr(
    images_a: list[Image.Image], images_b: list[Image.Image]
) -> dict[str, Any]:
    """Mean SSIM and PSNR over aligned pairs (identical pairs excluded from PSNR)."""
    if len(images_a) != len(images_b) or not images_a:
        raise DatasetError(
            f"paired metrics need two equal, non-empty lists, got {len(images_a)} "
            f"and {len(images_b)}"
        )
    ssims = [ssim(a, b) for a, b in zip(images_a, images_b, strict=True)]
    psnrs = [psnr(a, b) for a, b in zip(images_a, images_b, strict=True)]
    finite = [p for p in psnrs if math.isfinite(p)]
    return {
        "n": len(ssims),
        "ssim": float(np.mean(ssims)),
        "psnr": float(np.mean(finite)) if finite else math.inf,
    }
