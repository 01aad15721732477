"""The backend interface: say why you cannot run, create an environment, run an argv in it.

A backend is a small class. Validation, caching and reporting only talk to this interface,
so a new backend (``docker``, or a third party's registered under the ``envkit.backends``
entry-point group) plugs in without changes elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from envkit._subprocess import Outcome, run

if TYPE_CHECKING:
    from envkit.sandbox.cache import BuildInfo
    from envkit.sandbox.contain import ContainmentPolicy
    from envkit.sandbox.interpreters import Interpreter
    from envkit.sandbox.selfwheel import SelfWheel
    from envkit.sandbox.spec import EnvSpec

# Runs an installer command (a backend's environment, working directory and timeout bound).
ToolRunner = Callable[[Sequence[str]], Outcome]

# Variables that would make the sandbox see the host's packages (or another environment's).
LEAKY_VARIABLES = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONUSERBASE",
    "PYTHONSAFEPATH",
    "PYTHONEXECUTABLE",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "CONDA_DEFAULT_ENV",
    "__PYVENV_LAUNCHER__",
)


@dataclass
class Environment:
    """A built environment: where it is and how to start its Python."""

    path: Path
    python: Path
    backend: str
    # Flags for the environment's interpreter: ``-I`` keeps the host's PYTHONPATH and user
    # site-packages out (the local backend, which *is* the host, passes none); ``-B``: the
    # model's Python never writes bytecode into the cached environment (``-I`` ignores
    # PYTHONDONTWRITEBYTECODE; envkit compiles what a run imported itself, afterwards).
    python_flags: tuple[str, ...] = ("-I", "-B")
    isolated: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class InstallPlan:
    """What goes into an environment: requirement lines handed to the installer as files."""

    requirements: list[str]
    constraints: list[str] = field(default_factory=list)
    build_dependencies: list[str] = field(default_factory=list)
    # A locked spec: ``requirements`` carry ``--hash`` options and install with
    # --require-hashes; ``unhashed`` (envkit's wheel, and what its extras add) installs after
    # them, held to the locked ``pins``.
    require_hashes: bool = False
    unhashed: list[str] = field(default_factory=list)
    pins: list[str] = field(default_factory=list)
    exclude_newer: str = ""  # the build dependencies: only releases before this time (uv)

    def write(self, directory: Path, *, redact: bool = False) -> InstallFiles:
        """Write the requirement files into ``directory`` (``redact``: without URL
        credentials, for the copy kept beside an environment)."""
        from envkit._subprocess import redact_url

        def text(lines: list[str]) -> str:
            return "\n".join(redact_url(line) if redact else line for line in lines) + "\n"

        directory.mkdir(parents=True, exist_ok=True)
        requirements = directory / "requirements.txt"
        requirements.write_text(text(self.requirements), encoding="utf-8")
        constraints = build = None
        if self.constraints:
            constraints = directory / "constraints.txt"
            constraints.write_text(text(self.constraints), encoding="utf-8")
        if self.build_dependencies:
            build = directory / "build-requirements.txt"
            build.write_text(text(self.build_dependencies), encoding="utf-8")
        unhashed = pins = None
        if self.require_hashes:
            unhashed = directory / "unhashed-requirements.txt"
            unhashed.write_text(text(self.unhashed), encoding="utf-8")
            pins = directory / "locked-pins.txt"
            pins.write_text(text(self.pins), encoding="utf-8")
        return InstallFiles(requirements, constraints, build, unhashed, pins, self.exclude_newer)

    @contextlib.contextmanager
    def staged(self, target: Path) -> Iterator[InstallFiles]:
        """The requirement files in a private directory inside ``target`` (they may hold index
        credentials), removed after the install; after a successful install a redacted copy
        is kept in ``target/.envkit``. A build killed meanwhile leaves them in its unfinished
        directory, which the cache removes (the next build of the key, or ``env prune``)."""
        staging = target / ".envkit-install"
        staging.mkdir(mode=0o700, exist_ok=True)
        try:
            yield self.write(staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.write(target / ".envkit", redact=True)


@dataclass
class InstallFiles:
    requirements: Path
    constraints: Path | None
    build: Path | None
    # A locked spec (InstallPlan.require_hashes): what installs after the hash-checked lock.
    unhashed: Path | None = None
    pins: Path | None = None
    exclude_newer: str = ""

    def second_step(self) -> list[str]:
        """The installer arguments of the unhashed step (``-r unhashed -c pins [-c ...]``)."""
        assert self.unhashed is not None and self.pins is not None
        argv = ["-r", str(self.unhashed), "-c", str(self.pins)]
        if self.constraints is not None:
            argv += ["-c", str(self.constraints)]
        return argv


def install_plan(spec: EnvSpec, wheel: SelfWheel | None) -> InstallPlan:
    """The installer's view of ``spec``: envkit comes from ``wheel`` by direct reference.

    An unrelated project called ``envkit`` exists on PyPI, so ``envkit`` is never resolved
    from an index.
    """
    from envkit.sandbox.spec import requirement_name

    lines = list(spec.options)
    envkit_lines: list[str] = []
    pins: list[str] = []
    for req in spec.requirements:
        if wheel is not None and requirement_name(req) == "envkit":
            extras = ""
            name_part = req.split(";", 1)[0]
            if "[" in name_part:
                extras = name_part[name_part.index("[") : name_part.index("]") + 1]
            envkit_lines.append(wheel.requirement(extras))
            lines.append(envkit_lines[-1])
        else:
            pins.append(req)
            lines.append(req)
    constraints = [c for c in spec.constraints if requirement_name(c) != "envkit"]
    hashes = dict(spec.hashes)
    if hashes and pins and all(r in hashes for r in pins):
        # Every requirement is a locked pin (no --override replaced one): check the hashes.
        hashed = [f"{r} " + " ".join(f"--hash={h}" for h in hashes[r]) for r in pins]
        return InstallPlan(
            [*spec.options, *hashed],
            constraints,
            list(spec.build_dependencies),
            require_hashes=True,
            unhashed=[*spec.options, *envkit_lines],
            pins=pins,
            exclude_newer=spec.exclude_newer,
        )
    return InstallPlan(
        lines, constraints, list(spec.build_dependencies), exclude_newer=spec.exclude_newer
    )


# The oldest Python envkit's runner (envkit itself) runs on.
MIN_RUNNER_PYTHON = (3, 9)


@dataclass
class PythonChoice:
    """The Python an environment is built with (or runs), and how the backend chose it."""

    version: str
    recorded: str
    requested: str  # --python, or the recorded version
    found_by: str  # "pyenv", "PATH", "uv", "current", or the backend's name
    exact: bool | None  # None: known once the environment says which Python it has
    path: str | None = None
    interpreter: Interpreter | None = None  # the local interpreter a venv is made from
    warning: str | None = None  # not the exact version asked for

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"path": self.path} if self.path is not None else {}
        data.update(
            version=self.version,
            found_by=self.found_by,
            recorded=self.recorded,
            requested=self.requested,
            exact=self.exact,
        )
        return data


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run here, and why not."""

    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


@runtime_checkable
class SandboxBackend(Protocol):
    """What the core asks of a sandbox backend (:class:`Backend` implements it; a third-party
    backend registered under ``envkit.backends`` subclasses it or provides the same)."""

    name: ClassVar[str]
    description: ClassVar[str]
    cacheable: ClassVar[bool]
    isolated: ClassVar[bool]
    options: ClassVar[tuple[str, ...]]

    def available(self) -> Availability: ...

    def configure(self, **options: object) -> None: ...

    def describe(self) -> dict[str, str]: ...

    def choose_python(self, recorded: str, requested: str | None) -> PythonChoice: ...

    def create(
        self,
        spec: EnvSpec,
        target: Path,
        *,
        python: PythonChoice,
        plan: InstallPlan,
        timeout: float | None = None,
    ) -> BuildInfo: ...

    def open(self, path: Path) -> Environment: ...

    def check(self, env: Environment) -> str | None: ...

    def run(
        self,
        env: Environment,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        timeout: float | None = None,
        extra_env: Mapping[str, str] | None = None,
        paths: Sequence[Path] = (),
        writable_paths: Sequence[Path] = (),
        contain: ContainmentPolicy | None = None,
    ) -> Outcome: ...

    def killed_hint(self, returncode: int | None, extra: Mapping[str, object]) -> str | None: ...


def check_runner_python(version: str, requested: str | None, recorded: str) -> None:
    """The model runs under envkit's runner, which needs Python 3.9 or newer."""
    from envkit.errors import EnvironmentBuildError

    try:
        parts = tuple(int(p) for p in str(version).split(".")[:2])
    except ValueError:
        return
    if parts >= MIN_RUNNER_PYTHON:
        return
    minimum = ".".join(map(str, MIN_RUNNER_PYTHON))
    origin = f"--python {requested}" if requested else f"the model records Python {recorded}"
    raise EnvironmentBuildError(
        f"Python {version} cannot run envkit, which loads the model inside the environment "
        f"(it needs Python {minimum} or newer; {origin}); validate with --python {minimum} or "
        "newer"
    )


# What an installer step installs (SubprocessError.step): the core words its hint on these.
STEP_BUILD_DEPENDENCIES = "build_dependencies"
STEP_REQUIREMENTS = "requirements"
STEP_LOCKED = "locked_requirements"
STEP_ENVKIT_OVER_LOCK = "envkit_over_lock"
# Why it failed, where the installer's output says (SubprocessError.cause).
CAUSE_HASH_MISMATCH = "hash_mismatch"


def check_install(outcome: Outcome, what: str, step: str = STEP_REQUIREMENTS) -> Outcome:
    """Like ``outcome.check(what)``, with the installer's reason in the message: uv's
    ``cause:`` lines (why resolution failed) are joined into the one-line message."""
    if outcome.ok:
        return outcome
    from envkit._subprocess import last_error_line

    lines = (outcome.stderr or outcome.stdout).splitlines()
    cause: list[str] = []
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("cause:"):
            cause = [stripped[len("cause:") :].strip()]
            for following in lines[index + 1 :]:
                if not following.startswith("   ") or following.strip().startswith("cause:"):
                    break
                cause.append(following.strip())
            break
    if outcome.timed_out:
        reason = f"timed out after {outcome.duration:.0f}s"
    else:
        reason = last_error_line(outcome.stderr) or last_error_line(outcome.stdout)
        if reason.lower().startswith("error: "):
            reason = reason[len("error: ") :]
        if cause:
            reason = f"{reason}: {' '.join(cause)}"
    # The installer's own output is the only word on why (uv and pip say "hash").
    why = CAUSE_HASH_MISMATCH if step == STEP_LOCKED and "hash" in reason.lower() else None
    if len(reason) > 600:
        reason = reason[:600] + "..."
    error = outcome.error(f"{what} failed: {reason or f'exit code {outcome.returncode}'}")
    error.step, error.cause = step, why
    raise error


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The host environment without variables that leak packages into a sandbox."""
    env = {k: v for k, v in os.environ.items() if k not in LEAKY_VARIABLES}
    env["PYTHONNOUSERSITE"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    if extra:
        env.update(extra)
    return env


def venv_python(path: Path) -> Path:
    if sys.platform == "win32":
        return path / "Scripts" / "python.exe"
    return path / "bin" / "python"


class Backend:
    """Base class of sandbox backends (subclass it, or provide the same methods).

    Class attributes: ``name``; ``needs_interpreter`` (the backend creates the environment
    from a local interpreter found by :mod:`envkit.sandbox.interpreters`); ``cacheable``
    (environments go into the cache); ``isolated`` (the host's packages cannot leak in).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    needs_interpreter: ClassVar[bool] = True
    cacheable: ClassVar[bool] = True
    isolated: ClassVar[bool] = True
    # Names of the options :meth:`configure` takes (``base_image`` for docker, say).
    options: ClassVar[tuple[str, ...]] = ()

    def unavailable_reason(self) -> str | None:
        """Why this backend cannot run here (``None`` when it can)."""
        return None

    def available(self) -> Availability:
        """Whether this backend can run here, with the reason when it cannot."""
        return Availability(self.unavailable_reason())

    def describe(self) -> dict[str, str]:
        """What the backend is, for ``envkit env backends`` and reports."""
        return {"name": self.name, "description": self.description}

    def choose_python(self, recorded: str, requested: str | None) -> PythonChoice:
        """The Python for the environment: here, a backend that brings its own (conda, docker)
        builds the requested version (or the recorded one), and says which it got later."""
        version = requested or recorded
        check_runner_python(version, requested, recorded)
        return PythonChoice(version, recorded, version, found_by=self.name, exact=None)

    def configure(self, **options: object) -> None:
        """Take the backend options named in :attr:`options` (checked here, before a build)."""
        if options:
            from envkit.errors import UsageError

            raise UsageError(f"the {self.name} backend takes no options ({', '.join(options)})")

    def killed_hint(self, returncode: int | None, extra: Mapping[str, object]) -> str | None:
        """What to say about a run that ended with ``returncode`` before reporting (``extra``
        is the outcome's); ``None`` when there is nothing particular to say."""
        if returncode in (-9, 137):
            return (
                f"the model process was killed (exit code {returncode}), perhaps out of memory "
                "or by the system"
            )
        return None

    def tool_versions(self) -> dict[str, str]:
        """Versions of the tools the backend uses (recorded with each environment)."""
        return {}

    def create(
        self,
        spec: EnvSpec,
        target: Path,
        *,
        python: PythonChoice,
        plan: InstallPlan,
        timeout: float | None = None,
    ) -> BuildInfo:
        """Build the environment for ``spec`` in the empty directory ``target``."""
        raise NotImplementedError

    def open(self, path: Path) -> Environment:
        """The environment previously built in ``path``."""
        return Environment(path=path, python=venv_python(path), backend=self.name)

    def check(self, env: Environment) -> str | None:
        """Why a cached environment can no longer be used (``None`` when it can)."""
        python = env.python
        if not python.exists():  # follows symlinks: the base interpreter must still exist
            return f"its interpreter {python} (or the one it links to) no longer exists"
        from envkit.sandbox.manifest import difference

        changed = difference(env.path)
        return f"it was modified after envkit built it ({changed})" if changed else None

    def command(self, env: Environment, argv: Sequence[str]) -> list[str]:
        """``argv`` as it runs in ``env``: ``python`` means the environment's interpreter."""
        command = list(argv)
        if command and command[0] == "python":
            command = [str(env.python), *env.python_flags, *command[1:]]
        return command

    def run(
        self,
        env: Environment,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        timeout: float | None = None,
        extra_env: Mapping[str, str] | None = None,
        paths: Sequence[Path] = (),
        writable_paths: Sequence[Path] = (),
        contain: ContainmentPolicy | None = None,
    ) -> Outcome:
        """Run ``argv`` inside ``env``; ``argv[0] == "python"`` means the env's interpreter.

        ``paths`` are the host paths the command reads and ``writable_paths`` those it writes
        (a containerizing backend mounts them, read-only and read-write; ``cwd`` is mounted
        read-only unless it is among ``writable_paths``). An environment that is not isolated
        (``local``) runs with this process's environment as it is, PYTHONPATH included.
        """
        if env.isolated and contain is not None and contain.enabled and writable_paths:
            return self._run_contained(
                env, argv, cwd, timeout, extra_env, paths, writable_paths, contain
            )
        if not env.isolated:
            child_env = {**os.environ, **(extra_env or {})}
        else:
            child_env = child_environment(extra_env)
            bindir = str(env.python.parent)
            child_env["PATH"] = bindir + os.pathsep + child_env.get("PATH", "")
            child_env["VIRTUAL_ENV"] = str(env.path)
            # nothing but envkit writes into a cached environment (its manifest would differ)
            child_env["PYTHONDONTWRITEBYTECODE"] = "1"
        return run(self.command(env, argv), env=child_env, cwd=cwd, timeout=timeout)

    def _run_contained(
        self,
        env: Environment,
        argv: Sequence[str],
        cwd: Path | None,
        timeout: float | None,
        extra_env: Mapping[str, str] | None,
        paths: Sequence[Path],
        writable_paths: Sequence[Path],
        policy: ContainmentPolicy,
    ) -> Outcome:
        """``argv`` contained (:mod:`envkit.sandbox.contain`); what held is in the outcome's
        ``extra["containment"]``."""
        from envkit.sandbox.contain import contained_command

        scratch = Path(writable_paths[0]) / "home"
        scratch.mkdir(parents=True, exist_ok=True)
        command = contained_command(
            self.command(env, argv),
            env_root=env.path,
            env_bin=env.python.parent,
            read_only=list(paths),
            writable=list(writable_paths),
            scratch=scratch,
            extra_env=extra_env,
            policy=policy,
        )
        outcome = run(
            command.argv, env=command.env, cwd=cwd, timeout=timeout, limits=command.limits
        )
        outcome.extra["containment"] = command.containment.to_dict()
        return outcome


class VenvBackend(Backend):
    """A backend that makes a virtual environment from a local interpreter and installs the
    plan into it (uv, virtualenv). Subclasses say how: :meth:`venv_command`, :meth:`install`.
    """

    def installer_environment(self) -> dict[str, str]:
        """The environment of the tools that create and fill the virtual environment."""
        return child_environment()

    def venv_command(self, interpreter: Interpreter, target: Path) -> tuple[list[str], str]:
        """The command that creates a virtual environment in ``target``, and what it does."""
        raise NotImplementedError

    def install(self, python: Path, files: InstallFiles, tool: ToolRunner) -> None:
        """Install the staged requirement ``files`` into the environment of ``python``;
        ``tool(argv)`` runs an installer command (the installer's environment, the timeout)."""
        raise NotImplementedError

    def built_tools(self, python: Path, tool: ToolRunner) -> dict[str, str]:
        """The tool versions recorded with a fresh environment."""
        return self.tool_versions()

    def choose_python(self, recorded: str, requested: str | None) -> PythonChoice:
        """A local interpreter of the requested (or recorded) version: exact, else the same
        minor version with a warning (:func:`~envkit.sandbox.interpreters.find_interpreter`)."""
        from envkit.sandbox.interpreters import find_interpreter

        match = find_interpreter(requested or recorded)
        found = match.interpreter
        check_runner_python(found.version, requested, recorded)
        return PythonChoice(
            version=found.version,
            recorded=recorded,
            requested=requested or recorded,
            found_by=found.source,
            exact=match.exact,
            path=str(found.path),
            interpreter=found,
            warning=match.warning,
        )

    def create(
        self,
        spec: EnvSpec,
        target: Path,
        *,
        python: PythonChoice,
        plan: InstallPlan,
        timeout: float | None = None,
    ) -> BuildInfo:
        from envkit.sandbox.cache import BuildInfo

        interpreter = python.interpreter
        assert interpreter is not None  # choose_python found it
        # The installers' temporary files go into the build's own directory: a killed build
        # leaves them where the cache removes unfinished builds, never in the host's /tmp.
        scratch = target / ".envkit-tmp"
        scratch.mkdir()
        env = {**self.installer_environment(), "TMPDIR": str(scratch), "TEMP": str(scratch)}
        env["TMP"] = str(scratch)

        def tool(argv: Sequence[str]) -> Outcome:
            return run(argv, env=env, cwd=target, timeout=timeout)

        timings: dict[str, float] = {}
        start = time.perf_counter()
        argv, what = self.venv_command(interpreter, target)
        tool(argv).check(what)
        timings["create"] = time.perf_counter() - start
        env_python = venv_python(target)
        start = time.perf_counter()
        with plan.staged(target) as files:
            self.install(env_python, files, tool)
        timings["install"] = time.perf_counter() - start
        shutil.rmtree(scratch, ignore_errors=True)
        return BuildInfo(
            python=interpreter.version,
            python_path=str(interpreter.path),
            tools=self.built_tools(env_python, tool),
            timings=timings,
        )
