"""Find a local Python interpreter for a recorded version, without downloading anything.

Looked at, cheapest first: this interpreter, pyenv's versions (``$PYENV_ROOT/versions``),
``pythonX.Y`` executables on ``PATH``, and the interpreters uv knows (``uv python list
--only-installed``, which never downloads). The exact recorded version wins; else the same
minor version (with a warning); else an error listing every version found.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
import re
import shutil
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from envkit.errors import InterpreterNotFoundError, UsageError

logger = logging.getLogger(__name__)

_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?$")


@dataclass(frozen=True)
class Interpreter:
    """A Python executable and its full version (``3.11.7``)."""

    path: Path
    version: str
    source: str  # "current", "pyenv", "PATH", "uv"

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


@dataclass(frozen=True)
class InterpreterMatch:
    """The interpreter chosen for a requested version, and a warning when it is not exact."""

    interpreter: Interpreter
    requested: str
    exact: bool
    warning: str | None = None


def parse_version(text: str) -> tuple[int, ...]:
    match = _VERSION.match(text.strip())
    if not match:
        raise ValueError(f"not a Python version: {text!r}")
    return tuple(int(part) for part in match.groups() if part is not None)


def _matches(version: str, requested: tuple[int, ...]) -> bool:
    try:
        found = parse_version(version)
    except ValueError:
        return False
    return found[: len(requested)] == requested


def _current() -> Iterator[Interpreter]:
    """This interpreter (the base one when we run inside a virtual environment, so that a
    cached environment does not depend on, say, a tox environment that may be recreated)."""
    if platform.python_implementation() != "CPython":
        return
    executable = Path(sys.executable)
    base = getattr(sys, "_base_executable", None)
    if sys.prefix != sys.base_prefix and base and Path(base).is_file():
        executable = Path(base)
    yield Interpreter(executable, platform.python_version(), "current")


def _pyenv() -> Iterator[Interpreter]:
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return
    for entry in entries:
        python = entry / "bin" / "python"
        if _VERSION.match(entry.name) and python.exists():
            yield Interpreter(python, entry.name, "pyenv")


def _probe(path: Path) -> str | None:
    from envkit._subprocess import run

    try:
        outcome = run(
            [str(path), "-c", "import platform; print(platform.python_version())"], timeout=10
        )
    except OSError:
        return None
    version = outcome.stdout.strip()
    return version if outcome.ok and _VERSION.match(version) else None


def _on_path(minor: str | None) -> Iterator[Interpreter]:
    """``python3.X`` (or every ``python3.*``) on PATH, skipping pyenv shims."""
    names = [f"python{minor}"] if minor else []
    seen: set[Path] = set()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or "shims" in Path(directory).parts:
            continue
        candidates: Iterable[str] = names
        if not minor:
            try:
                candidates = [n for n in os.listdir(directory) if re.fullmatch(r"python3\.\d+", n)]
            except OSError:
                continue
        for name in candidates:
            path = Path(directory) / name
            if not (path.is_file() and os.access(path, os.X_OK)):
                continue
            real = path.resolve()
            if real in seen:
                continue
            seen.add(real)
            version = _probe(path)
            if version:
                yield Interpreter(path, version, "PATH")


def _uv_known() -> Iterator[Interpreter]:
    uv = find_uv()
    if uv is None:
        return
    from envkit._subprocess import run

    env = dict(os.environ, UV_PYTHON_DOWNLOADS="never")
    outcome = run(
        [uv, "python", "list", "--only-installed", "--output-format", "json"],
        env=env,
        timeout=60,
    )
    if not outcome.ok:
        return
    try:
        entries = json.loads(outcome.stdout)
    except ValueError:
        return
    for entry in entries:
        path = entry.get("path")
        version = str(entry.get("version") or "")
        if (
            path
            and entry.get("implementation", "cpython") == "cpython"
            and _VERSION.match(version)
            and "shims" not in Path(path).parts
        ):
            yield Interpreter(Path(path), version, "uv")


def _sources(minor: str | None) -> Iterator[Iterator[Interpreter]]:
    yield _current()
    yield _pyenv()
    yield _on_path(minor)
    yield _uv_known()


def find_interpreter(requested: str) -> InterpreterMatch:
    """The interpreter for ``requested`` (``3.11.7`` or ``3.11``), or InterpreterNotFoundError.

    A full version is matched exactly first; then any interpreter of the same minor version
    (the highest patch), with a warning. A minor version (``3.12``) takes the highest patch.
    """
    try:
        wanted = parse_version(requested)
    except ValueError:
        raise UsageError(
            f"cannot look for Python {requested!r}: expected a version like 3.11 or 3.11.7"
        ) from None
    if len(wanted) < 2:
        raise UsageError(f"Python {requested!r} is too vague: give at least a minor version (3.11)")
    minor = f"{wanted[0]}.{wanted[1]}"
    exact_wanted = len(wanted) == 3
    found: list[Interpreter] = []
    same_minor: list[Interpreter] = []
    for source in _sources(minor):
        for interpreter in source:
            found.append(interpreter)
            if exact_wanted and _matches(interpreter.version, wanted):
                return InterpreterMatch(interpreter, requested, exact=True)
            if _matches(interpreter.version, wanted[:2]):
                same_minor.append(interpreter)
        if same_minor and not exact_wanted:
            break  # a minor-version request is satisfied by the cheapest source that has it
    if same_minor:
        best = max(same_minor, key=lambda i: parse_version(i.version))
        warning = None
        if exact_wanted:
            warning = (
                f"Python {requested} is not installed here; using Python {best.version} "
                f"({best.path}), the same minor version. Install {requested} (pyenv install "
                f"{requested}) to validate exactly what the model recorded."
            )
        return InterpreterMatch(best, requested, exact=not exact_wanted, warning=warning)
    versions = sorted({i.version for i in found}, key=parse_version)
    raise InterpreterNotFoundError(
        f"no Python {requested} found (looked at this interpreter, pyenv versions, PATH and "
        f"uv's installed interpreters; found {', '.join(versions) or 'none'}); install it with "
        f"`pyenv install {minor}` or `uv python install {minor}`, or validate against another "
        "version with --python X.Y",
        detail="\n".join(f"{i.version}  {i.path}  ({i.source})" for i in found),
    )


def available_interpreters() -> list[Interpreter]:
    """Every interpreter the discovery finds (for listings and error messages)."""
    result: dict[Path, Interpreter] = {}
    for source in _sources(None):
        for interpreter in source:
            result.setdefault(interpreter.path.resolve(), interpreter)
    return sorted(result.values(), key=lambda i: parse_version(i.version))


_UV_LOCK = threading.Lock()


def find_uv() -> str | None:
    """The uv executable: the one installed with the ``uv`` package, else ``uv`` on PATH.

    Looked up once per process, under a lock: ``uv.find_uv_bin`` reads ``sysconfig``, whose
    first use is not thread-safe (concurrent matrix cells saw half-initialised values)."""
    with _UV_LOCK:
        return _find_uv()


@functools.lru_cache(maxsize=1)
def _find_uv() -> str | None:
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")
