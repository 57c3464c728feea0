"""Fine-tuning objectives: their formulas, and what their gradients do to a model."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from models_ml.engine.backends import load_backend
from models_ml.engine.backends.tiny import TinyConfig, create_tiny_backend
from models_ml.engine.data import load_training_set
from models_ml.engine.errors import DatasetError
from models_ml.engine.feedback import balance_kto_weights
from models_ml.engine.objectives import (
    dpo_objective,
    kto_label,
    kto_objective,
    weighted_objective,
)
from models_ml.engine.train import denoising_losses, step_generator, train
from models_ml.engine.train_config import TrainConfig, TrainConfigError
from tests.engine.helpers import tiny_config, write_tiny_dataset

RED, GREY = "Fundus: red retina", "CT: grey slice"


def gradient(loss_of: callable, value: torch.Tensor) -> torch.Tensor:
    value = value.clone().requires_grad_(True)
    loss_of(value).backward()
    return value.grad


def test_kto_pulls_desirable_losses_down_pushes_undesirable_up_ignores_neutral() -> (
    None
):
    reference = torch.tensor([0.5, 0.5, 0.5])
    labels = torch.tensor([1.0, -1.0, 0.0])

    result = kto_objective(torch.tensor([0.4, 0.6, 0.5]), reference, labels, beta=10.0)
    grad = gradient(
        lambda p: kto_objective(p, reference, labels, beta=10.0).loss,
        torch.tensor([0.4, 0.6, 0.5]),
    )

    assert math.isfinite(float(result.loss))
    # Gradient descent lowers the policy loss of the desirable image (more
    # likely) and raises the undesirable one's; the neutral row has no term.
    assert grad[0] > 0 and grad[1] < 0 and grad[2] == 0
    # Both rows are already ranked the right way by the implicit reward.
    assert result.accuracy == 1.0


def test_kto_loss_matches_its_formula_with_weights_and_lambdas() -> None:
    policy = torch.tensor([0.3, 0.7, 0.5, 0.2])
    reference = torch.tensor([0.4, 0.6, 0.5, 0.25])
    labels = torch.tensor([1.0, -1.0, 0.0, 1.0])
    weights = torch.tensor([1.0, 2.0, 5.0, 0.5])

    result = kto_objective(
        policy,
        reference,
        labels,
        weights,
        beta=3.0,
        desirable_weight=1.5,
        undesirable_weight=0.5,
    )

    implicit = reference - policy
    point = max(0.0, float(implicit.mean()))
    expected_terms = [
        1.5 * (1 - torch.sigmoid(torch.tensor(3.0 * (0.1 - point)))),
        0.5 * (1 - torch.sigmoid(torch.tensor(3.0 * (point + 0.1)))),
        1.5 * (1 - torch.sigmoid(torch.tensor(3.0 * (0.05 - point)))),
    ]
    expected = (
        expected_terms[0] * 1 + expected_terms[1] * 2 + expected_terms[2] * 0.5
    ) / 3.5
    assert float(result.loss) == pytest.approx(float(expected), rel=1e-5)
    assert result.reference_point == pytest.approx(point)


def test_kto_reference_point_is_never_negative_and_never_trained() -> None:
    policy = torch.tensor([0.9, 0.8], requires_grad=True)
    reference = torch.tensor([0.1, 0.1], requires_grad=True)

    result = kto_objective(policy, reference, torch.tensor([1.0, -1.0]), beta=1.0)
    result.loss.backward()

    assert result.reference_point == 0.0
    assert reference.grad is None


def test_dpo_prefers_the_chosen_image_relative_to_the_reference() -> None:
    reference = torch.tensor([0.5]), torch.tensor([0.5])
    at_reference = dpo_objective(
        torch.tensor([0.5]), torch.tensor([0.5]), *reference, beta=100.0
    )
    assert float(at_reference.loss) == pytest.approx(math.log(2))

    def loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
        return dpo_objective(chosen, rejected, *reference, beta=100.0).loss

    chosen = torch.tensor([0.5], requires_grad=True)
    rejected = torch.tensor([0.5], requires_grad=True)
    loss(chosen, rejected).backward()
    assert chosen.grad[0] > 0 and rejected.grad[0] < 0
    better = dpo_objective(
        torch.tensor([0.4]), torch.tensor([0.6]), *reference, beta=100.0
    )
    assert float(better.loss) < math.log(2) and better.accuracy == 1.0


def test_dpo_only_the_change_from_the_reference_counts() -> None:
    # A pair the parent already ranks by a margin gains nothing from it.
    same_margin = dpo_objective(
        torch.tensor([0.2]),
        torch.tensor([0.8]),
        torch.tensor([0.2]),
        torch.tensor([0.8]),
        beta=50.0,
    )
    assert float(same_margin.loss) == pytest.approx(math.log(2))


def test_weighted_objective_is_the_weighted_mean() -> None:
    losses = torch.tensor([1.0, 3.0, 10.0])
    assert float(weighted_objective(losses, torch.tensor([1.0, 1.0, 0.0]))) == 2.0
    assert float(weighted_objective(losses, torch.zeros(3))) == 0.0


@pytest.mark.parametrize(
    ("mean", "middle", "expected"),
    [
        (3.0, "neutral", (1.0, 1.0)),
        (1.0, "neutral", (-1.0, 1.0)),
        (2.5, "dropped", (1.0, 0.5)),
        (2.0, "neutral", (0.0, 1.0)),
        (2.0, "dropped", None),
        (2.0, "weighted", (1.0, 0.5)),
    ],
)
def test_kto_label_from_mean_rating(mean, middle, expected) -> None:
    assert kto_label(mean, middle=middle) == expected


def test_kto_label_weighted_middle_may_count_as_undesirable() -> None:
    assert kto_label(2.0, middle="weighted", middle_weight=-0.25) == (-1.0, 0.25)
    with pytest.raises(ValueError, match="outside 1-3"):
        kto_label(3.5)
    with pytest.raises(ValueError, match="middle"):
        kto_label(2.0, middle="ignored")


def test_kto_class_balance_gives_both_classes_the_same_mass() -> None:
    weights = torch.tensor([1.0, 1.0, 1.0, 0.5, 2.0])
    labels = torch.tensor([1.0, 1.0, 1.0, -1.0, 0.0])

    balanced = balance_kto_weights(weights, labels)

    assert float(balanced[:3].sum()) == pytest.approx(float(balanced[3]))
    assert float(balanced[4]) == 2.0


# --- the objectives inside the training loop, on a toy case ------------------


def write_labelled(folder: Path, labels: dict[str, str]) -> Path:
    """The tiny red/grey dataset with a label per prompt (KTO)."""
    csv_path = write_tiny_dataset(folder, weights=[1.0] * 8)
    lines = csv_path.read_text().splitlines()
    out = [lines[0] + ", label"]
    for line in lines[1:]:
        prompt = RED if RED in line else GREY
        out.append(f"{line}, {labels[prompt]}")
    csv_path.write_text("\n".join(out) + "\n")
    return csv_path


def write_pairs(folder: Path, *, chosen: str) -> Path:
    """Pairs of a red and a grey image; ``chosen`` says which side wins."""
    write_tiny_dataset(folder)
    lines = ["chosen_path, rejected_path, Text, modality"]
    for i in range(0, 8, 2):
        grey, red = f"img{i}.png", f"img{i + 1}.png"
        first, second = (red, grey) if chosen == "red" else (grey, red)
        lines.append(f"{first}, {second}, retina or slice, Fundus")
    path = folder / "pairs.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def base_model(tmp_path: Path) -> Path:
    return create_tiny_backend(TinyConfig(resolution=16, channels=(8, 16))).save(
        tmp_path / "base"
    )


def mean_loss(model_dir: Path, csv_path: Path, prompt: str | None = None) -> float:
    """Denoising loss of a set, averaged over fixed draws: lower is likelier."""
    backend = load_backend(model_dir)
    data = load_training_set(csv_path, 16)
    rows = [i for i, p in enumerate(data.prompts) if prompt in (None, p)]
    batch = data.batch(rows)
    with torch.no_grad():
        return float(
            torch.stack(
                [
                    denoising_losses(backend, batch, generator=step_generator(99, k))
                    for k in range(32)
                ]
            ).mean()
        )


def tuned(tmp_path: Path, base: Path, **overrides: object) -> Path:
    config = tiny_config(
        tmp_path,
        model_path=str(base),
        max_steps=12,
        learning_rate=3e-3,
        beta=0.0,
        cond_dropout=0.0,
        **overrides,
    )
    result = train(config)
    assert result.final_dir is not None
    return result.final_dir


def test_kto_training_makes_desirable_images_likelier_than_undesirable(
    tmp_path: Path,
) -> None:
    base = base_model(tmp_path)
    data = write_tiny_dataset(tmp_path / "plain")
    labelled = write_labelled(tmp_path / "kto", {RED: "desirable", GREY: "undesirable"})

    model = tuned(
        tmp_path / "run",
        base,
        weights_csv=str(labelled),
        objective="kto",
        kto_beta=200.0,
    )

    red_change = mean_loss(model, data, RED) - mean_loss(base, data, RED)
    grey_change = mean_loss(model, data, GREY) - mean_loss(base, data, GREY)
    assert red_change < 0 < grey_change


def test_dpo_training_makes_the_chosen_side_likelier_than_the_rejected(
    tmp_path: Path,
) -> None:
    base = base_model(tmp_path)
    data = write_tiny_dataset(tmp_path / "plain")
    red_wins = tuned(
        tmp_path / "red",
        base,
        pairs_csv=str(write_pairs(tmp_path / "p_red", chosen="red")),
        objective="dpo",
        dpo_beta=200.0,
    )
    grey_wins = tuned(
        tmp_path / "grey",
        base,
        pairs_csv=str(write_pairs(tmp_path / "p_grey", chosen="grey")),
        objective="dpo",
        dpo_beta=200.0,
    )

    def gap(model: Path) -> float:
        """How much likelier red is than grey, relative to the base."""
        return (mean_loss(model, data, GREY) - mean_loss(base, data, GREY)) - (
            mean_loss(model, data, RED) - mean_loss(base, data, RED)
        )

    assert gap(red_wins) > 0 > gap(grey_wins)


def test_none_ignores_weights_and_labels(tmp_path: Path) -> None:
    base = base_model(tmp_path)
    first = write_labelled(tmp_path / "a", {RED: "desirable", GREY: "undesirable"})
    second = write_tiny_dataset(
        tmp_path / "b", weights=[5.0, 0.0, 0.1, 3.0, 0.0, 1.0, 2.0, 0.5]
    )

    one = tuned(tmp_path / "one", base, weights_csv=str(first), objective="none")
    two = tuned(tmp_path / "two", base, weights_csv=str(second), objective="none")

    a, b = load_backend(one).unet.state_dict(), load_backend(two).unet.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    weighted = tuned(tmp_path / "three", base, weights_csv=str(second))
    c = load_backend(weighted).unet.state_dict()
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_kto_records_its_reference_and_the_implicit_reward_accuracy(
    tmp_path: Path,
) -> None:
    base = base_model(tmp_path)
    labelled = write_labelled(tmp_path / "kto", {RED: "desirable", GREY: "neutral"})
    config = tiny_config(
        tmp_path,
        model_path=str(base),
        weights_csv=str(labelled),
        objective="kto",
        max_steps=3,
    )

    result = train(config)

    assert result.objective["objective"] == "kto"
    assert result.objective["reference"] == "frozen_copy"
    assert 0.0 <= result.objective["accuracy"] <= 1.0
    assert result.objective["reference_point"] >= 0.0


def test_kto_refuses_a_csv_whose_rows_are_all_neutral(tmp_path: Path) -> None:
    labelled = write_labelled(tmp_path / "kto", {RED: "neutral", GREY: "0"})
    config = tiny_config(
        tmp_path,
        model_path=str(base_model(tmp_path)),
        weights_csv=str(labelled),
        objective="kto",
    )

    with pytest.raises(DatasetError, match="every row is neutral"):
        train(config)


def test_kto_label_column_is_checked_per_line(tmp_path: Path) -> None:
    labelled = write_labelled(tmp_path / "kto", {RED: "great", GREY: "undesirable"})

    with pytest.raises(DatasetError, match="line 3: field 'label' 'great' must be"):
        load_training_set(labelled, 16, need_weight=True, need_label=True)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"objective": "ppo", "weights_csv": "w.csv"}, "objective 'ppo'"),
        ({"objective": "dpo", "weights_csv": "w.csv"}, "needs pairs_csv"),
        ({"objective": "kto", "pairs_csv": "p.csv"}, "pairs_csv is for"),
        ({"objective": "filtered", "weights_csv": "w.csv"}, "needs filter_threshold"),
        (
            {"objective": "kto", "weights_csv": "w.csv", "filter_threshold": 0.5},
            "filter_threshold applies",
        ),
        ({"objective": "kto", "weights_csv": "w.csv", "kto_beta": 0}, "kto_beta"),
        ({"objective": "dpo", "pairs_csv": "p.csv", "dpo_beta": -1}, "dpo_beta"),
        (
            {"objective": "kto", "weights_csv": "w.csv", "kto_undesirable_weight": 0},
            "kto_undesirable_weight",
        ),
    ],
)
def test_objective_options_are_checked_before_anything_runs(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(TrainConfigError, match=message):
        TrainConfig(output_dir="out", **overrides).validate()


def test_objective_names_import_without_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from models_ml.engine.objectives import OBJECTIVES, kto_label; "
        "assert kto_label(3.0) == (1.0, 1.0); "
        "print('torch' in sys.modules, ','.join(OBJECTIVES))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "weighted,filtered,kto,dpo,none"]


@pytest.mark.parametrize("objective", ["weighted", "filtered", "kto", "dpo", "none"])
def test_every_objective_fine_tunes_the_tiny_backend(
    tmp_path: Path, objective: str
) -> None:
    base = base_model(tmp_path)
    if objective == "dpo":
        data = {"pairs_csv": str(write_pairs(tmp_path / "d", chosen="red"))}
    elif objective == "kto":
        labels = {RED: "desirable", GREY: "undesirable"}
        data = {"weights_csv": str(write_labelled(tmp_path / "d", labels))}
    else:
        weights = write_tiny_dataset(tmp_path / "d", weights=[1.0, 0.2] * 4)
        data = {"weights_csv": str(weights)}
        if objective == "filtered":
            data["filter_threshold"] = 0.5
    config = tiny_config(
        tmp_path, model_path=str(base), objective=objective, max_steps=2, **data
    )

    result = train(config)

    assert result.final_dir is not None
    assert load_backend(result.final_dir).parent == load_backend(base).version
    assert result.objective["objective"] == objective
    before, after = load_backend(base).unet, load_backend(result.final_dir).unet
    assert any(
        not torch.equal(a, b)
        for a, b in zip(
            before.state_dict().values(), after.state_dict().values(), strict=True
        )
    )
