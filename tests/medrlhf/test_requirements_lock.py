"""requirements.lock: the exact versions installed, within pyproject's ranges."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def locked() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for number, line in enumerate(
        (ROOT / "requirements.lock").read_text().splitlines(), 1
    ):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"requirements.lock:{number}: not an exact pin: {line}"
        key = canonicalize_name(name)
        assert key not in pins, f"requirements.lock:{number}: {name} pinned twice"
        pins[key] = Version(version)
    return pins


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        wanted += extra
    return [Requirement(text) for text in wanted]


def test_every_requirement_is_pinned_within_its_range():
    pins = locked()
    for requirement in declared():
        key = canonicalize_name(requirement.name)
        assert key in pins, f"{requirement.name} is missing from requirements.lock"
        assert requirement.specifier.contains(pins[key], prereleases=True), (
            f"requirements.lock pins {requirement.name} {pins[key]}, outside "
            f"pyproject.toml's {requirement.specifier}: run make lock"
        )


def test_torch_is_pinned_without_a_build_label_so_gpu_builds_satisfy_it():
    torch = locked()["torch"]
    assert torch.local is None
    assert Version(f"{torch}+cu128") in Requirement(f"torch=={torch}").specifier
