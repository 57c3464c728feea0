"""Every objective on the Stable Diffusion backend, LoRA and full UNet, and the
reference model each of them measures against."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models_ml.engine.backends import load_backend
from models_ml.engine.reference import AdapterSnapshot, AdaptersOff, FrozenCopy
from models_ml.engine.train import train
from tests.engine.helpers import tiny_config, write_tiny_dataset, write_tiny_sd_folder
from tests.engine.test_objectives import GREY, RED, write_labelled, write_pairs

OBJECTIVES = ("weighted", "filtered", "kto", "dpo", "none")


@pytest.fixture(scope="module")
def sd_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_sd_folder(tmp_path_factory.mktemp("sd"))


def data_for(objective: str, folder: Path) -> dict[str, object]:
    if objective == "dpo":
        return {"pairs_csv": str(write_pairs(folder, chosen="red"))}
    if objective == "kto":
        labelled = write_labelled(folder, {RED: "desirable", GREY: "undesirable"})
        return {"weights_csv": str(labelled)}
    weights = write_tiny_dataset(folder, weights=[1.0, 0.2] * 4)
    extra = {"filter_threshold": 0.5} if objective == "filtered" else {}
    return {"weights_csv": str(weights), **extra}


def sd_finetune(tmp_path: Path, base: Path, objective: str, **overrides: object):
    return train(
        tiny_config(
            tmp_path,
            backend="sd",
            model_path=str(base),
            max_steps=2,
            learning_rate=1e-2,
            objective=objective,
            **data_for(objective, tmp_path / "data"),
            **overrides,
        )
    )


def unet_state(model: Path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in load_backend(model).unet.state_dict().items()}


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("use_lora", [True, False], ids=["lora", "full_unet"])
def test_every_objective_fine_tunes_the_sd_backend(
    tmp_path: Path, sd_base: Path, objective: str, use_lora: bool
) -> None:
    extra = {"use_lora": True, "lora_rank": 2} if use_lora else {}
    result = sd_finetune(tmp_path, sd_base, objective, **extra)

    assert result.final_dir is not None
    assert all(torch.isfinite(torch.tensor(result.losses)))
    files = {p.name for p in result.final_dir.iterdir()}
    assert ("unet_lora.safetensors" in files) == use_lora
    assert ("unet.safetensors" in files) == (not use_lora)
    tuned = unet_state(result.final_dir)
    if use_lora:
        # Adapters start with B = 0 (the base); training moved them.
        assert any(v.abs().sum() > 0 for k, v in tuned.items() if "lora_B" in k)
    else:
        parent = unet_state(sd_base)
        assert any(not torch.equal(tuned[k], parent[k]) for k in parent)
    assert result.objective["objective"] == objective
    if objective in ("kto", "dpo"):
        expected = "adapters_off" if use_lora else "frozen_copy"
        assert result.objective["reference"] == expected
    else:
        assert "reference" not in result.objective


def test_lora_on_a_lora_parent_continues_its_adapters_against_a_snapshot(
    tmp_path: Path, sd_base: Path
) -> None:
    first = sd_finetune(tmp_path / "one", sd_base, "weighted", use_lora=True)
    assert first.final_dir is not None

    second = sd_finetune(tmp_path / "two", first.final_dir, "kto", use_lora=True)

    assert second.final_dir is not None
    assert second.objective["reference"] == "adapter_snapshot"
    child = load_backend(second.final_dir)
    assert child.parent == load_backend(first.final_dir).version
    from peft.utils import get_peft_model_state_dict

    before = get_peft_model_state_dict(load_backend(first.final_dir).unet)
    after = get_peft_model_state_dict(child.unet)
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def predict(unet, generator_seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(generator_seed)
    noisy = torch.randn(2, 4, 8, 8, generator=gen)
    context = torch.randn(2, 32, unet.config.cross_attention_dim, generator=gen)
    with torch.no_grad():
        return unet(noisy, torch.tensor([10, 50]), encoder_hidden_states=context).sample


def test_adapters_off_gives_the_base_and_the_snapshot_gives_the_parent(
    sd_base: Path,
) -> None:
    backend = load_backend(sd_base)
    base_prediction = predict(backend.unet)
    backend.add_lora(2)
    unet = backend.unet
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_B" in name:
                param.add_(0.05)
    parent_prediction = predict(unet)
    assert not torch.allclose(parent_prediction, base_prediction)

    snapshot = AdapterSnapshot(lambda: unet)
    off = AdaptersOff(lambda: unet)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_" in name:
                param.mul_(3.0)
    trained_prediction = predict(unet)

    with off.active() as reference:
        assert torch.allclose(predict(reference), base_prediction, atol=1e-6)
    with snapshot.active() as reference:
        assert torch.allclose(predict(reference), parent_prediction, atol=1e-6)
    # Both hand the trained weights back untouched.
    assert torch.allclose(predict(unet), trained_prediction, atol=1e-6)


def test_frozen_copy_does_not_follow_the_trained_unet(sd_base: Path) -> None:
    backend = load_backend(sd_base)
    parent_prediction = predict(backend.unet)
    reference = FrozenCopy(backend.unet)
    with torch.no_grad():
        for param in backend.unet.parameters():
            param.add_(0.01)

    with reference.active() as frozen:
        assert torch.allclose(predict(frozen), parent_prediction, atol=1e-6)
        assert not any(p.requires_grad for p in frozen.parameters())
