"""The rule of direction, checked from the import graph (docs/development.md,
"Which way the apps lean").

- ``annotations`` imports from ``models_ml`` only its models, and the
  engine's public API (``models_ml.engine`` and its torch-free
  ``models_ml.engine.readers``); it announces events with signals.
- The rest of ``models_ml`` uses the engine only through that public API.
- The engine imports nothing of the project and not Django.
- The research experiments (``research/``) use only the engine's public API
  of the project, and no Django.
- No two modules import each other, directly or around a loop, when they
  are loaded (module-level imports; a lazy import inside a function is how
  a module may reach back).

Every import counts for the rules, at module level or inside a function.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE_PUBLIC = {"models_ml.engine", "models_ml.engine.readers"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package(path: Path) -> str:
    name = _module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _module_level(tree: ast.Module) -> Iterator[ast.stmt]:
    """The statements run when the module loads: its body, and the bodies of
    its ``if`` and ``try`` blocks, except ``if TYPE_CHECKING:``."""
    pending = list(tree.body)
    while pending:
        node = pending.pop(0)
        yield node
        if isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            pending += node.body + node.orelse
        elif isinstance(node, ast.Try):
            pending += node.body + node.orelse + node.finalbody
            for handler in node.handlers:
                pending += handler.body


def _imports(
    source: str, package: str, *, when_loaded: bool = False
) -> Iterator[tuple[int, str]]:
    """(line, absolute module) for every import in ``source``, a module of
    ``package`` (only those run when it loads, with ``when_loaded``);
    ``from x import y`` counts as ``x.y`` when ``x.y`` is a module, so that
    importing a submodule by name is seen."""
    tree = ast.parse(source)
    for node in _module_level(tree) if when_loaded else ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                if _is_module(candidate):
                    yield node.lineno, candidate


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _files(package: str) -> list[Path]:
    return sorted(
        p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts
    )


Rule = Callable[[str], str]


def _violations(files: list[Path], rule: Rule) -> list[str]:
    found = []
    for path in files:
        for line, module in _imports(path.read_text(), _package(path)):
            reason = rule(module)
            if reason:
                found.append(f"{path.relative_to(ROOT)}:{line}: {module} ({reason})")
    return found


def _annotations_rule(module: str) -> str:
    if module == "models_ml" or not module.startswith("models_ml."):
        return ""
    if module == "models_ml.models" or module in ENGINE_PUBLIC:
        return ""
    return "annotations may import only models_ml.models and the engine's public API"


def _models_ml_rule(module: str) -> str:
    if module.startswith("models_ml.engine.") and module not in ENGINE_PUBLIC:
        return "use the engine's public API (models_ml/engine/__init__.py)"
    return ""


def _engine_rule(module: str) -> str:
    top = module.split(".")[0]
    if top in ("django", "rest_framework", "celery", "annotations", "medrlhf"):
        return "the engine imports nothing of the project or Django"
    if top == "models_ml" and not (
        module == "models_ml" or module.startswith("models_ml.engine")
    ):
        return "the engine imports nothing of the project outside itself"
    return ""


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _load_graph() -> dict[str, set[str]]:
    files = {
        _module_name(p): p
        for package in ("annotations", "models_ml", "medrlhf", "research")
        for p in _files(package)
    }
    return {
        name: {
            module
            for _, module in _imports(
                path.read_text(), _package(path), when_loaded=True
            )
            if module in files and module != name
        }
        for name, path in files.items()
    }


def test_no_import_cycle_when_modules_load() -> None:
    assert _cycles(_load_graph()) == []


def test_the_cycle_finder_sees_a_loop_and_not_a_lazy_import() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    lazy = "import os\ndef f():\n    from . import models\n"
    assert [m for _, m in _imports(lazy, "annotations", when_loaded=True)] == ["os"]
    guarded = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x\n"
    loaded = [m for _, m in _imports(guarded, "annotations", when_loaded=True)]
    assert loaded == ["typing"]


def _research_rule(module: str) -> str:
    top = module.split(".")[0]
    if top in ("django", "rest_framework", "celery", "annotations", "medrlhf"):
        return "research imports only the engine's public API of the project"
    if top == "models_ml" and module != "models_ml" and module not in ENGINE_PUBLIC:
        return "research imports only the engine's public API of the project"
    return ""


def test_research_uses_only_the_engines_public_api() -> None:
    assert _violations(_files("research"), _research_rule) == []


def test_annotations_imports_only_models_and_the_engine_api_of_models_ml() -> None:
    assert _violations(_files("annotations"), _annotations_rule) == []


def test_models_ml_uses_the_engine_only_through_its_public_api() -> None:
    files = [
        p for p in _files("models_ml") if "engine" not in p.relative_to(ROOT).parts
    ]
    assert _violations(files, _models_ml_rule) == []


def test_the_engine_imports_nothing_of_the_project() -> None:
    assert _violations(_files("models_ml/engine"), _engine_rule) == []


@pytest.mark.parametrize(
    ("rule", "source", "expected"),
    [
        (
            _annotations_rule,
            "from models_ml.services.chains import x",
            "annotations may",
        ),
        (_annotations_rule, "from models_ml import services", "annotations may"),
        (
            _annotations_rule,
            "from models_ml.engine.readers.image import x",
            "annotations",
        ),
        (_annotations_rule, "from models_ml.engine import preference_pairs", ""),
        (_annotations_rule, "from models_ml.models import Job", ""),
        (_models_ml_rule, "from .engine.train import train", "public API"),
        (_models_ml_rule, "from .engine import reward", "public API"),
        (_models_ml_rule, "from .engine import finetune", ""),
        (_engine_rule, "from django.db import models", "nothing of the project"),
        (_engine_rule, "from ..models import Job", "nothing of the project"),
        (_engine_rule, "from .readers import x", ""),
        (_research_rule, "from models_ml.engine.reward import x", "public API"),
        (_research_rule, "from models_ml.engine import finetune", ""),
        (_research_rule, "from .simulated_raters import x", ""),
    ],
)
def test_each_rule_catches_what_it_forbids(
    rule: Rule, source: str, expected: str
) -> None:
    """A lazy import inside a function, in a module where the rule applies:
    relative and submodule-by-name imports must be resolved to be seen."""
    package = {
        _annotations_rule: "annotations.views",
        _models_ml_rule: "models_ml",
        _engine_rule: "models_ml.engine",
        _research_rule: "research",
    }[rule]
    found = [
        f"{module} ({reason})"
        for _, module in _imports(f"def f():\n    {source}\n", package)
        if (reason := rule(module))
    ]
    if expected:
        assert len(found) == 1 and expected in found[0], found
    else:
        assert found == []
