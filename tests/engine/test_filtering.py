from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image
from skimage import data

from models_ml.engine.filtering import (
    FilterError,
    ImageGenerator,
    calibrate_threshold,
    filter_generate,
)
from models_ml.engine.reward_head import RewardPrediction


@dataclass(frozen=True)
class Request:
    prompt: str
    modality: str
    seed: int


@dataclass(frozen=True)
class Generated:
    image: Image.Image
    prompt: str
    modality: str
    seed: int
    steps: int
    guidance: float
    scheduler: str
    model_version: str


class CropGenerator:
    """Returns a seed-chosen crop of a real skimage photograph."""

    def __init__(self):
        self.source = np.asarray(data.camera())
        self.calls: list[list[Request]] = []

    def generate(self, requests, *, steps=10, guidance=3.0, **_):
        self.calls.append(list(requests))
        out = []
        for r in requests:
            rng = np.random.default_rng(r.seed)
            y, x = rng.integers(0, self.source.shape[0] - 64, 2)
            crop = Image.fromarray(self.source[y : y + 64, x : x + 64])
            out.append(
                Generated(
                    crop, r.prompt, r.modality, r.seed, steps, guidance, "ddim", "v1"
                )
            )
        return out


class BrightnessScorer:
    """Reward = mean brightness, so the best crop is checkable by hand."""

    def predict(self, images, prompts, modalities):
        reward = np.array([np.asarray(im, dtype=float).mean() / 255 for im in images])
        probs = np.stack([1 - reward, np.zeros_like(reward), reward], axis=1)
        return RewardPrediction(probs, reward, np.full(len(images), 0.01))


def test_crop_generator_satisfies_the_generator_protocol():
    generator: ImageGenerator = CropGenerator()
    assert len(generator.generate([Request("p", "ct", 1)])) == 1


def test_best_of_n_keeps_exactly_one_per_request_with_the_max_candidate_reward():
    generator = CropGenerator()
    requests = [
        Request("lung", "ct", 1),
        Request("knee", "mri", 2),
        Request("eye", "fundus", 3),
    ]
    result = filter_generate(generator, BrightnessScorer(), requests, n=4, steps=5)
    assert [k.request_index for k in result.kept] == [0, 1, 2]
    assert len(result.rejected) == 3 * 3
    for kept in result.kept:
        candidates = [
            r for r in result.rejected if r.request_index == kept.request_index
        ]
        assert kept.reward == max([kept.reward] + [c.reward for c in candidates])
        assert kept.prompt == requests[kept.request_index].prompt
    assert result.kept[0].provenance == {
        "steps": 5,
        "guidance": 3.0,
        "scheduler": "ddim",
        "model_version": "v1",
    }
    seeds = [r.seed for r in generator.calls[0]]
    assert len(set(seeds)) == 12 and seeds[0] == 1
    assert result.stats["n_generated"] == 12 and result.stats["n_kept"] == 3


def test_threshold_mode_keeps_only_rewards_at_or_above_the_threshold():
    requests = [Request(f"p{i}", "ct", i) for i in range(6)]
    result = filter_generate(
        CropGenerator(),
        BrightnessScorer(),
        requests,
        mode="threshold",
        threshold=0.5,
        max_attempts=3,
    )
    assert result.kept and result.rejected
    assert all(k.reward >= 0.5 for k in result.kept)
    assert all(r.reward < 0.5 for r in result.rejected)
    assert len({k.request_index for k in result.kept}) == len(result.kept)
    assert result.stats["n_unfilled"] == 6 - len(result.kept)
    assert result.stats["n_generated"] == len(result.kept) + len(result.rejected)


def test_threshold_mode_without_threshold_is_refused():
    with pytest.raises(FilterError, match="needs a threshold"):
        filter_generate(CropGenerator(), BrightnessScorer(), [], mode="threshold")


def test_calibrate_threshold_hand_computed_example():
    rewards = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    ratings = [3, 3, 2, 3, 1, 3]
    result = calibrate_threshold(rewards, ratings, target_precision=0.75)
    # >= 0.6 keeps 3, 3, 2, 3: precision 0.75, recall 3/4; >= 0.4 would be 4/6
    assert result.reachable
    assert result.threshold == 0.6
    assert result.achieved_precision == pytest.approx(0.75)
    assert result.recall == pytest.approx(0.75)
    assert result.n == 6


def test_calibrate_threshold_says_when_the_target_is_unreachable():
    result = calibrate_threshold([0.9, 0.5], [2, 3], target_precision=0.8)
    assert not result.reachable and result.threshold is None
    assert "unreachable" in result.message
