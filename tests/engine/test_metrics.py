import math

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from models_ml.engine.evaluation import evaluate_sets
from models_ml.engine.features import HandcraftedFeatures
from models_ml.engine.metrics import (
    expected_calibration_error,
    frechet_distance,
    kernel_distance,
    local_fd_kid,
    ms_ssim,
    ms_ssim_diversity,
    ordinal_metrics,
    paired_ssim_psnr,
    psnr,
    reward_statistics,
    ssim,
)


def _random_probs(n, rng):
    raw = rng.uniform(0.05, 1, (n, 3))
    return raw / raw.sum(1, keepdims=True)


def test_ordinal_kappa_and_auc_match_sklearn():
    rng = np.random.default_rng(0)
    ratings = rng.integers(1, 4, 80)
    probs = _random_probs(80, rng)
    reward = (probs @ np.array([1.0, 2.0, 3.0]) - 1) / 2
    out = ordinal_metrics(ratings, probs, reward)
    expected_kappa = cohen_kappa_score(
        ratings, probs.argmax(1) + 1, weights="quadratic"
    )
    assert out["kappa_quadratic"] == pytest.approx(expected_kappa)
    assert out["auc_rated_3"] == pytest.approx(roc_auc_score(ratings == 3, reward))
    assert out["n"] == 80


def test_ordinal_metrics_of_a_single_class_are_none_not_nan():
    probs = np.tile([0.2, 0.3, 0.5], (5, 1))
    out = ordinal_metrics(np.full(5, 3), probs, np.full(5, 0.65))
    assert out["spearman"] is None and out["auc_rated_3"] is None
    assert out["kappa_quadratic"] is None


def test_calibration_error_of_a_hand_computed_example():
    probs = np.array(
        [[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.1, 0.3, 0.6], [0.1, 0.3, 0.6]]
    )
    ratings = np.array([1, 2, 3, 3])
    ece, table = expected_calibration_error(probs, ratings, bins=10)
    # bin 0.9: confidence 0.9, accuracy 0.5; bin 0.6: confidence 0.6, accuracy 1.0
    assert ece == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    assert [(row["n"], row["accuracy"]) for row in table] == [(2, 1.0), (2, 0.5)]


def test_reward_statistics_report_quantiles_and_share_above_threshold():
    stats = reward_statistics([0.1, 0.2, 0.6, 0.9], threshold=0.5)
    assert stats["mean"] == pytest.approx(0.45)
    assert stats["median"] == pytest.approx(0.4)
    assert stats["share_above"] == 0.5


def test_frechet_distance_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 6))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-8)
    small = frechet_distance(a, a + 0.5)
    large = frechet_distance(a, a + 2.0)
    assert small == pytest.approx(6 * 0.25, rel=1e-6)
    assert large > small


def test_kid_is_about_zero_for_the_same_distribution_and_positive_for_another():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    same_mean, same_std = kernel_distance(a, b, subsets=20, subset_size=100)
    shifted, _ = kernel_distance(a, b + 1.0, subsets=20, subset_size=100)
    assert abs(same_mean) < 3 * same_std + 0.02
    assert shifted > 10 * abs(same_mean)


def _noise_images(n, seed, offset=0):
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(
            np.clip(rng.normal(100 + offset, 30, (32, 32)), 0, 255).astype(np.uint8)
        )
        for _ in range(n)
    ]


def test_local_fd_on_images_grows_when_the_second_set_is_brightened():
    extractor = HandcraftedFeatures(size=32, thumbnail=4)
    base = _noise_images(12, 0)
    same = local_fd_kid(base, base, extractor, kid_subsets=5, kid_subset_size=10)
    shifted = local_fd_kid(base, _noise_images(12, 0, 60), extractor, kid_subsets=5)
    assert same["local_fd"] == pytest.approx(0, abs=1e-6)
    assert shifted["local_fd"] > 0.1
    assert shifted["feature_extractor"]["kind"] == "handcrafted"


def test_ms_ssim_of_identical_images_is_one_and_drops_for_different_images():
    a, b = _noise_images(2, 1)
    big = a.resize((128, 128))
    assert ms_ssim(big, big) == pytest.approx(1.0)
    assert ms_ssim(a, b) < 0.5
    assert ms_ssim_diversity([a, a, a]) == pytest.approx(1.0)
    assert ms_ssim_diversity([a]) is None


def test_psnr_and_ssim_of_known_images():
    a = np.zeros((32, 32))
    b = np.full((32, 32), 0.1)
    assert psnr(a, b) == pytest.approx(20.0)
    assert math.isinf(psnr(a, a))
    img = np.random.default_rng(0).uniform(size=(32, 32))
    assert ssim(img, img) == pytest.approx(1.0)
    out = paired_ssim_psnr(
        [Image.fromarray(np.uint8(img * 255))] * 2,
        [Image.fromarray(np.uint8(img * 255))] * 2,
    )
    assert out["ssim"] == pytest.approx(1.0) and out["n"] == 2


def test_evaluate_sets_reports_local_fd_diversity_per_prompt_and_modality(tmp_path):
    gen, real = tmp_path / "gen", tmp_path / "real"
    gen.mkdir(), real.mkdir()
    lines, real_lines = ["path,prompt,modality"], ["path,Text,modality"]
    for i, image in enumerate(_noise_images(6, 2)):
        image.save(gen / f"g{i}.png")
        lines.append(f"g{i}.png,prompt {i % 2},ct")
    for i, image in enumerate(_noise_images(6, 3, 40)):
        image.save(real / f"r{i}.png")
        real_lines.append(f"r{i}.png,report {i},ct")
    (gen / "manifest.csv").write_text("\n".join(lines) + "\n")
    (real / "data.csv").write_text("\n".join(real_lines) + "\n")
    out = evaluate_sets(gen, real / "data.csv")
    assert out["n_generated"] == 6 and out["n_real"] == 6
    assert out["local_fd"] > 0
    assert "not comparable" in out["note"]
    assert set(out["ms_ssim_diversity"]["per_prompt"]) == {"prompt 0", "prompt 1"}
    assert set(out["per_modality"]) == {"ct"}
