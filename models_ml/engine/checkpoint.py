"""Training checkpoints: safetensors and JSON only, written atomically.

A checkpoint is a folder ``checkpoint-<step>`` holding the model (as
``backend.save`` writes it), optimizer tensors, the EMA copy, RNG states and a
``trainer_state.json``. It is assembled in a hidden temporary folder, fsynced
and renamed into place, so a crash never leaves a half-written checkpoint
under the real name.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .backends.base import DiffusionBackend, load_safetensors, save_safetensors
from .errors import EngineError

PREFIX = "checkpoint-"
STATE_JSON = "trainer_state.json"


class CheckpointError(EngineError):
    """A checkpoint folder is missing or incomplete."""


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints under ``output_dir``, oldest first."""
    if not output_dir.is_dir():
        return []
    found = []
    for child in output_dir.iterdir():
        suffix = child.name[len(PREFIX) :]
        if child.name.startswith(PREFIX) and suffix.isdigit():
            if (child / STATE_JSON).is_file():
                found.append((int(suffix), child))
    return [path for _, path in sorted(found)]


def latest_checkpoint(output_dir: Path) -> Path | None:
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1] if checkpoints else None


def resolve_resume(output_dir: Path, resume: str | None) -> Path | None:
    """``"latest"`` picks the newest checkpoint (none is fine); a path must exist."""
    if not resume:
        return None
    if resume == "latest":
        return latest_checkpoint(output_dir)
    path = Path(resume)
    if not (path / STATE_JSON).is_file():
        raise CheckpointError(f"{path}: not a checkpoint folder ({STATE_JSON} missing)")
    return path


def prune_checkpoints(output_dir: Path, keep: int | None) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    if not keep or keep < 1:
        return
    for path in list_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    for directory in [*sorted(p for p in root.rglob("*") if p.is_dir()), root]:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def optimizer_to_files(optimizer: torch.optim.Optimizer, directory: Path) -> None:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    save_safetensors(tensors, directory / "optimizer.safetensors")
    _write_json(
        directory / "optimizer.json",
        {"param_groups": state["param_groups"], "scalars": scalars},
    )


def optimizer_from_files(optimizer: torch.optim.Optimizer, directory: Path) -> None:
    meta = json.loads((directory / "optimizer.json").read_text())
    tensors = load_safetensors(directory / "optimizer.safetensors")
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = tensor
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    groups = meta["param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def rng_to_files(directory: Path) -> None:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    save_safetensors(tensors, directory / "rng.safetensors")
    # legacy=True is the default, spelled out: numpy's stubs type the bare call
    # as returning the dict form.
    np_state = np.random.get_state(legacy=True)
    if not isinstance(np_state, tuple):
        raise CheckpointError("numpy's global random state is not MT19937")
    py_state = random.getstate()
    _write_json(
        directory / "rng.json",
        {
            "python": [py_state[0], list(py_state[1]), py_state[2]],
            "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        },
    )


def rng_from_files(directory: Path) -> None:
    tensors = load_safetensors(directory / "rng.safetensors")
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    meta = json.loads((directory / "rng.json").read_text())
    version, values, gauss = meta["python"]
    random.setstate((version, tuple(values), gauss))
    name, keys, *rest = meta["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))


def ema_to_files(ema: Any, directory: Path) -> None:
    state = dict(ema.state_dict())
    shadow = state.pop("shadow_params")
    save_safetensors(
        {f"shadow.{i}": t for i, t in enumerate(shadow)}, directory / "ema.safetensors"
    )
    _write_json(directory / "ema.json", state)


def ema_from_files(ema: Any, directory: Path) -> None:
    state = json.loads((directory / "ema.json").read_text())
    tensors = load_safetensors(directory / "ema.safetensors")
    state["shadow_params"] = [tensors[f"shadow.{i}"] for i in range(len(tensors))]
    ema.load_state_dict(state)


def save_checkpoint(
    output_dir: Path,
    step: int,
    *,
    backend: DiffusionBackend,
    optimizer: torch.optim.Optimizer,
    lr_scheduler: Any,
    ema: Any | None,
    trainer_state: dict[str, Any],
    keep: int | None = None,
) -> Path:
    """Write ``checkpoint-<step>`` atomically and prune old ones; return its path."""
    output_dir.mkdir(parents=True, exist_ok=True)
    final = output_dir / f"{PREFIX}{step}"
    tmp = output_dir / f".tmp-{PREFIX}{step}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    backend.save(tmp / "model")
    optimizer_to_files(optimizer, tmp)
    _write_json(tmp / "lr_scheduler.json", lr_scheduler.state_dict())
    if ema is not None:
        ema_to_files(ema, tmp)
    rng_to_files(tmp)
    _write_json(tmp / STATE_JSON, {**trainer_state, "step": step})
    _fsync_tree(tmp)
    if final.exists():
        trash = output_dir / f".old-{PREFIX}{step}-{os.getpid()}"
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
    fd = os.open(output_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    prune_checkpoints(output_dir, keep)
    return final


def load_checkpoint(
    path: Path,
    *,
    backend: DiffusionBackend,
    optimizer: torch.optim.Optimizer,
    lr_scheduler: Any,
    ema: Any | None,
) -> dict[str, Any]:
    """Restore everything ``save_checkpoint`` wrote; return the trainer state."""
    state_file = path / STATE_JSON
    if not state_file.is_file():
        raise CheckpointError(f"{path}: {STATE_JSON} missing")
    backend.load_weights(path / "model")
    optimizer_from_files(optimizer, path)
    lr_scheduler.load_state_dict(json.loads((path / "lr_scheduler.json").read_text()))
    if ema is not None:
        if not (path / "ema.json").is_file():
            raise CheckpointError(f"{path}: EMA requested but ema.json missing")
        ema_from_files(ema, path)
    rng_from_files(path)
    trainer_state: dict[str, Any] = json.loads(state_file.read_text())
    return trainer_state
