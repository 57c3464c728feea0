"""The base model shipped in ``models_ml/demo_model`` loads and samples."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from models_ml.engine.backends import load_backend
from models_ml.engine.backends.base import GenerationRequest

DEMO_MODEL_DIR = Path(__file__).resolve().parents[2] / "models_ml" / "demo_model"


def test_shipped_demo_model_generates_an_image_of_its_resolution() -> None:
    torch.set_num_threads(1)
    training = json.loads((DEMO_MODEL_DIR / "training.json").read_text())
    backend = load_backend(DEMO_MODEL_DIR, device="cpu")
    [image] = backend.generate(
        [GenerationRequest("CT: axial CT of the head", "CT", seed=0)], steps=2
    )
    side = training["resolution"]
    assert backend.name == "tiny" and backend.resolution == side
    assert image.image.size == (side, side) and image.image.mode == "RGB"


def test_shipped_demo_model_is_the_command_written_beside_it() -> None:
    training = json.loads((DEMO_MODEL_DIR / "training.json").read_text())
    readme = (DEMO_MODEL_DIR / "README.md").read_text()
    assert training["command"].startswith("python -m models_ml.engine train ")
    assert training["command"] in " ".join(readme.split())
