"""Compare a model's recorded requirements with the running interpreter, once per model.

``ENVKIT_DEPENDENCY_MISMATCH=ignore|warn|error`` (default ``warn``) sets the severity. A dev
build of envkit itself is not a mismatch.
"""

from __future__ import annotations

import os
import platform
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from envkit.deps.envfiles import (
    PYTHON_ENV_FILE,
    REQUIREMENTS_FILE,
    PythonEnv,
    installed_version,
    read_requirements_file,
)
from envkit.errors import DependencyMismatchError, EnvkitError, UsageError
from envkit.models.model import Model

_reported: set[str] = set()


class DependencyMismatchWarning(UserWarning):
    """The running environment does not satisfy a loaded model's requirements."""


@dataclass(frozen=True)
class Mismatch:
    name: str
    current: str | None
    required: str

    def __str__(self) -> str:
        return f"{self.name} (current: {self.current or 'uninstalled'}, required: {self.required})"


def find_mismatches(
    model_dir: str | os.PathLike[str], *, not_needed: Collection[str] = ()
) -> list[Mismatch]:
    """Requirements of the model at ``model_dir`` that this interpreter does not satisfy.

    ``not_needed`` names distributions the model records but envkit does not need to load it
    (``mlflow`` for MLflow-written models whose loader envkit replaces).
    """
    from packaging.utils import canonicalize_name

    skip = {canonicalize_name(name) for name in not_needed}
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version

    model_dir = Path(model_dir)
    result: list[Mismatch] = []
    env_file = model_dir / PYTHON_ENV_FILE
    if env_file.is_file():
        try:
            recorded = PythonEnv.from_yaml(env_file).python
        except EnvkitError:
            recorded = ""
        current = platform.python_version()
        if recorded and recorded.split(".")[:2] != current.split(".")[:2]:
            result.append(Mismatch("python", current, recorded))
    req_file = model_dir / REQUIREMENTS_FILE
    if not req_file.is_file():
        return result
    for line in read_requirements_file(req_file):
        if line.startswith("-"):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is not None and not req.marker.evaluate():
            continue
        if canonicalize_name(req.name) in skip:
            continue
        version = installed_version(req.name)
        if version is None:
            result.append(Mismatch(req.name, None, line))
            continue
        if not req.specifier:
            continue
        if req.name.lower() == "envkit" and _is_dev_version(version):
            continue
        try:
            satisfied = req.specifier.contains(Version(version), prereleases=True)
        except InvalidVersion:
            satisfied = False
        if not satisfied:
            result.append(Mismatch(req.name, version, line))
    return result


def _is_dev_version(version: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        parsed = Version(version)
    except InvalidVersion:
        return True
    return parsed.is_devrelease or parsed.local is not None


def mismatch_policy() -> str:
    value = os.environ.get("ENVKIT_DEPENDENCY_MISMATCH", "warn").strip().lower() or "warn"
    if value not in ("ignore", "warn", "error"):
        raise UsageError(f"ENVKIT_DEPENDENCY_MISMATCH={value!r} is not one of ignore, warn, error")
    return value


def check_model_requirements(
    model_dir: str | os.PathLike[str], model: Model, *, not_needed: Collection[str] = ()
) -> list[Mismatch]:
    """Report mismatches of a model being loaded: one grouped warning per model per process."""
    policy = mismatch_policy()
    if policy == "ignore":
        return []
    mismatches = find_mismatches(model_dir, not_needed=not_needed)
    if not mismatches:
        return []
    listing = "; ".join(str(m) for m in mismatches)
    message = (
        f"the model's recorded requirements do not match this environment: {listing}. "
        "Predictions may differ or fail; rebuild the environment with "
        "`envkit validate MODEL` or install the recorded versions"
    )
    if policy == "error":
        raise DependencyMismatchError(message)
    key = model.model_uuid or str(Path(model_dir).resolve())
    if key not in _reported:
        _reported.add(key)
        warnings.warn(message, DependencyMismatchWarning, stacklevel=4)
    return mismatches
