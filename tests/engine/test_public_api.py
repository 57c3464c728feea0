"""The engine's public API (models_ml/engine/__init__.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from models_ml import engine

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", engine.__all__)
def test_every_public_name_resolves_to_its_submodule_object(name: str) -> None:
    module, attribute = engine._PUBLIC[name]
    submodule = __import__(f"models_ml.engine.{module}", fromlist=[attribute])
    assert getattr(engine, name) is getattr(submodule, attribute)


def test_an_unknown_name_is_an_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError, match="no_such_verb"):
        engine.no_such_verb  # noqa: B018


def test_the_fine_tune_is_published_under_the_cli_name() -> None:
    from models_ml.engine.train import train

    assert engine.finetune is train
    assert "finetune" in dir(engine)


def test_importing_the_api_and_a_light_name_loads_no_torch_or_django() -> None:
    code = (
        "import sys; from models_ml.engine import OBJECTIVES, recipe_for, "
        "preference_pairs, EngineError; "
        "print(sorted(m for m in ('torch', 'django', 'diffusers') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert out.stdout.strip() == "[]"
