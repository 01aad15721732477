"""One helper runs every child process: timeout, captured output, explicit environment.

Process execution is request -> :class:`Outcome`; callers decide whether a non-zero exit is an
error (``Outcome.check``). Environment variables are logged by name only, never by value, and
credentials in URLs on a command line are stripped.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from envkit.errors import SubprocessError

logger = logging.getLogger(__name__)


def describe_environment(env: Mapping[str, str]) -> str:
    """Which variables a child's environment sets, changes or drops: names only, never values.

    Any value may be a secret (a DSN, a connection string with a password), so none is logged.
    """
    here = os.environ
    added = sorted(k for k in env if k not in here)
    changed = sorted(k for k in env if k in here and env[k] != here[k])
    removed = sorted(k for k in here if k not in env)
    parts = [
        f"{label}: {', '.join(names)}"
        for label, names in (("sets", added), ("changes", changed), ("drops", removed))
        if names
    ]
    return "; ".join(parts) or "inherited unchanged"


def check_timeout(timeout: float | None, name: str = "timeout") -> float | None:
    """``timeout`` as seconds greater than 0 (None: no limit); else a usage error naming it."""
    from envkit.errors import UsageError

    if timeout is None:
        return None
    try:
        value = float(timeout)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a number of seconds, got {timeout!r}") from None
    if not value > 0:  # also refuses NaN
        raise UsageError(f"{name} must be a positive number of seconds, got {timeout!r}")
    return value


def redact_url(url: str) -> str:
    """Strip ``user:password@`` credentials from a URL."""
    return re.sub(r"(?<=://)[^/@\s]+@", "", url)


@dataclass
class Outcome:
    """What a finished (or timed-out) child process did."""

    argv: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def check(self, what: str) -> Outcome:
        """Raise :class:`SubprocessError` (``"<what> failed ..."``) unless the process succeeded."""
        if not self.ok:
            reason = (
                f"timed out after {self.duration:.0f}s"
                if self.timed_out
                else f"exited with code {self.returncode}"
            )
            last = last_error_line(self.stderr) or last_error_line(self.stdout)
            raise self.error(f"{what} failed: {reason}" + (f": {last}" if last else ""))
        return self

    def error(self, message: str) -> SubprocessError:
        """A :class:`SubprocessError` with ``message``, carrying this process's argv, exit
        code and output (shown with ``--verbose``)."""
        return SubprocessError(
            message,
            argv=self.argv,
            returncode=self.returncode,
            stdout=self.stdout,
            stderr=self.stderr,
        )


def last_error_line(text: str) -> str:
    """The most informative line of a tool's output: the last ``error``-ish line, else the last."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        lowered = line.lower()
        if lowered.startswith(("error", "\u00d7", "x ")) or "error:" in lowered:
            return line[:300]
    return lines[-1][:300] if lines else ""


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    input: str | None = None,
    stream: bool = False,
    limits: Mapping[int, int] | None = None,
) -> Outcome:
    """Run ``argv``; capture its output; kill its whole process group on timeout.

    ``env`` is the complete environment of the child (``None`` inherits ours). With ``stream``
    the child's output also goes to our logger line by line (``--verbose``). ``limits``
    (``resource.RLIMIT_*`` -> value) are set in the child before it starts.
    """
    argv = [str(a) for a in argv]
    logger.debug("running: %s", redact_url(" ".join(argv)))
    if env is not None:
        logger.debug("environment (names only): %s", describe_environment(env))
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        text=True,
        encoding="utf-8",
        errors="replace",
        start_new_session=True,
        preexec_fn=_preexec(limits) if sys.platform.startswith("linux") else None,
    )
    timed_out = False
    try:
        stdout, stderr = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        stdout, stderr = proc.communicate()
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    duration = time.perf_counter() - start
    if stream:
        for line in (stdout + stderr).splitlines():
            logger.info("  | %s", line)
    return Outcome(
        argv=argv,
        returncode=None if timed_out else proc.returncode,
        stdout=stdout or "",
        stderr=stderr or "",
        duration=duration,
        timed_out=timed_out,
    )


def _preexec(limits: Mapping[int, int] | None) -> Callable[[], None]:
    """What the child does before exec: its resource limits, then dying with envkit. (Imports
    happen here, in the parent: a forked child must not import.)"""
    if not limits:
        return die_with_parent
    import resource

    settings = []
    for key, value in limits.items():
        _soft, hard = resource.getrlimit(key)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        settings.append((key, (value, value if hard == resource.RLIM_INFINITY else hard)))

    def preexec() -> None:
        for key, pair in settings:
            try:
                resource.setrlimit(key, pair)
            except (ValueError, OSError):
                pass
        die_with_parent()

    return preexec


def die_with_parent() -> None:
    """In the child, before exec: be killed when envkit dies, even by SIGKILL (Linux).

    Children run in their own session (so a timeout can kill their whole group), which also
    means a killed envkit would leave them running: an installer writing into an abandoned
    build, or a hanging model. ``run`` waits for its child in the calling thread, so the
    parent-death signal (tied to that thread) fires only when envkit itself is gone.
    """
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
