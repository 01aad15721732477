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
(:func:`read_recorded_environment`): ``python_env.yaml`` and the files its ``-r`` lines name,
else ``conda.yaml``, else ``requirements.txt``. ``envkit deps`` refuses a model whose files
cannot be read; at load, what cannot be read or parsed is listed in the grouped warning as not
checked, never skipped silently.
"""

from __future__ import annotations

import os
import platform
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envkit.deps.envfiles import (
    CONDA_ENV_FILE,
    PYTHON_ENV_FILE,
    REQUIREMENTS_FILE,
    PythonEnv,
    installed_version,
    parse_requirement_line,
    read_conda_env,
    read_requirements_file,
)
from envkit.errors import DependencyMismatchError, EnvkitError, ModelFormatError, UsageError
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


@dataclass
class RecordedEnvironment:
    """What a model records about its environment.

    ``problems`` (one line each) says what could not be read or parsed; it is only filled when
    reading leniently, otherwise those raise.
    """

    python: str | None
    requirements: list[str]
    source: str | None = None  # e.g. "python_env.yaml + requirements.txt"
    problems: list[str] = field(default_factory=list)


def _env_file_names(model: Model | None) -> tuple[str, str]:
    """(python_env, conda) file names: what ``python_function.env`` names, else the defaults."""
    env: Any = None
    if model is not None:
        env = (model.flavors.get("python_function") or {}).get("env")
    if not isinstance(env, dict):
        env = {}
    return str(env.get("virtualenv") or PYTHON_ENV_FILE), str(env.get("conda") or CONDA_ENV_FILE)


def read_recorded_environment(
    model_dir: str | os.PathLike[str],
    model: Model | None = None,
    *,
    lenient: bool = False,
) -> RecordedEnvironment:
    """The Python version and requirement lines the model at ``model_dir`` records.

    Read as ``envkit validate`` does: ``python_env.yaml`` (the files named by its ``-r`` lines
    hold the requirements), else ``conda.yaml`` (its pip section), else ``requirements.txt``
    (with the Python version of the MLmodel). Raises :class:`~envkit.errors.EnvkitError` for a
    file that is missing, unreadable or invalid; with ``lenient`` those are listed in
    ``problems`` instead, and the rest is read (a broken ``python_env.yaml`` falls back to
    ``requirements.txt``).
    """
    from envkit._fs import resolve_inside

    model_dir = Path(model_dir)
    problems: list[str] = []
    sink = problems if lenient else None
    python_env_name, conda_name = _env_file_names(model)

    def problem(exc: EnvkitError) -> None:
        if not lenient:
            raise exc
        problems.append(exc.message)

    def model_file(name: str) -> Path | None:
        try:
            return resolve_inside(model_dir, name)
        except EnvkitError as exc:
            problem(exc)
            return None

    python_env_path = model_file(python_env_name)
    conda_path = model_file(conda_name)
    requirements_path = model_dir / REQUIREMENTS_FILE
    if python_env_path is not None and python_env_path.is_file():
        try:
            env = PythonEnv.from_yaml(python_env_path)
        except EnvkitError as exc:
            problem(exc)
        else:
            lines: list[str] = []
            sources = [python_env_name]
            for dep in env.dependencies:
                dep = dep.strip()
                if dep.startswith(("-r ", "--requirement ")):
                    name = dep.split(None, 1)[1].strip()
                    path = model_file(name)
                    if path is None:
                        continue
                    if not path.is_file():
                        problem(
                            ModelFormatError(
                                f"{name}, which {python_env_name} names, is missing from the "
                                f"model at {model_dir}"
                            )
                        )
                        continue
                    lines.extend(read_requirements_file(path, problems=sink))
                    sources.append(name)
                    continue
                try:
                    parsed = parse_requirement_line(dep, source=f"dependency in {python_env_name}")
                except EnvkitError as exc:
                    problem(exc)
                    continue
                if parsed:
                    lines.append(parsed)
            return RecordedEnvironment(env.python, lines, " + ".join(sources), problems)
        # python_env.yaml is broken (lenient): check what requirements.txt lists, at least.
        if requirements_path.is_file():
            lines = read_requirements_file(requirements_path, problems=sink)
            return RecordedEnvironment(None, lines, REQUIREMENTS_FILE, problems)
        return RecordedEnvironment(None, [], None, problems)
    if conda_path is not None and conda_path.is_file():
        try:
            python, pip_lines = read_conda_env(conda_path)
        except EnvkitError as exc:
            problem(exc)
            return RecordedEnvironment(None, [], None, problems)
        lines = []
        for position, raw in enumerate(pip_lines):
            try:
                parsed = parse_requirement_line(
                    raw, source=f"pip requirement in {conda_name}[{position}]"
                )
            except EnvkitError as exc:
                problem(exc)
                continue
            if parsed:
                lines.append(parsed)
        return RecordedEnvironment(python, lines, conda_name, problems)
    if requirements_path.is_file():
        python = None
        if model is not None:
            hint = (model.flavors.get("python_function") or {}).get("python_version")
            python = str(hint) if hint else None
        lines = read_requirements_file(requirements_path, problems=sink)
        return RecordedEnvironment(python, lines, REQUIREMENTS_FILE, problems)
    if not lenient:
        raise ModelFormatError(
            f"the model at {model_dir} records no environment ({python_env_name}, {conda_name} "
            f"and {REQUIREMENTS_FILE} are missing); re-save it with envkit or MLflow, or "
            "re-capture it with `envkit infer MODEL --write`"
        )
    return RecordedEnvironment(None, [], None, problems)


def recorded_requirements(model_dir: str | os.PathLike[str]) -> list[str]:
    """The model's requirement lines (see :func:`read_recorded_environment`; raises when a
    file is missing or invalid)."""
    return read_recorded_environment(model_dir).requirements


def recorded_python(model_dir: str | os.PathLike[str]) -> str | None:
    """The Python version the model was saved with (python_env.yaml, else conda.yaml), or None
    when it cannot be read."""
    try:
        return read_recorded_environment(model_dir, lenient=True).python
    except EnvkitError:
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
    from packaging.utils import canonicalize_name

    skip = {str(canonicalize_name(name)) for name in not_needed}
    recorded = read_recorded_environment(model_dir, model, lenient=True)
    result = EnvironmentCheck(unchecked=list(recorded.problems))
    current = platform.python_version()
    if recorded.python and recorded.python.split(".")[:2] != current.split(".")[:2]:
        result.mismatches.append(Mismatch("python", current, recorded.python))
    for line in recorded.requirements:
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
