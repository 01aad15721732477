"""``envkit lock MODEL``: a fully pinned, hashed, transitive ``requirements.lock``.

The model's ``requirements.txt`` (and its constraints) is compiled with ``uv pip compile`` (for
the Python version the model records) or pip-tools' ``pip-compile`` (for the running
interpreter), with ``--generate-hashes``.
envkit itself is not resolved from an index (a different project of that name is published
there; the sandbox installs the running envkit from a wheel it builds), so its line is replaced by
envkit's own runtime requirements, which the lock then pins like everything else.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from envkit.deps.envfiles import CONSTRAINTS_FILE, LOCK_FILE, REQUIREMENTS_FILE, copy_metadata
from envkit.deps.recorded import DIGEST_PREFIX, input_digest, read_recorded_environment
from envkit.deps.requirements import CONSTRAINT_OPTIONS, option_name, requirement_name
from envkit.errors import ModelFormatError, UsageError

if TYPE_CHECKING:
    from envkit._subprocess import Outcome
    from envkit.deps.recorded import RecordedEnvironment

__all__ = ["LockResult", "available_tools", "lock_model"]

TOOLS = ("uv", "pip-tools")
DEFAULT_TIMEOUT = 600.0


@dataclass
class LockResult:
    path: Path
    tool: str
    pinned: int


def available_tools() -> dict[str, str | None]:
    """Tool -> why it cannot run here (None when it can)."""
    import importlib.util

    reasons: dict[str, str | None] = {}
    reasons["uv"] = (
        None
        if importlib.util.find_spec("uv") is not None or shutil.which("uv")
        else "uv is not installed (pip install uv)"
    )
    reasons["pip-tools"] = (
        None
        if importlib.util.find_spec("piptools") is not None
        else "pip-tools is not installed (pip install 'envkit[lock]')"
    )
    return reasons


def _uv_command() -> list[str]:
    import importlib.util

    if importlib.util.find_spec("uv") is not None:
        return [sys.executable, "-m", "uv"]
    found = shutil.which("uv")
    return [found] if found else ["uv"]


def _envkit_runtime_requirements() -> list[str]:
    from importlib import metadata as importlib_metadata

    from packaging.requirements import InvalidRequirement, Requirement

    try:
        lines = importlib_metadata.requires("envkit") or []
    except importlib_metadata.PackageNotFoundError:
        return []
    result = []
    for line in lines:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is not None and "extra" in str(req.marker):
            continue
        result.append(str(req))
    return result


def compile_input(recorded: RecordedEnvironment) -> list[str]:
    """The lines given to the compiler: the model's requirement and option lines, envkit's
    line replaced, its constraints files named by absolute path."""
    result: list[str] = []
    for line in recorded.lines:
        if requirement_name(line) == "envkit":
            result.extend(r for r in _envkit_runtime_requirements() if r not in result)
        elif option_name(line) not in CONSTRAINT_OPTIONS:
            result.append(line)
    result.extend(f"-c {path}" for path in recorded.listed.constraint_files)
    return result


def lock_model(
    model_uri: str | os.PathLike[str],
    *,
    tool: str | None = None,
    timeout: float | None = None,
) -> LockResult:
    """Write ``requirements.lock`` next to the model's ``requirements.txt``; returns where.

    ``tool`` is ``"uv"`` or ``"pip-tools"`` (default: the first available). Raises
    :class:`~envkit.errors.SubprocessError` when resolution fails (its message names the
    requirement the resolver could not satisfy).
    """
    from envkit import _subprocess
    from envkit._fs import atomic_write_text
    from envkit.errors import BackendUnavailableError
    from envkit.models.uri import resolve_model_uri

    model_dir = resolve_model_uri(model_uri)
    if not (model_dir / REQUIREMENTS_FILE).is_file():
        raise ModelFormatError(f"the model at {model_dir} has no {REQUIREMENTS_FILE} to lock")
    reasons = available_tools()
    if tool is not None and tool not in TOOLS:
        raise UsageError(f"--tool must be one of {', '.join(TOOLS)}, not {tool!r}")
    chosen = tool or next((t for t in TOOLS if reasons[t] is None), None)
    if chosen is None or reasons[chosen] is not None:
        listing = "; ".join(f"{t}: {r}" for t, r in reasons.items() if r)
        raise BackendUnavailableError(
            f"no lock tool can run here ({listing})",
            reasons={k: v for k, v in reasons.items() if v},
        )
    # (what the model's lock replaces is not read)
    recorded = read_recorded_environment(model_dir, with_lock=False)
    python = recorded.python
    lines = compile_input(recorded)
    with tempfile.TemporaryDirectory(prefix="envkit-lock-") as tmp:
        source = Path(tmp) / "requirements.in"
        source.write_text("\n".join(lines) + "\n", encoding="utf-8")
        output = Path(tmp) / LOCK_FILE
        if chosen == "uv":
            argv = [
                *_uv_command(),
                "pip",
                "compile",
                "--quiet",
                "--generate-hashes",
                "--no-header",
                "--output-file",
                str(output),
                str(source),
            ]
            if python:
                argv += ["--python-version", python]
        else:
            import platform

            python = platform.python_version()  # pip-compile resolves for this interpreter
            argv = [
                sys.executable,
                "-m",
                "piptools",
                "compile",
                "--quiet",
                "--generate-hashes",
                "--no-header",
                "--strip-extras",
                # this machine's pip configuration (indexes, find-links) is not the model's
                "--no-emit-index-url",
                "--no-emit-find-links",
                "--no-emit-trusted-host",
                "--output-file",
                str(output),
                str(source),
            ]
        outcome = _subprocess.run(argv, timeout=timeout or DEFAULT_TIMEOUT, cwd=str(model_dir))
        _check(outcome, f"locking the requirements with {chosen}")
        body = output.read_text(encoding="utf-8")
    header = (
        f"# Fully pinned, hashed requirements of this model, written by `envkit lock` ({chosen})\n"
        f"# from {REQUIREMENTS_FILE}"
        + (f" and {CONSTRAINTS_FILE}" if (model_dir / CONSTRAINTS_FILE).is_file() else "")
        + (f" for Python {python}" if python else "")
        + ".\n# envkit itself is not listed: environments install the running envkit's wheel.\n"
        + f"{DIGEST_PREFIX}{input_digest(model_dir)}\n"
    )
    body = body.replace(str(source), REQUIREMENTS_FILE).replace(tmp, ".")
    target = model_dir / LOCK_FILE
    atomic_write_text(target, header + body)
    if (model_dir / "metadata").is_dir():
        copy_metadata(model_dir)
    pinned = sum(1 for line in body.splitlines() if "==" in line and not line.startswith("#"))
    return LockResult(path=target, tool=chosen, pinned=pinned)


def _check(outcome: Outcome, what: str) -> None:
    """Raise :class:`~envkit.errors.SubprocessError` naming the resolver's reason in one line."""

    if outcome.ok:
        return
    if outcome.timed_out:
        reason = f"timed out after {outcome.duration:.0f}s (pass --timeout to allow more)"
    else:
        cause = resolver_failure(outcome.stderr) or resolver_failure(outcome.stdout)
        reason = f"exited with code {outcome.returncode}" + (f": {cause}" if cause else "")
    raise outcome.error(f"{what} failed: {reason}")


_MAX_REASON = 500


def resolver_failure(text: str) -> str:
    """Why ``uv pip compile`` or ``pip-compile`` failed, in one line, naming the requirement.

    uv prints ``error: No solution found ...`` and the reason on ``cause:`` (or ``╰─▶``) lines;
    pip-compile prints pip's ``Cannot install X and Y because ...`` or ``No matching
    distribution found for X`` among the lines of a traceback.
    """
    from envkit._subprocess import last_error_line

    lines = text.splitlines()
    for index, line in enumerate(lines):
        stripped = line.strip()
        # uv's lower-case "error:" (pip's "ERROR:" lines are handled below)
        if not (stripped.startswith("error:") or stripped.startswith("\u00d7")):
            continue
        head = stripped.split(":", 1)[1] if stripped.startswith("error:") else stripped[1:]
        parts = [head.strip().rstrip(":")]
        for following in lines[index + 1 :]:
            detail = following.strip()
            if not detail:
                continue
            if not following[:1].isspace():
                break
            for marker in ("cause:", "\u2570\u2500\u25b6", "\u2570\u2500>"):
                if detail.startswith(marker):
                    detail = detail[len(marker) :].strip()
            parts.append(detail)
        return _shorten(": ".join(p for p in parts if p))
    for phrase in (
        "Cannot install",  # pip: "Cannot install a==1 and a>=2 because ... conflicting ..."
        "No matching distribution found for",
        "Could not find a version that satisfies the requirement",
    ):
        found = [line.strip() for line in lines if phrase in line]
        if found:
            line = found[-1]
            line = line[line.index(phrase) :].split(" (from versions:", 1)[0]
            return _shorten(line)
    return _shorten(last_error_line(text))


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."
