"""Compare a model's recorded requirements with the running interpreter, once per model.

``ENVKIT_DEPENDENCY_MISMATCH=ignore|warn|error`` (default ``warn``) sets the severity of the
check :func:`envkit.pyfunc.load_model` runs. What is checked:

* the Python minor version recorded in ``python_env.yaml`` (or ``conda.yaml``);
* every requirement whose environment marker applies here: installed, and its version inside
  the specifier; for ``pkg[extra]`` the distributions the extra pulls in are installed too.

Not mismatches: a dev or local build of envkit itself, distributions the caller says are not
needed to load the model (``mlflow`` for MLflow-written models whose loader envkit replaces, see
:func:`not_needed_for`), URL/path requirements whose distribution is installed, option lines.

The recorded environment is read as ``envkit validate`` reads it
(:func:`envkit.deps.recorded.read_recorded_environment`): ``python_env.yaml`` and the files its
``-r`` lines name, else ``conda.yaml``, else ``requirements.txt``. ``envkit deps`` refuses a
model whose files cannot be read; at load, what cannot be read or parsed is listed in the
grouped warning as not checked, never skipped silently.
"""

from __future__ import annotations

import os
import platform
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envkit.deps.envfiles import installed_version
from envkit.deps.recorded import RecordedEnvironment, read_recorded_environment
from envkit.errors import DependencyMismatchError, UsageError
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
    if not marker_applies(req):
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


def marker_applies(requirement: Any) -> bool:
    """Whether a requirement (a line, or a parsed ``Requirement``) applies on this platform:
    no marker, or one this interpreter meets. A line that does not parse, or a marker that
    cannot be evaluated here, counts as applying (never silently skipped as satisfied)."""
    from packaging.requirements import InvalidRequirement, Requirement

    if isinstance(requirement, str):
        try:
            requirement = Requirement(requirement.split(" --hash", 1)[0].strip())
        except InvalidRequirement:
            return True
    if requirement.marker is None:
        return True
    try:
        return bool(requirement.marker.evaluate({"extra": ""}))
    except Exception:
        return True


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


@dataclass
class EnvironmentCheck:
    """The outcome of comparing a model's recorded environment with this interpreter.

    ``unchecked`` lists (one line each) what could not be compared: a requirement line that does
    not parse, a recorded file that is missing or invalid.
    """

    mismatches: list[Mismatch] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.mismatches or self.unchecked)


def check_environment(
    model_dir: str | os.PathLike[str],
    model: Model | None = None,
    *,
    not_needed: Collection[str] = (),
) -> EnvironmentCheck:
    """Compare what the model at ``model_dir`` records with this interpreter (never raises for
    a broken file: it is reported in ``unchecked``)."""
    recorded = read_recorded_environment(model_dir, model, lenient=True, with_lock=False)
    return check_recorded(recorded, not_needed=not_needed)


def check_recorded(
    recorded: RecordedEnvironment, *, not_needed: Collection[str] = ()
) -> EnvironmentCheck:
    """Compare a recorded environment with this interpreter; what could not be read when it was
    read is ``unchecked``."""
    from packaging.utils import canonicalize_name

    skip = {str(canonicalize_name(name)) for name in not_needed}
    result = EnvironmentCheck(unchecked=list(recorded.problems))
    current = platform.python_version()
    if recorded.python and recorded.python.split(".")[:2] != current.split(".")[:2]:
        result.mismatches.append(Mismatch("python", current, recorded.python))
    for line in recorded.lines:
        mismatch = check_requirement(line)
        if mismatch is None:
            continue
        if str(canonicalize_name(mismatch.name.split("[", 1)[0])) in skip:
            continue
        result.mismatches.append(mismatch)
    return result


def find_mismatches(
    model_dir: str | os.PathLike[str], *, not_needed: Collection[str] = ()
) -> list[Mismatch]:
    """Requirements of the model at ``model_dir`` that this interpreter does not satisfy.

    ``not_needed`` names distributions the model records but envkit does not need to load it
    (see :func:`not_needed_for`). What cannot be checked is left out (see
    :func:`check_environment`).
    """
    return check_environment(model_dir, not_needed=not_needed).mismatches


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
        # (the value itself is not repeated: values of environment variables are never shown)
        raise UsageError(f"{POLICY_VARIABLE} must be one of ignore, warn, error")
    return value


def format_mismatches(mismatches: list[Mismatch], unchecked: Sequence[str] = ()) -> str:
    """The grouped warning: one line per mismatch, then what could not be checked."""
    listing = "".join(f"\n - {m}" for m in mismatches)
    listing += "".join(f"\n - not checked: {problem}" for problem in unchecked)
    head = (
        "the model's recorded requirements do not match this environment:"
        if mismatches
        else "the model's recorded requirements cannot all be checked:"
    )
    return (
        f"{head}{listing}\nPredictions may differ or fail. Install the recorded versions (the file "
        "envkit.pyfunc.get_model_dependencies(MODEL) returns), or check the model in a rebuilt "
        f"environment with `envkit validate MODEL`; {POLICY_VARIABLE}=ignore silences this"
    )


def format_mismatch_error(mismatches: list[Mismatch], unchecked: Sequence[str] = ()) -> str:
    """The same in one line, for :class:`~envkit.errors.DependencyMismatchError`."""
    items = [str(m) for m in mismatches] + [f"not checked: {p}" for p in unchecked]
    head = (
        "the model's recorded requirements do not match this environment"
        if mismatches
        else "the model's recorded requirements cannot all be checked"
    )
    return (
        f"{head}: {'; '.join(items)}. Install the recorded versions, or check the model with "
        f"`envkit validate MODEL`; {POLICY_VARIABLE}=warn or ignore lets it load"
    )


def check_model_requirements(
    model_dir: str | os.PathLike[str], model: Model, *, not_needed: Collection[str] = ()
) -> list[Mismatch]:
    """Report mismatches of a model being loaded: one grouped warning per model per process.

    What cannot be checked (an invalid requirement line, a broken ``python_env.yaml``) is listed
    in the same warning. Under ``ENVKIT_DEPENDENCY_MISMATCH=error`` either raises
    :class:`~envkit.errors.DependencyMismatchError`.
    """
    policy = mismatch_policy()
    if policy == "ignore":
        return []
    check = check_environment(model_dir, model, not_needed=not_needed)
    if not check:
        return []
    if policy == "error":
        raise DependencyMismatchError(format_mismatch_error(check.mismatches, check.unchecked))
    key = model.model_uuid or str(Path(model_dir).resolve())
    if key not in _reported:
        _reported.add(key)
        # check_model_requirements <- load_model <- the caller of load_model
        warnings.warn(
            format_mismatches(check.mismatches, check.unchecked),
            DependencyMismatchWarning,
            stacklevel=3,
        )
    return check.mismatches
