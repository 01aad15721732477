"""Read and write a model's environment files in MLflow's exact formats.

``requirements.txt`` (one requirement per line, no trailing newline), ``python_env.yaml``,
``conda.yaml``, ``constraints.txt``; see ``shared/reference/samples`` for what MLflow writes.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import yaml

from envkit.deps.requirements import first_line
from envkit.errors import InvalidRequirementError

REQUIREMENTS_FILE = "requirements.txt"
CONSTRAINTS_FILE = "constraints.txt"
PYTHON_ENV_FILE = "python_env.yaml"
CONDA_ENV_FILE = "conda.yaml"
ENV_VARS_FILE = "environment_variables.txt"
LOCK_FILE = "requirements.lock"
PROVENANCE_FILE = "requirements.provenance.json"

# Files copied into metadata/ when they exist (MLflow copies the first four).
METADATA_FILES = (
    "MLmodel",
    CONDA_ENV_FILE,
    PYTHON_ENV_FILE,
    REQUIREMENTS_FILE,
    CONSTRAINTS_FILE,
    ENV_VARS_FILE,
    LOCK_FILE,
    PROVENANCE_FILE,
)

CONDA_ENV_NAME = "envkit-env"


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution`` in this interpreter, or None."""
    try:
        return importlib_metadata.version(distribution)
    except importlib_metadata.PackageNotFoundError:
        return None


def pin_installed(distribution: str) -> str:
    """``name==<installed version>``, or the bare name when it is not installed."""
    version = installed_version(distribution)
    return f"{distribution}=={version}" if version else distribution


@dataclass
class PythonEnv:
    """The content of ``python_env.yaml``."""

    python: str
    build_dependencies: list[str] = field(default_factory=list)
    dependencies: list[str] = field(default_factory=lambda: [f"-r {REQUIREMENTS_FILE}"])

    @classmethod
    def current(cls) -> PythonEnv:
        """This interpreter: full Python version and pip/setuptools/wheel as installed."""
        return cls(
            python=platform.python_version(),
            build_dependencies=[pin_installed(name) for name in ("pip", "setuptools", "wheel")],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "python": self.python,
            "build_dependencies": list(self.build_dependencies),
            "dependencies": list(self.dependencies),
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), default_flow_style=False, sort_keys=False)

    @classmethod
    def from_yaml(cls, path: str | Path) -> PythonEnv:
        data = _read_yaml_mapping(Path(path))
        python = data.get("python")
        if not python:
            raise InvalidRequirementError(f"{path} does not say which Python to use ('python:')")
        if isinstance(python, float):
            raise InvalidRequirementError(_unquoted_python(Path(path), python))
        return cls(
            python=str(python),
            build_dependencies=[str(d) for d in data.get("build_dependencies") or []],
            dependencies=[str(d) for d in data.get("dependencies") or []],
        )


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error in one line: ``(line N): <problem>`` (PyYAML's own text spans several)."""
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1})" if mark is not None else ""
    problem = getattr(exc, "problem", None) or first_line(str(exc))
    return f"{where}: {first_line(str(problem))}"


def _unquoted_python(path: Path, value: float) -> str:
    """What to say when YAML read ``python: 3.10`` as the float 3.1."""
    try:
        found = re.search(r"^python:\s*([0-9][0-9.]*)\s*$", path.read_text("utf-8"), re.M)
    except (OSError, UnicodeDecodeError):
        found = None
    written = found.group(1) if found else str(value)
    return (
        f"{path}: 'python: {written}' was read as the float {value!r}; quote the version: "
        f'python: "{written}"'
    )


def _read_yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        from envkit._parsing import load_yaml

        data = load_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InvalidRequirementError(f"{path} does not exist") from exc
    except OSError as exc:
        raise InvalidRequirementError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidRequirementError(f"{path} is not UTF-8 text") from exc
    except yaml.YAMLError as exc:
        raise InvalidRequirementError(f"{path} is not valid YAML{yaml_problem(exc)}") from exc
    if not isinstance(data, dict):
        raise InvalidRequirementError(f"{path} must be a YAML mapping")
    return data


def conda_env_dict(
    requirements: Sequence[str],
    *,
    python_version: str | None = None,
    pip_version: str | None = None,
) -> dict[str, Any]:
    """The ``conda.yaml`` mapping: ``python=``, a ``pip<=`` pin and the pip section."""
    python_version = python_version or platform.python_version()
    pip_version = pip_version if pip_version is not None else installed_version("pip")
    deps: list[Any] = [f"python={python_version}", f"pip<={pip_version}" if pip_version else "pip"]
    if requirements:
        deps.append({"pip": list(requirements)})
    return {"channels": ["conda-forge"], "dependencies": deps, "name": CONDA_ENV_NAME}


@dataclass(frozen=True)
class CondaEnv:
    """What a ``conda.yaml`` records: the Python version, the pip section, the other
    dependencies (conda packages, ``python=`` left out) and the channels."""

    python: str | None = None
    pip: tuple[str, ...] = ()
    dependencies: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()

    @classmethod
    def from_yaml(cls, path: str | Path) -> CondaEnv:
        data = _read_yaml_mapping(Path(path))
        python = None
        pip: list[str] = []
        others: list[str] = []
        for dep in data.get("dependencies") or []:
            if isinstance(dep, dict) and "pip" in dep:
                pip.extend(str(r) for r in dep["pip"] or [])
            elif isinstance(dep, str) and re.match(r"python\s*[=<>~]", dep):
                if dep[6:7] in ("=", "<", ">", "~"):  # ("python >=3.9" is left unread)
                    python = dep.split("=")[-1].strip() or None
            elif isinstance(dep, str):
                others.append(dep.strip())
        channels = tuple(str(c) for c in data.get("channels") or [])
        return cls(python, tuple(pip), tuple(others), channels)


def format_requirements(requirements: Iterable[str]) -> str:
    """requirements.txt content as MLflow writes it: one per line, no trailing newline."""
    return "\n".join(requirements)


def write_environment_files(
    model_dir: str | Path,
    requirements: Sequence[str],
    *,
    constraints: Sequence[str] | None = None,
    python_env: PythonEnv | None = None,
) -> None:
    """Write requirements.txt, python_env.yaml, conda.yaml (and constraints.txt) into a model."""
    model_dir = Path(model_dir)
    reqs = list(requirements)
    if constraints:
        (model_dir / CONSTRAINTS_FILE).write_text("\n".join(constraints), encoding="utf-8")
        line = f"-c {CONSTRAINTS_FILE}"
        if line not in reqs:
            reqs.append(line)
    env = python_env or PythonEnv.current()
    (model_dir / REQUIREMENTS_FILE).write_text(format_requirements(reqs), encoding="utf-8")
    (model_dir / PYTHON_ENV_FILE).write_text(env.to_yaml(), encoding="utf-8")
    pip_version = next(
        (d.split("==", 1)[1] for d in env.build_dependencies if d.startswith("pip==")), None
    )
    conda = conda_env_dict(reqs, python_version=env.python, pip_version=pip_version)
    (model_dir / CONDA_ENV_FILE).write_text(
        yaml.safe_dump(conda, default_flow_style=False), encoding="utf-8"
    )


def copy_metadata(model_dir: str | Path) -> None:
    """Copy MLmodel and the environment files into ``metadata/`` (replacing what was there)."""
    import shutil

    model_dir = Path(model_dir)
    meta = model_dir / "metadata"
    if meta.exists():
        shutil.rmtree(meta)
    meta.mkdir()
    for name in METADATA_FILES:
        source = model_dir / name
        if source.is_file():
            shutil.copy2(source, meta / name)


def user_conda_env(conda_env: dict[str, Any] | str | Path) -> dict[str, Any]:
    """The ``conda_env`` a user passed to ``save_model`` (a mapping or a YAML file), as a
    mapping; its pip section is the model's pip requirements (as MLflow)."""
    if isinstance(conda_env, dict):
        data = dict(conda_env)
    elif isinstance(conda_env, (str, Path)):
        data = _read_yaml_mapping(Path(conda_env))
    else:
        from envkit.errors import UsageError

        raise UsageError(
            "conda_env must be a dict or the path of a conda YAML file, "
            f"not {type(conda_env).__name__}"
        )
    if not isinstance(data.get("dependencies") or [], list):
        raise InvalidRequirementError("conda_env: 'dependencies' must be a list")
    return data


def conda_pip_requirements(conda_env: dict[str, Any]) -> list[str]:
    """The pip section of a conda environment mapping."""
    pip: list[str] = []
    for dep in conda_env.get("dependencies") or []:
        if isinstance(dep, dict) and "pip" in dep:
            pip.extend(str(r) for r in dep["pip"] or [])
    return pip


def write_user_conda_env(
    model_dir: str | Path, conda_env: dict[str, Any], requirements: Sequence[str]
) -> None:
    """Write the user's conda environment as the model's ``conda.yaml``, its pip section
    replaced by the model's final requirements (as MLflow's ``_overwrite_pip_deps``)."""
    deps = [
        d for d in conda_env.get("dependencies") or [] if not (isinstance(d, dict) and "pip" in d)
    ]
    if requirements:
        if not any(isinstance(d, str) and re.match(r"pip\b", d) for d in deps):
            deps.append("pip")
        deps.append({"pip": list(requirements)})
    data = {**conda_env, "dependencies": deps}
    (Path(model_dir) / CONDA_ENV_FILE).write_text(
        yaml.safe_dump(data, default_flow_style=False), encoding="utf-8"
    )
