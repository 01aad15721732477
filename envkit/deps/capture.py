"""Decide a model's requirements at save time and write its environment files.

First version: the flavor's own requirements (pinned) plus the user's. Inference of what the
model imports (in a subprocess) builds on this interface.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envkit.deps.envfiles import (
    parse_requirement_line,
    read_requirements_file,
    write_environment_files,
)
from envkit.models.model import Model


@dataclass
class UserRequirements:
    """What the user asked for: ``replace`` (pip_requirements) or ``extra`` requirements."""

    mode: str | None = None
    requirements: list[str] = field(default_factory=list)


def _as_lines(value: Sequence[str] | str | os.PathLike[str], what: str) -> list[str]:
    if isinstance(value, (str, os.PathLike)):
        return read_requirements_file(Path(value))
    lines = []
    for item in value:
        parsed = parse_requirement_line(str(item), source=f"requirement in {what}")
        if parsed is not None:
            lines.append(parsed)
    return lines


def check_user_requirements(
    pip_requirements: Sequence[str] | str | os.PathLike[str] | None,
    extra_pip_requirements: Sequence[str] | str | os.PathLike[str] | None,
) -> UserRequirements:
    """Parse the user's requirements up front so a bad line fails before anything is written."""
    if pip_requirements is not None:
        return UserRequirements("replace", _as_lines(pip_requirements, "pip_requirements"))
    if extra_pip_requirements is not None:
        return UserRequirements(
            "extra", _as_lines(extra_pip_requirements, "extra_pip_requirements")
        )
    return UserRequirements()


@dataclass
class CapturedEnvironment:
    requirements: list[str]
    env_var_names: list[str] = field(default_factory=list)

    def write(self, model_dir: Path, model: Model) -> None:
        write_environment_files(model_dir, self.requirements)
        conf = model.flavors.get("python_function")
        if conf is not None:
            conf["env"] = {"conda": "conda.yaml", "virtualenv": "python_env.yaml"}


def capture_environment(
    model_dir: Path,
    model: Model,
    *,
    default_requirements: list[str],
    user_requirements: UserRequirements,
    code_dir: str | None,
    has_input_example: bool,
    strict: bool,
    **_: Any,
) -> CapturedEnvironment:
    if user_requirements.mode == "replace":
        return CapturedEnvironment(list(user_requirements.requirements))
    return CapturedEnvironment(default_requirements + list(user_requirements.requirements))
