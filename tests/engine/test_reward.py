from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models_ml.engine.errors import WeightsFormatError
from models_ml.engine.features import HandcraftedFeatures
from models_ml.engine.reward import RewardModel, train_reward_model
from models_ml.engine.reward_data import (
    RatingRecord,
    RatingsCSVError,
    make_free_negatives,
    prompt_folds,
    read_ratings_csv,
)
from models_ml.engine.reward_head import RewardConfig

FAST = RewardConfig(ensemble_size=3, n_folds=3, epochs=150, seed=0)


def disc_image(value: float, rng: np.random.Generator, size: int = 48) -> Image.Image:
    """A disc of grey level ``value`` on a mid-grey background."""
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(size / 3, 2 * size / 3, 2)
    radius = rng.uniform(size / 6, size / 3.5)
    pixels = np.full((size, size), 0.5)
    pixels[(yy - cy) ** 2 + (xx - cx) ** 2 < radius**2] = value
    pixels += rng.normal(0, 0.03, pixels.shape)
    return Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8))


def true_rating(word: str, value: float) -> int:
    """3 when the disc clearly matches the prompt's word, 1 when it contradicts it."""
    match = value if word == "bright" else 1 - value
    return 3 if match > 0.66 else 2 if match > 0.33 else 1


def synthetic_ratings(root: Path, *, prompts_per_word: int = 10, per_prompt: int = 15):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    records = []
    for k in range(prompts_per_word):
        for word in ("bright", "dark"):
            prompt = f"{word} round lesion on a plain background, case {k}"
            for j in range(per_prompt):
                value = float(rng.uniform(0, 1))
                path = root / f"{word}_{k}_{j}.png"
                disc_image(value, rng).save(path)
                records.append(
                    RatingRecord(str(path), prompt, "xray", true_rating(word, value))
                )
    return records


def real_images(root: Path) -> list[tuple[str, str, str]]:
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (prompt, modality) in enumerate(
        [("retina with optic disc", "fundus"), ("axial brain slice", "mri")] * 3
    ):
        path = root / f"real_{i}.png"
        disc_image(float(rng.uniform(0, 1)), rng).save(path)
        out.append((str(path), f"{prompt} {i}", modality))
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ratings")
    records = synthetic_ratings(root / "images")
    result = train_reward_model(
        records,
        config=FAST,
        real_images=real_images(root / "real"),
        feature_extractor=HandcraftedFeatures(),
    )
    return records, result


def test_reward_model_learns_synthetic_prompt_image_agreement_on_heldout_prompts(
    trained,
):
    records, result = trained
    assert result.metrics["n"] == len(records) == 300
    assert result.metrics["spearman"] > 0.6
    assert result.metrics["kappa_quadratic"] > 0.5
    assert result.metrics["auc_rated_3"] > 0.8
    assert len(result.fold_metrics) == 3
    assert 0 <= result.metrics["ece"] <= 1
    assert sum(row["n"] for row in result.metrics["reliability"]) == 300


def test_predictions_are_distributions_with_rewards_in_unit_interval(trained):
    records, result = trained
    images = [Image.open(r.image_path) for r in records[:20]]
    prediction = result.model.predict(
        images, [r.prompt for r in records[:20]], [r.modality for r in records[:20]]
    )
    assert prediction.probs.shape == (20, 3)
    assert np.allclose(prediction.probs.sum(1), 1.0)
    expected = (prediction.probs @ np.array([1.0, 2.0, 3.0]) - 1) / 2
    assert np.allclose(prediction.reward, expected, atol=1e-6)
    assert ((prediction.reward >= 0) & (prediction.reward <= 1)).all()


def test_the_same_disc_is_rewarded_for_the_matching_prompt_only(trained):
    _, result = trained
    rng = np.random.default_rng(5)
    bright = disc_image(0.95, rng)
    prediction = result.model.predict(
        [bright, bright],
        ["bright round lesion on a plain background, case 99"]
        + ["dark round lesion on a plain background, case 99"],
        ["xray", "xray"],
    )
    assert prediction.reward[0] > prediction.reward[1] + 0.3


def test_training_adds_downweighted_free_negatives_from_real_images(trained):
    _, result = trained
    assert result.metrics["n_negatives"] == 6
    assert all(
        n.rating == 1 and n.weight == FAST.negative_weight for n in result.negatives
    )
    assert all(fold["n_negatives"] > 0 for fold in result.fold_metrics)


def test_free_negatives_pair_images_with_another_modality_and_skip_excluded_prompts(
    tmp_path,
):
    real = real_images(tmp_path)
    own = {path: (prompt, modality) for path, prompt, modality in real}
    excluded = {real[1][1]}
    negatives = make_free_negatives(
        real, per_image=2, weight=0.25, seed=0, exclude_prompts=excluded
    )
    assert len(negatives) == 2 * len(real)
    for negative in negatives:
        assert negative.rating == 1 and negative.weight == 0.25
        assert negative.modality != own[negative.image_path][1]
        assert negative.prompt != own[negative.image_path][0]
        assert negative.prompt not in excluded


def test_prompt_folds_never_share_a_prompt_between_train_and_heldout():
    prompts = [f"prompt {i % 7}" for i in range(50)]
    folds = prompt_folds(prompts, 5)
    assert len(folds) == 5
    heldout_count = np.zeros(len(prompts), dtype=int)
    for train, held in folds:
        assert not {prompts[i] for i in train} & {prompts[i] for i in held}
        heldout_count[held] += 1
    assert (heldout_count == 1).all()


def test_a_single_prompt_gives_no_folds():
    assert prompt_folds(["same"] * 10, 5) == []


def test_ensemble_uncertainty_is_higher_out_of_distribution(trained):
    records, result = trained
    inside = [Image.open(r.image_path) for r in records[:30]]
    rng = np.random.default_rng(3)
    outside = [
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
        for _ in range(30)
    ]
    prompts = [r.prompt for r in records[:30]]
    modalities = ["xray"] * 30
    in_unc = result.model.predict(inside, prompts, modalities).uncertainty
    out_unc = result.model.predict(outside, prompts, modalities).uncertainty
    assert np.isfinite(in_unc).all() and (in_unc > 0).all()
    assert out_unc.mean() > in_unc.mean()


def test_save_and_load_round_trip_gives_identical_predictions(trained, tmp_path):
    records, result = trained
    result.model.save(tmp_path / "rm")
    loaded = RewardModel.load(tmp_path / "rm")
    assert isinstance(loaded.feature_extractor, HandcraftedFeatures)
    images = [Image.open(r.image_path) for r in records[:10]]
    args = (images, [r.prompt for r in records[:10]], ["xray"] * 10)
    before, after = result.model.predict(*args), loaded.predict(*args)
    assert np.array_equal(before.probs, after.probs)
    assert np.array_equal(before.uncertainty, after.uncertainty)
    assert sorted(p.name for p in (tmp_path / "rm").iterdir()) == [
        "reward_model.json",
        "reward_model.safetensors",
    ]


def test_load_rejects_a_pickle_posing_as_safetensors(trained, tmp_path):
    _, result = trained
    result.model.save(tmp_path / "rm")
    torch.save({"w": torch.zeros(2)}, tmp_path / "rm" / "reward_model.safetensors")
    with pytest.raises(WeightsFormatError, match="not a safetensors file"):
        RewardModel.load(tmp_path / "rm")


def test_load_refuses_a_folder_with_only_pickled_weights(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "reward.pt")
    with pytest.raises(WeightsFormatError, match="only safetensors is accepted"):
        RewardModel.load(tmp_path)


def _write_csv(tmp_path: Path, rows: list[str], header: str | None = None) -> Path:
    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    header = header or "image_path,rating,modality,expert_level,prompt"
    path = tmp_path / "ratings.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_ratings_csv_in_seed_format_with_extra_columns_and_weights_is_read(tmp_path):
    path = _write_csv(
        tmp_path,
        [
            "a.png,3,CT,senior,lung nodule,r1,0.5",
            "a.png, 1, CT, junior, lung nodule,r2,",
        ],
        header="image_path,rating,modality,expert_level,prompt,rater,weight",
    )
    records = read_ratings_csv(path)
    assert records[0] == RatingRecord(
        str(tmp_path / "a.png"), "lung nodule", "CT", 3, weight=0.5
    )
    assert records[1].rating == 1 and records[1].weight == 1.0


def test_ratings_csv_rating_outside_1_to_3_is_rejected_naming_the_line(tmp_path):
    path = _write_csv(tmp_path, ["a.png,3,CT,senior,x", "a.png,4,CT,senior,x"])
    with pytest.raises(RatingsCSVError, match=r"line 3: rating '4' is not 1, 2 or 3"):
        read_ratings_csv(path)


def test_ratings_csv_missing_image_is_rejected_naming_the_line(tmp_path):
    path = _write_csv(tmp_path, ["gone.png,2,CT,senior,x"])
    with pytest.raises(RatingsCSVError, match=r"line 2: image not found: .*gone.png"):
        read_ratings_csv(path)


def test_ratings_csv_without_prompt_column_is_rejected(tmp_path):
    path = _write_csv(tmp_path, ["a.png,2,CT"], header="image_path,rating,modality")
    with pytest.raises(RatingsCSVError, match="lacks column"):
        read_ratings_csv(path)


def test_ratings_csv_negative_weight_is_rejected_naming_the_line(tmp_path):
    path = _write_csv(
        tmp_path,
        ["a.png,2,CT,senior,x,-1"],
        header="image_path,rating,modality,expert_level,prompt,weight",
    )
    with pytest.raises(RatingsCSVError, match="line 2: weight '-1'"):
        read_ratings_csv(path)
