"""Diffusion backends. Importing this package does not import torch.

``load_backend`` reads ``medrlhf_model.json`` and hands the folder to the
backend it names; a plain diffusers Stable Diffusion folder loads as ``sd``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import WeightsFormatError

if TYPE_CHECKING:
    import torch

    from .base import DiffusionBackend

MODEL_JSON = "medrlhf_model.json"


def load_backend(
    directory: Path | str, *, device: str | torch.device = "cpu"
) -> DiffusionBackend:
    """Load a saved model folder (tiny or SD) onto ``device``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise WeightsFormatError(f"{directory}: model folder not found")
    if not (directory / MODEL_JSON).is_file():
        if (directory / "model_index.json").is_file():
            from .sd import load_sd_backend

            return load_sd_backend(directory, None, device=device)
        raise WeightsFormatError(
            f"{directory}: neither {MODEL_JSON} nor a diffusers model_index.json"
        )
    from .base import ModelInfo

    info = ModelInfo.read(directory)
    if info.backend == "tiny":
        from .tiny import load_tiny_backend

        return load_tiny_backend(directory, info, device=device)
    if info.backend == "sd":
        from .sd import load_sd_backend

        return load_sd_backend(directory, info, device=device)
    raise WeightsFormatError(
        f"{directory / MODEL_JSON}: field 'backend' is {info.backend!r}, "
        "expected 'tiny' or 'sd'"
    )
