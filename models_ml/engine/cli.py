"""Command line: ``python -m models_ml.engine <command> [options]``.

Each command lives in ``models_ml.engine.commands.<name>`` with
``add_parser(subparsers)`` and ``run(args) -> int``. Modules are imported when
the parser is built; a command whose module does not exist yet is left out,
but an ImportError raised inside an existing module is not hidden.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from .errors import EngineError

COMMANDS = (
    "train",
    "generate",
    "finetune",
    "demo",
    "train_reward",
    "score",
    "evaluate",
)
EXIT_USER_ERROR = 2


def _command_module(name: str) -> ModuleType | None:
    module_name = f"{__package__}.commands.{name}"
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m models_ml.engine",
        description="Train, fine-tune, sample and score medrlhf diffusion models.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="command")
    subparsers.required = True
    for name in COMMANDS:
        module = _command_module(name)
        if module is None:
            continue
        before = set(subparsers.choices)
        module.add_parser(subparsers)
        for added in set(subparsers.choices) - before:
            # Dispatch by module, whatever name the command registered.
            subparsers.choices[added].set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; user errors print one line and return 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._module.run(args))
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
