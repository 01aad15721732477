"""The Docker engine, driven through the ``docker`` SDK (the ``envkit[docker]`` extra, imported
only when a function here is called): a client of the engine ``DOCKER_HOST`` names, and why
there is none."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

from envkit.errors import BackendUnavailableError, EnvironmentBuildError

if TYPE_CHECKING:
    from docker.client import DockerClient

__all__ = ["engine", "engine_unavailable_reason", "engine_version", "require_engine"]

SDK_MISSING = "the docker Python SDK is not installed (pip install 'envkit[docker]')"
DEFAULT_ENGINE = "unix:///var/run/docker.sock"


def _unreachable(exc: BaseException) -> str:
    """Why the engine did not answer, in a line: the innermost OS error where there is one."""
    host = os.environ.get("DOCKER_HOST") or DEFAULT_ENGINE
    why = str(exc).replace("Error while fetching server API version: ", "")
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            why = cause.strerror
        cause = cause.__cause__ or cause.__context__
    return f"the Docker engine is not reachable at {host} ({why}); start it or set DOCKER_HOST"


def _connect(timeout: float) -> DockerClient:
    """A client of the engine; :class:`BackendUnavailableError` when there is none."""
    try:
        from docker.client import DockerClient
        from docker.errors import DockerException
    except ImportError:
        raise BackendUnavailableError(
            f"cannot use Docker: {SDK_MISSING}", reasons={"docker": SDK_MISSING}
        )
    reason = ""
    # docker-py leaves the socket of a failed connect open: dropping the tracebacks that hold
    # it closes it here, where its ResourceWarning is ignored.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            return DockerClient.from_env(version="auto", timeout=timeout)
        except DockerException as exc:
            reason = _unreachable(exc)
            cause: BaseException | None = exc
            while cause is not None:
                cause.__traceback__ = None
                cause = cause.__cause__ or cause.__context__
    raise BackendUnavailableError(f"cannot use Docker: {reason}", reasons={"docker": reason})


@contextlib.contextmanager
def engine(timeout: float = 60) -> Iterator[DockerClient]:
    """A client of the engine ``DOCKER_HOST`` names (the local socket by default), closed on
    exit; ``timeout`` bounds each API call. Raises :class:`BackendUnavailableError` (exit 3)
    when the SDK is not installed or no engine answers, and :class:`EnvironmentBuildError`
    (exit 3) for an engine error the block does not handle itself."""
    client = _connect(timeout)
    import requests.exceptions
    from docker.errors import DockerException

    try:
        yield client
    except DockerException as exc:  # what the caller did not handle itself
        why = getattr(exc, "explanation", None) or exc
        raise EnvironmentBuildError(f"the Docker engine refused: {why}", detail=str(exc))
    except requests.exceptions.RequestException as exc:
        raise EnvironmentBuildError(f"lost the Docker engine: {exc}", detail=str(exc))
    finally:
        client.close()


def engine_unavailable_reason() -> str | None:
    """Why no Docker engine can be used from here (``None`` when one answers)."""
    try:
        with engine(timeout=30):
            return None
    except BackendUnavailableError as exc:
        return exc.reasons["docker"]


def engine_version() -> str:
    """The engine's version (``?`` when it does not say)."""
    try:
        with engine(timeout=30) as client:
            from docker.errors import DockerException

            try:
                return str(client.version().get("Version") or "?")
            except DockerException:
                return "?"
    except BackendUnavailableError:
        return "?"


def require_engine() -> None:
    """Raise :class:`BackendUnavailableError` (exit 3) when no engine answers."""
    with engine(timeout=30):
        pass
