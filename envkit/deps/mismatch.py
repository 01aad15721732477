"""Compare a model's recorded requirements with the running interpreter, once per model.

``ENVKIT_DEPENDENCY_MISMATCH=ignore|warn|error`` (default ``warn``) sets the severity of the
check :func:`envkit.pyfunc.load_model` runs. What is checked:

* the Python minor version recorded in ``python_env.yaml`` (or ``conda.yaml``);
* every requirement whose environment marker applies here: installed, and its version inside
  the specifier; for ``pkg[extra]`` the distributions the extra pulls in are installed too.

Not mismatches: a dev or local build of envkit itself, distributions the caller says are not
needed to load the model (``mlflow`` for MLflow-written models whose loader envkit replaces, see
:func:`not_needed_for`), URL/path requirements whose distribution is installed, option lines.
"""

from __future__ import annotations

import os
import platform
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from envkit.deps.envfiles import (
    CONDA_ENV_FILE,
    PYTHON_ENV_FILE,
    REQUIREMENTS_FILE,
    PythonEnv,
    installed_version,
    read_conda_env,
    read_requirements_file,
)
from envkit.errors import DependencyMismatchError, EnvkitError, UsageError
from envkit.models.model import Model

POLICY_VARIABLE = "ENVKIT_DEPENDENCY_MISMATCH"

_reported: set[str] = set()


class DependencyMismatchWarning(UserWarning):
    """The running environment does not satisfy a loaded model's requirements."""


@dataclass(frozen=True)
class Mismatch:
    """One unsatisfied requirement: ``scikit-learn (current: 1.5.0, required: ...)``."""

    name: str
    current: str | None
    required: str

    def __str__(self) -> str:
        return f"{self.name} (current: {self.current or 'uninstalled'}, required: {self.required})"

    def to_dict(self) -> dict[str, str | None]:
        return {"name": self.name, "current": self.current, "required": self.required}


def recorded_requirements(model_dir: str | os.PathLike[str]) -> list[str]:
    """The model's requirement lines: ``requirements.txt``, else the pip section of conda.yaml."""
    model_dir = Path(model_dir)
    req_file = model_dir / REQUIREMENTS_FILE
    if req_file.is_file():
        return read_requirements_file(req_file)
    conda_file = model_dir / CONDA_ENV_FILE
    if conda_file.is_file():
        return read_conda_env(conda_file)[1]
    return []


def recorded_python(model_dir: str | os.PathLike[str]) -> str | None:
    """The Python version the model was saved with (python_env.yaml, else conda.yaml)."""
    model_dir = Path(model_dir)
    try:
        if (model_dir / PYTHON_ENV_FILE).is_file():
            return PythonEnv.from_yaml(model_dir / PYTHON_ENV_FILE).python
        if (model_dir / CONDA_ENV_FILE).is_file():
            return read_conda_env(model_dir / CONDA_ENV_FILE)[0]
    except EnvkitError:
        return None
    return None


def check_requirement(line: str) -> Mismatch | None:
    """The mismatch of one requirement line with this interpreter, or None when satisfied."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    if line.startswith("-"):
        return None
    try:
        req = Requirement(line.split(" --hash", 1)[0].strip())
    except InvalidRequirement:
        return None  # a path or URL without a name: nothing to compare
    if req.marker is not None:
        try:
            if not req.marker.evaluate({"extra": ""}):
                return None
        except Exception:
            return None
    name = str(canonicalize_name(req.name))
    version = installed_version(req.name)
    if version is None:
        return Mismatch(req.name, None, line)
    if name == "envkit" and _is_dev_version(version):
        return None
    if req.specifier and not req.url:
        try:
            satisfied = req.specifier.contains(Version(version), prereleases=True)
        except InvalidVersion:
            satisfied = False
        if not satisfied:
            return Mismatch(req.name, version, line)
    for extra in sorted(req.extras):
        missing = _missing_extra_requirements(req.name, extra)
        if missing:
            return Mismatch(f"{req.name}[{extra}]", f"{version} without {', '.join(missing)}", line)
    return None


def _missing_extra_requirements(name: str, extra: str) -> list[str]:
    from importlib import metadata as importlib_metadata

    from packaging.requirements import InvalidRequirement, Requirement

    try:
        requires = importlib_metadata.requires(name) or []
    except importlib_metadata.PackageNotFoundError:
        return []
    missing = []
    for line in requires:
        try:
            dep = Requirement(line)
        except InvalidRequirement:
            continue
        if dep.marker is None:
            continue
        try:
            if not dep.marker.evaluate({"extra": extra}) or dep.marker.evaluate({"extra": ""}):
                continue
        except Exception:
            continue
        if installed_version(dep.name) is None:
            missing.append(dep.name)
    return missing


def not_needed_for(model: Model) -> tuple[str, ...]:
    """Distributions ``model`` records that envkit does not need to load it.

    A model MLflow wrote lists ``mlflow`` because MLflow's loader lives there; when envkit maps
    that loader to its own (``mlflow.sklearn`` -> ``envkit.sklearn``), mlflow is not needed.
    A cloudpickled ``mlflow.pyfunc.PythonModel`` still needs MLflow's classes.
    """
    from envkit.models.flavors import envkit_loader_for

    loader = str((model.flavors.get("python_function") or {}).get("loader_module") or "")
    if not loader.startswith("mlflow."):
        return ()
    mapped = envkit_loader_for(loader)
    replaced = mapped != loader and mapped != "envkit.pyfunc.mlflow_compat"
    return ("mlflow",) if replaced else ()


def find_mismatches(
    model_dir: str | os.PathLike[str], *, not_needed: Collection[str] = ()
) -> list[Mismatch]:
    """Requirements of the model at ``model_dir`` that this interpreter does not satisfy.

    ``not_needed`` names distributions the model records but envkit does not need to load it
    (see :func:`not_needed_for`).
    """
    from packaging.utils import canonicalize_name

    skip = {str(canonicalize_name(name)) for name in not_needed}
    model_dir = Path(model_dir)
    result: list[Mismatch] = []
    recorded = recorded_python(model_dir)
    current = platform.python_version()
    if recorded and recorded.split(".")[:2] != current.split(".")[:2]:
        result.append(Mismatch("python", current, recorded))
    try:
        lines = recorded_requirements(model_dir)
    except EnvkitError:
        return result
    for line in lines:
        mismatch = check_requirement(line)
        if mismatch is None:
            continue
        if str(canonicalize_name(mismatch.name.split("[", 1)[0])) in skip:
            continue
        result.append(mismatch)
    return result


def _is_dev_version(version: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        parsed = Version(version)
    except InvalidVersion:
        return True
    return parsed.is_devrelease or parsed.local is not None


def mismatch_policy() -> str:
    """``ENVKIT_DEPENDENCY_MISMATCH``: ignore, warn (default) or error."""
    value = os.environ.get(POLICY_VARIABLE, "warn").strip().lower() or "warn"
    if value not in ("ignore", "warn", "error"):
        raise UsageError(f"{POLICY_VARIABLE}={value!r} is not one of ignore, warn, error")
    return value


def format_mismatches(mismatches: list[Mismatch]) -> str:
    listing = "".join(f"\n - {m}" for m in mismatches)
    return (
        "the model's recorded requirements do not match this environment:"
        f"{listing}\nPredictions may differ or fail. Install the recorded versions (the file "
        "envkit.pyfunc.get_model_dependencies(MODEL) returns), or check the model in a rebuilt "
        f"environment with `envkit validate MODEL`; {POLICY_VARIABLE}=ignore silences this"
    )


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
    message = format_mismatches(mismatches)
    if policy == "error":
        raise DependencyMismatchError(message)
    key = model.model_uuid or str(Path(model_dir).resolve())
    if key not in _reported:
        _reported.add(key)
        # check_model_requirements <- load_model <- the caller of load_model
        warnings.warn(message, DependencyMismatchWarning, stacklevel=3)
    return mismatches
