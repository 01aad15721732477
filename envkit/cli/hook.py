"""``envkit hook --check deps|validate FILE...``: the pre-commit hooks' entry
(``.pre-commit-hooks.yaml``; pre-commit puts the hook's ``args`` before the file names).

pre-commit passes the changed files; each belongs to the model whose directory (holding an
``MLmodel``) contains it. Every such model is checked once, with ``envkit deps`` or
``envkit validate``; the exit code is the worst model's.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "hook",
        help="pre-commit entry: check the models the given files belong to",
        description=(
            "Find the model directory (the nearest one holding an MLmodel) of each FILE and "
            "check each model once: 'deps' reads its environment files and fails on a stale "
            "lock, or with --against FILE compares them with a target environment; 'validate' "
            "runs envkit validate. Exit code: the worst model's."
        ),
    )
    parser.add_argument("--check", choices=("deps", "validate"), required=True)
    parser.add_argument("files", nargs="*", metavar="FILE")
    parser.add_argument("--against", metavar="FILE", help="deps: the target environment file")
    parser.add_argument("--env-manager", default="uv", metavar="NAME", help="validate: backend")
    parser.set_defaults(func=run)


def model_dirs(files: list[str]) -> list[Path]:
    """The model directories the files belong to, each once, in order (a model's
    ``metadata/`` copy, which holds an MLmodel too, belongs to the model)."""
    found: list[Path] = []
    for name in files:
        model = _model_of(Path(name).absolute())
        if model is not None and model not in found:
            found.append(model)
    return found


def _model_of(path: Path) -> Path | None:
    for candidate in [path, *path.parents] if path.is_dir() else path.parents:
        if (candidate / "MLmodel").is_file():
            parent = candidate.parent
            if candidate.name == "metadata" and (parent / "MLmodel").is_file():
                return parent
            return candidate
    return None


def run(args: argparse.Namespace) -> int:
    from envkit.cli import main

    worst = 0
    for model in model_dirs(args.files):
        if args.check == "validate":
            argv = ["validate", str(model), "--env-manager", args.env_manager]
        elif args.against:
            argv = ["deps", str(model), "--check", "--against", args.against]
        else:
            argv = ["deps", str(model)]
        print(f"envkit {' '.join(argv)}", flush=True)
        code = main(argv)
        if args.check == "deps" and not args.against and code == 0:
            code = _stale_lock(model)
        worst = max(worst, code)
    return worst


def _stale_lock(model: Path) -> int:
    from envkit.deps.recorded import read_recorded_environment

    stale = read_recorded_environment(model).stale_lock
    if stale:
        print(f"{model}: requirements.lock is stale ({stale}): run envkit lock {model}")
        return 1
    return 0
