"""Backends: reproducible sampling, conditioning, safe weight loading, SD folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models_ml.engine.backends import load_backend
from models_ml.engine.backends.base import MODEL_JSON, GeneratedImage, GenerationRequest
from models_ml.engine.backends.sd import fold_modality
from models_ml.engine.backends.tiny import TinyBackend, TinyConfig, create_tiny_backend
from models_ml.engine.errors import PromptTooLongError, WeightsFormatError
from tests.engine.helpers import write_tiny_sd_folder


def tiny_backend(**overrides: Any) -> TinyBackend:
    return create_tiny_backend(TinyConfig(resolution=16, channels=(8, 16), **overrides))


def pixels(images: list[GeneratedImage]) -> np.ndarray:
    return np.stack([np.asarray(g.image, dtype=np.int16) for g in images])


def test_each_image_depends_on_its_seed_not_on_batch_size() -> None:
    backend = tiny_backend()
    requests = [
        GenerationRequest("CT: grey slice", "CT", seed=3),
        GenerationRequest("Fundus: red retina", "Fundus", seed=4),
        GenerationRequest("CT: grey slice", "CT", seed=5),
    ]
    together = backend.generate(requests, steps=3, batch_size=3)
    alone = backend.generate(requests[1:2], steps=3, batch_size=1)
    pairs = backend.generate(requests, steps=3, batch_size=2)

    assert np.abs(pixels(together)[1] - pixels(alone)[0]).max() <= 1
    assert np.abs(pixels(together) - pixels(pairs)).max() <= 1
    assert np.abs(pixels(together)[0] - pixels(together)[2]).max() > 1


@pytest.mark.parametrize("scheduler", ["ddim", "dpm", "euler", "ddpm"])
def test_every_sampler_returns_rgb_images_at_model_resolution(scheduler: str) -> None:
    images = tiny_backend().generate(
        [GenerationRequest("CT: slice", "CT", 0)], steps=2, scheduler=scheduler
    )

    assert images[0].image.size == (16, 16) and images[0].image.mode == "RGB"
    assert images[0].scheduler == scheduler and images[0].steps == 2


def test_modality_is_part_of_the_conditioning() -> None:
    backend = tiny_backend()
    context = backend.encode_prompts(["axial slice"] * 3, ["CT", "MRI", None])

    assert not torch.equal(context[0], context[1])
    assert not torch.equal(context[0], context[2])
    assert context.shape[-1] == 384


def test_modality_slug_alias_and_display_name_condition_alike() -> None:
    backend = tiny_backend()
    context = backend.encode_prompts(
        ["chest film"] * 4, ["chest_xray", "CXR", "Chest X-ray", "Extremity X-ray"]
    )

    assert torch.equal(context[0], context[1]) and torch.equal(context[0], context[2])
    assert not torch.equal(context[0], context[3])


def test_prompt_longer_than_the_encoder_takes_raises_prompt_too_long() -> None:
    backend = tiny_backend(max_prompt_tokens=8)

    with pytest.raises(PromptTooLongError, match="at most 8"):
        backend.encode_prompts(["word " * 20], [None])


def test_saved_model_loads_and_samples_the_same_images(tmp_path: Path) -> None:
    backend = tiny_backend()
    request = [GenerationRequest("CT: slice", "CT", 7)]
    backend.save(tmp_path / "model")
    loaded = load_backend(tmp_path / "model")

    assert loaded.version == backend.version
    assert np.array_equal(
        pixels(backend.generate(request, steps=2)),
        pixels(loaded.generate(request, steps=2)),
    )


def test_half_precision_save_is_half_the_size_and_samples_alike(
    tmp_path: Path,
) -> None:
    backend = tiny_backend()
    request = [GenerationRequest("CT: slice", "CT", 7)]
    backend.save(tmp_path / "full")
    backend.save(tmp_path / "half", half=True)
    loaded = load_backend(tmp_path / "half")
    full_size = (tmp_path / "full" / "unet.safetensors").stat().st_size
    half_size = (tmp_path / "half" / "unet.safetensors").stat().st_size

    assert half_size < 0.6 * full_size
    assert next(loaded.unet.parameters()).dtype == torch.float32
    difference = np.abs(
        pixels(backend.generate(request, steps=2))
        - pixels(loaded.generate(request, steps=2))
    )
    assert difference.max() <= 2


def test_pickle_weights_file_is_refused_naming_it(tmp_path: Path) -> None:
    model = tiny_backend().save(tmp_path / "model")
    info = json.loads((model / MODEL_JSON).read_text())
    info["weights"]["unet"] = "unet.bin"
    (model / MODEL_JSON).write_text(json.dumps(info))
    (model / "unet.bin").write_bytes(b"\x80\x04not really a pickle")

    with pytest.raises(WeightsFormatError, match=r"unet\.bin"):
        load_backend(model)


def test_weights_file_that_is_not_safetensors_is_refused(tmp_path: Path) -> None:
    model = tiny_backend().save(tmp_path / "model")
    (model / "unet.safetensors").write_bytes(b"\x80\x04\x95 pickle bytes")

    with pytest.raises(WeightsFormatError, match=r"unet\.safetensors"):
        load_backend(model)


def test_checkpoint_of_the_wrong_shape_is_refused_naming_the_tensor(
    tmp_path: Path,
) -> None:
    small = tiny_backend().save(tmp_path / "small")
    bigger = create_tiny_backend(TinyConfig(resolution=16, channels=(16, 32)))
    bigger.save(tmp_path / "big")
    (tmp_path / "big" / "unet.safetensors").replace(small / "unet.safetensors")

    with pytest.raises(WeightsFormatError, match=r"tensor 'conv_in\.weight' has shape"):
        load_backend(small)


def test_folder_without_model_description_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WeightsFormatError, match="medrlhf_model.json"):
        load_backend(tmp_path)


def test_stable_diffusion_folder_loads_and_folds_modality_into_the_prompt(
    tmp_path: Path,
) -> None:
    backend = load_backend(write_tiny_sd_folder(tmp_path))
    images = backend.generate(
        [GenerationRequest("slice", "ct", 1), GenerationRequest("slice", None, 1)],
        steps=2,
        guidance=2.0,
    )

    assert backend.name == "sd" and backend.resolution == 16
    assert images[0].image.size == (16, 16)
    assert fold_modality("slice", "CT") == "CT: slice"
    assert fold_modality("CT: slice", "CT") == "CT: slice"


def test_stable_diffusion_prompt_too_long_raises(tmp_path: Path) -> None:
    backend = load_backend(write_tiny_sd_folder(tmp_path))

    with pytest.raises(PromptTooLongError):
        backend.encode_prompts(["abcdefghijklmnopqrstuvwxyz" * 2], [None])
