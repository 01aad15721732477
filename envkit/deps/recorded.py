"""What a model records about its environment: :class:`RecordedEnvironment`, and
:func:`read_recorded_environment`, the one reader of a model's environment files.

Which file wins, as MLflow decides and as ``envkit validate`` builds environments:

1. ``python_env.yaml``: the Python version and build dependencies; its ``dependencies`` (with
   the files its ``-r`` lines name) hold the requirements, pinned by a current
   ``requirements.lock`` when there is one (a lock its requirements outgrew is refused);
2. else ``conda.yaml``: the Python version, the pip section, conda dependencies and channels;
3. else ``requirements.txt``, with the Python version of the MLmodel.

The conda manager reads ``conda.yaml`` instead (``conda=True``). The file names are those of the
MLmodel's ``python_function.env`` (:class:`EnvFileNames`). The sandbox's ``EnvSpec``, the
load-time mismatch check, ``envkit deps``, ``envkit lock`` and ``envkit info`` all read through
here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envkit.deps.envfiles import (
    CONDA_ENV_FILE,
    CONSTRAINTS_FILE,
    LOCK_FILE,
    PYTHON_ENV_FILE,
    REQUIREMENTS_FILE,
    CondaEnv,
    PythonEnv,
)
from envkit.deps.requirements import (
    INCLUDE_OPTIONS,
    RequirementLines,
    RequirementsReader,
    option_name,
    option_value,
    split_hashes,
)
from envkit.errors import (
    EnvkitError,
    InvalidRequirementError,
    ModelFormatError,
    NoRecordedEnvironmentError,
    StaleLockError,
)

if TYPE_CHECKING:
    from envkit.models.model import Model

__all__ = [
    "KIND_CONDA",
    "KIND_PYTHON_ENV",
    "KIND_REQUIREMENTS",
    "RUNNING_PYTHON",
    "EnvFileNames",
    "RecordedEnvironment",
    "RecordedLock",
    "input_digest",
    "read_recorded_environment",
    "stale_lock_reason",
]

# RecordedEnvironment.kind: the file that won.
KIND_PYTHON_ENV = "python_env"
KIND_CONDA = "conda"
KIND_REQUIREMENTS = "requirements"
# RecordedEnvironment.python_from when the version is the MLmodel's python_version.
MLMODEL = "MLmodel"
# RecordedEnvironment.python_from when nothing records a version: a model with only
# requirements.txt is built for the running interpreter's Python, as MLflow does.
RUNNING_PYTHON = "running Python"

# The header line of a requirements.lock that ties it to the requirements it was compiled from.
DIGEST_PREFIX = "# envkit-lock-input-sha256: "


@dataclass(frozen=True)
class EnvFileNames:
    """Where a model records its environment: the file names of the MLmodel's
    ``python_function.env`` and its ``python_function.python_version``."""

    python_env: str = PYTHON_ENV_FILE
    conda: str = CONDA_ENV_FILE
    python_hint: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, Any] | None, python_hint: Any = None) -> EnvFileNames:
        """From ``python_function.env`` (``virtualenv``, ``conda``) and ``python_version``."""
        env = env if isinstance(env, Mapping) else {}
        return cls(
            python_env=str(env.get("virtualenv") or PYTHON_ENV_FILE),
            conda=str(env.get("conda") or CONDA_ENV_FILE),
            python_hint=str(python_hint) if python_hint else None,
        )

    @classmethod
    def of(cls, model: Model | None) -> EnvFileNames:
        """What ``model``'s MLmodel says (the defaults without one)."""
        conf = model.flavors.get("python_function") if model is not None else None
        if not isinstance(conf, Mapping):
            return cls()
        return cls.from_env(conf.get("env"), conf.get("python_version"))


@dataclass(frozen=True)
class RecordedLock:
    """A current ``requirements.lock``: its lines without their ``--hash`` options, and
    (requirement line, hashes an install accepts) for each hashed requirement."""

    listed: RequirementLines
    hashes: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class RecordedEnvironment:
    """What a model records about its environment (the module doc says which file wins).

    ``kind`` is the file that won (``KIND_*``; None when nothing could be read leniently),
    ``files`` the files read, in order; ``python_from`` names where ``python`` comes from (the
    python_env or conda file, or ``"MLmodel"``; None: no version recorded). ``listed`` holds the
    requirement, option and constraint lines. ``lock`` is a current ``requirements.lock`` (read
    for a ``python_env.yaml`` model, the one kind validation pins with it); ``stale_lock`` says
    why a lock no longer matches. ``problems`` lists what could not be read, one line each
    (lenient reading only: otherwise that raises).
    """

    model_dir: Path
    names: EnvFileNames = field(default_factory=EnvFileNames)
    kind: str | None = None
    files: tuple[str, ...] = ()
    python: str | None = None
    python_from: str | None = None
    listed: RequirementLines = field(default_factory=RequirementLines)
    build_dependencies: tuple[str, ...] = ()
    conda_dependencies: tuple[str, ...] = ()
    conda_channels: tuple[str, ...] = ()
    has_lock_file: bool = False
    lock: RecordedLock | None = None
    stale_lock: str | None = None
    problems: tuple[str, ...] = ()

    @property
    def lines(self) -> tuple[str, ...]:
        """Requirement and option lines as listed (``-r`` files expanded, ``-c`` lines kept)."""
        return self.listed.lines

    @property
    def requirements(self) -> tuple[str, ...]:
        return self.listed.requirements

    @property
    def options(self) -> tuple[str, ...]:
        return self.listed.options

    @property
    def constraints(self) -> tuple[str, ...]:
        return self.listed.constraints

    @property
    def source(self) -> str | None:
        """What was read, e.g. ``"python_env.yaml + requirements.txt"``."""
        if not self.files:
            return None
        head = {
            MLMODEL: "MLmodel python_version + ",
            RUNNING_PYTHON: f"{RUNNING_PYTHON} {self.python} (none recorded) + ",
        }.get(self.python_from or "", "")
        return head + " + ".join(self.files)

    @property
    def origin(self) -> str:
        """The file that lists the requirements (the first requirements file read)."""
        return self.files[1] if len(self.files) > 1 else next(iter(self.files), "")

    def locked(self) -> RecordedLock | None:
        """The current lock that pins this environment, or None; raises
        :class:`~envkit.errors.StaleLockError` for a lock its requirements changed after."""
        if self.stale_lock is not None and self.kind == KIND_PYTHON_ENV:
            # Installing the old pins would pass a model its new requirements may break.
            raise StaleLockError(self.stale_lock)
        return self.lock

    def checked_python(self) -> str:
        """The recorded Python version, validated (``3.11`` or ``3.11.7``); raises
        :class:`~envkit.errors.EnvkitError` when there is none or it is not a version."""
        if self.python is None:
            if self.kind == KIND_CONDA:
                name = Path(self.files[0]).name
                raise InvalidRequirementError(f"{name} does not pin python (python=X.Y)")
            raise no_environment_error(self.model_dir, self.names)
        version = str(self.python).strip()
        if not re.fullmatch(r"\d+(\.\d+){0,2}", version):
            raise InvalidRequirementError(
                f"{self.python_from} records python {version!r}; expected a version like 3.11 "
                "or 3.11.7"
            )
        return version


def read_recorded_environment(
    model_dir: str | os.PathLike[str],
    model: Model | None = None,
    *,
    names: EnvFileNames | None = None,
    lenient: bool = False,
    conda: bool = False,
    with_lock: bool = True,
) -> RecordedEnvironment:
    """The environment the model at ``model_dir`` records (the module doc says which file wins).

    ``names`` (default: what ``model``'s MLmodel says) are the environment file names. Raises
    :class:`~envkit.errors.EnvkitError` for a file that is missing, unreadable or invalid and
    an include that leaves the model; with ``lenient`` those are listed in ``problems`` instead
    and the rest is read (a broken ``python_env.yaml`` falls back to ``requirements.txt``).
    ``conda`` reads ``conda.yaml`` whatever else there is (the conda manager's file);
    ``with_lock=False`` leaves ``requirements.lock`` unread.
    """
    reader = _Reader(Path(model_dir), names or EnvFileNames.of(model), lenient=lenient)
    recorded = reader.read_conda() if conda else reader.read()
    if with_lock:
        recorded = reader.with_lock(recorded)
    return replace(recorded, problems=tuple(reader.problems or ()))


def no_environment_error(model_dir: Path, names: EnvFileNames) -> NoRecordedEnvironmentError:
    return NoRecordedEnvironmentError(
        f"the model at {model_dir} records no environment ({names.python_env}, {names.conda} "
        f"and {REQUIREMENTS_FILE} are missing); re-save it with envkit or MLflow, or "
        "re-capture it with `envkit infer MODEL --write`"
    )


class _Reader:
    """One reading of a model's environment files; ``problems`` is None when strict."""

    def __init__(self, model_dir: Path, names: EnvFileNames, *, lenient: bool) -> None:
        self.model_dir = model_dir
        self.names = names
        self.problems: list[str] | None = [] if lenient else None

    def read(self) -> RecordedEnvironment:
        python_env = self.model_file(self.names.python_env)
        conda = self.model_file(self.names.conda)
        requirements = self.model_dir / REQUIREMENTS_FILE
        if python_env is not None and python_env.is_file():
            # (broken, when reading leniently: what requirements.txt lists is checked, at least)
            return self.from_python_env(python_env) or self.from_requirements(
                requirements, None, running=False
            )
        if conda is not None and conda.is_file():
            return self.from_conda(conda)
        if requirements.is_file():
            return self.from_requirements(requirements, self.names.python_hint)
        if self.problems is None:
            raise no_environment_error(self.model_dir, self.names)
        return RecordedEnvironment(self.model_dir, self.names)  # (nothing to check at load)

    def read_conda(self) -> RecordedEnvironment:
        conda = self.model_file(self.names.conda)
        if conda is not None and conda.is_file():
            return self.from_conda(conda)
        self.fail(
            ModelFormatError(
                f"the model has no {self.names.conda}; the conda manager needs it (use "
                "--env-manager uv, which reads python_env.yaml)"
            )
        )
        return RecordedEnvironment(self.model_dir, self.names)

    def from_python_env(self, path: Path) -> RecordedEnvironment | None:
        try:
            env = PythonEnv.from_yaml(path)
        except EnvkitError as exc:
            self.fail(exc)
            return None
        lines = self.lines()
        files = [self.names.python_env]
        for dependency in env.dependencies:
            self.python_env_dependency(dependency.strip(), lines, files)
        return RecordedEnvironment(
            self.model_dir,
            self.names,
            kind=KIND_PYTHON_ENV,
            files=tuple(files),
            python=env.python,
            python_from=self.names.python_env,
            listed=lines.result(),
            build_dependencies=tuple(env.build_dependencies),
        )

    def python_env_dependency(self, line: str, lines: RequirementsReader, files: list[str]) -> None:
        """One line of python_env.yaml's ``dependencies``; ``-r FILE`` names a model file."""
        python_env = self.names.python_env
        if option_name(line) not in INCLUDE_OPTIONS:
            lines.add(line, source=f"dependency in {python_env}", base=self.model_dir)
            return
        name = option_value(line)
        path = self.model_file(name)
        if path is None:
            return
        if not path.is_file():
            self.fail(
                ModelFormatError(
                    f"{name}, which {python_env} names, is missing from the model at "
                    f"{self.model_dir}"
                )
            )
            return
        lines.read_file(path)
        files.append(name)

    def from_conda(self, path: Path) -> RecordedEnvironment:
        name = self.names.conda
        try:
            conda = CondaEnv.from_yaml(path)
        except EnvkitError as exc:
            self.fail(exc)
            return RecordedEnvironment(self.model_dir, self.names)
        lines = self.lines()
        for position, raw in enumerate(conda.pip):
            where = f"{name}[{position}]"
            lines.add(raw, source=f"pip requirement in {where}", base=self.model_dir, where=where)
        return RecordedEnvironment(
            self.model_dir,
            self.names,
            kind=KIND_CONDA,
            files=(name,),
            python=conda.python,
            python_from=name if conda.python else None,
            listed=lines.result(),
            conda_dependencies=conda.dependencies,
            conda_channels=conda.channels,
        )

    def from_requirements(
        self, path: Path, python: str | None, *, running: bool = True
    ) -> RecordedEnvironment:
        """``requirements.txt`` alone; without a recorded Python version, the running
        interpreter's (``running``: not for a broken python_env.yaml read leniently)."""
        if not path.is_file():
            return RecordedEnvironment(self.model_dir, self.names)
        lines = self.lines()
        lines.read_file(path)
        python_from = MLMODEL if python else (RUNNING_PYTHON if running else None)
        if python_from == RUNNING_PYTHON:
            import platform

            python = platform.python_version()
        return RecordedEnvironment(
            self.model_dir,
            self.names,
            kind=KIND_REQUIREMENTS,
            files=(REQUIREMENTS_FILE,),
            python=python,
            python_from=python_from,
            listed=lines.result(),
        )

    def with_lock(self, recorded: RecordedEnvironment) -> RecordedEnvironment:
        """``recorded`` with what ``requirements.lock`` says (read when it is current and the
        model records a ``python_env.yaml``)."""
        path = self.model_dir / LOCK_FILE
        if not path.is_file():
            return recorded
        stale = stale_lock_reason(self.model_dir)
        lock = None
        if stale is None and recorded.kind == KIND_PYTHON_ENV:
            lock = self.read_lock(path)
        return replace(recorded, has_lock_file=True, stale_lock=stale, lock=lock)

    def read_lock(self, path: Path) -> RecordedLock:
        reader = self.lines()
        reader.read_file(path)
        listed = reader.result()
        lines: list[str] = []
        hashes: list[tuple[str, tuple[str, ...]]] = []
        for line in listed.lines:
            requirement, found = split_hashes(line)
            lines.append(requirement)
            if found and not requirement.startswith("-"):
                hashes.append((requirement, found))
        return RecordedLock(replace(listed, lines=tuple(lines)), tuple(hashes))

    def lines(self) -> RequirementsReader:
        return RequirementsReader(root=self.model_dir, problems=self.problems)

    def model_file(self, name: str) -> Path | None:
        from envkit._fs import resolve_inside

        try:
            return resolve_inside(self.model_dir, name)
        except EnvkitError as exc:
            self.fail(exc)
            return None

    def fail(self, exc: EnvkitError) -> None:
        if self.problems is None:
            raise exc
        self.problems.append(exc.message)


def input_digest(model_dir: Path) -> str:
    """SHA-256 of what a lock is compiled from: ``requirements.txt`` and ``constraints.txt``."""
    import hashlib

    digest = hashlib.sha256()
    for name in (REQUIREMENTS_FILE, CONSTRAINTS_FILE):
        path = model_dir / name
        digest.update(name.encode() + b"\0")
        if path.is_file():
            digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def stale_lock_reason(model_dir: Path) -> str | None:
    """Why the model's ``requirements.lock`` no longer matches its requirements (or None).

    A lock without the digest line (written by hand, or by another tool) is trusted as it is.
    """
    lock = model_dir / LOCK_FILE
    try:
        head = lock.read_text(encoding="utf-8").splitlines()[:10]
    except (OSError, UnicodeDecodeError):
        return None  # reading it reports the problem
    recorded = next(
        (line[len(DIGEST_PREFIX) :].strip() for line in head if line.startswith(DIGEST_PREFIX)),
        None,
    )
    if recorded is None or recorded == input_digest(model_dir):
        return None
    return (
        f"{LOCK_FILE} is out of date: {REQUIREMENTS_FILE} (or {CONSTRAINTS_FILE}) changed after "
        f"it was locked; run `envkit lock {model_dir}` again, or delete {LOCK_FILE}"
    )
