"""``envkit serve``: serve a model in its rebuilt environment.

``local`` serves in this interpreter. ``uv``, ``virtualenv`` (or any cacheable backend that
runs a host interpreter) reuse the environment cache: the environment is the model's
requirements with envkit's ``serve`` extra (starlette, uvicorn) added, a spec of its own, so
the validation environment stays exactly the model's. ``docker`` builds the model's serving
image (``envkit build-docker``) and runs it on the host's network namespace, so the server
listens on ``--host``/``--port`` directly (no port publishing through the bridge).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envkit._version import __version__
from envkit.errors import UsageError
from envkit.serving.app import DEFAULT_MAX_BODY_BYTES
from envkit.serving.server import DEFAULT_HOST, DEFAULT_PORT

logger = logging.getLogger(__name__)

__all__ = ["PreparedServer", "prepare_server", "serve"]

SERVE_EXTRA = "serve"


@dataclass
class PreparedServer:
    """The server process to start, once its environment is ready: ``run()`` serves."""

    argv: list[str]
    env: dict[str, str] | None = None
    cleanup: Callable[[], None] = field(default=lambda: None)

    def run(self) -> int:
        """Run the server until it stops; returns its exit status."""
        try:
            code = _run_forwarding_signals(self.argv, self.env)
        finally:
            self.cleanup()
        return 128 - code if code < 0 else code  # killed by a signal: 128 + its number


def _server_args(
    model: str,
    *,
    host: str,
    port: int,
    workers: int,
    max_body_bytes: int,
    access_log: bool,
) -> list[str]:
    args = [model, "--host", host, "--port", str(port), "--workers", str(workers)]
    args += ["--max-body-size", str(max_body_bytes)]
    if access_log:
        args.append("--access-log")
    return args


def prepare_server(
    model_uri: str | os.PathLike[str],
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    workers: int = 1,
    env_manager: str = "uv",
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    access_log: bool = False,
    python: str | None = None,
    base_image: str | None = None,
    ca_bundle: str | None = "auto",
    use_cache: bool = True,
    progress: Callable[[str, str], None] | None = None,
) -> PreparedServer:
    """The process that serves the model in its environment.

    Builds (or takes from the cache) the environment first; raises
    :class:`~envkit.errors.EnvkitError` when it cannot be built.
    """
    from envkit.models.uri import resolve_model_uri

    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    model_dir = resolve_model_uri(model_uri)
    if env_manager == "docker":
        return _docker_command(
            model_dir,
            host=host,
            port=port,
            workers=workers,
            max_body_bytes=max_body_bytes,
            access_log=access_log,
            python=python,
            base_image=base_image,
            ca_bundle=ca_bundle,
            progress=progress,
        )
    args = _server_args(
        str(model_dir),
        host=host,
        port=port,
        workers=workers,
        max_body_bytes=max_body_bytes,
        access_log=access_log,
    )
    if env_manager == "local":
        return PreparedServer([sys.executable, "-m", "envkit.serving", *args])
    return _env_command(model_dir, args, env_manager, python, use_cache, progress)


def _env_command(
    model_dir: Path,
    args: list[str],
    env_manager: str,
    python: str | None,
    use_cache: bool,
    progress: Callable[[str, str], None] | None,
) -> PreparedServer:
    from envkit.sandbox.backends.base import child_environment
    from envkit.sandbox.validate import _Session

    session = _Session(
        model_dir,
        env_manager=env_manager,
        python=python,
        # The server needs starlette and uvicorn: envkit's serve extra, a spec of its own.
        overrides=[f"envkit[{SERVE_EXTRA}]=={__version__}"],
        timeout=None,
        build_timeout=None,
        use_cache=use_cache,
        cache_dir=None,
        extra_env=None,
        progress=progress,
    )
    try:
        backend, env = session.prepare()
    except BaseException:
        session.close()
        raise
    if not getattr(backend, "isolated", True) or env.python == Path(sys.executable):
        session.close()
        return PreparedServer([sys.executable, "-m", "envkit.serving", *args])
    for warning in session.report.warnings:
        logger.warning("%s", warning)
    child_env = child_environment()
    child_env["PATH"] = str(env.python.parent) + os.pathsep + child_env.get("PATH", "")
    child_env["VIRTUAL_ENV"] = str(env.path)
    argv = [str(env.python), *env.python_flags, "-m", "envkit.serving", *args]
    logger.info(
        "serving from environment %s (%s)",
        session.report.cache.get("key", "?"),
        "cache hit" if session.report.cache.get("hit") else "built",
    )
    return PreparedServer(argv, child_env, session.close)


def _docker_command(
    model_dir: Path,
    *,
    host: str,
    port: int,
    workers: int,
    max_body_bytes: int,
    access_log: bool,
    python: str | None,
    base_image: str | None,
    ca_bundle: str | None,
    progress: Callable[[str, str], None] | None,
) -> PreparedServer:
    from envkit import docker_build as db
    from envkit.deps.envvars import read_env_vars_file

    digest = hashlib.sha256(str(model_dir).encode()).hexdigest()[:12]
    tag = f"envkit-serve:{digest}"
    build = db.build_image(
        model_dir,
        tag,
        base_image=base_image,
        ca_bundle=ca_bundle,
        python=python,
        progress=progress,
    )
    logger.info("serving image %s (%s)", tag, build.image_id[:19])
    name = f"envkit-serve-{digest}-{os.getpid()}"
    argv = [
        db.docker_executable() or "docker",
        "run",
        "--rm",
        "--name",
        name,
        # The host's network namespace: the server binds --host/--port itself; no bridge.
        "--network",
        "host",
        "--read-only",
        "--tmpfs",
        "/tmp:rw,nosuid,nodev",
        "--user",
        f"{db.CONTAINER_UID}:{db.CONTAINER_UID}",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
    ]
    # Recorded variables are passed by name: docker reads their values from our environment.
    for var in read_env_vars_file(model_dir):
        if var in os.environ:
            argv += ["--env", var]
    argv += [
        tag,
        *_server_args(
            db.CONTAINER_MODEL_DIR,
            host=host,
            port=port,
            workers=workers,
            max_body_bytes=max_body_bytes,
            access_log=access_log,
        )[1:],
    ]

    def cleanup() -> None:
        from envkit._subprocess import run

        run([argv[0], "rm", "--force", name], timeout=60)

    return PreparedServer(argv, None, cleanup)


def serve(
    model_uri: str | os.PathLike[str],
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    workers: int = 1,
    env_manager: str = "uv",
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    access_log: bool = False,
    python: str | None = None,
    base_image: str | None = None,
    ca_bundle: str | None = "auto",
    use_cache: bool = True,
    progress: Callable[[str, str], None] | None = None,
) -> int:
    """Serve the model until the server stops; returns the server's exit status.

    The server process inherits this process's standard streams; SIGTERM and SIGINT sent to
    this process are passed on to it (it stops gracefully).
    """
    return prepare_server(
        model_uri,
        host=host,
        port=port,
        workers=workers,
        env_manager=env_manager,
        max_body_bytes=max_body_bytes,
        access_log=access_log,
        python=python,
        base_image=base_image,
        ca_bundle=ca_bundle,
        use_cache=use_cache,
        progress=progress,
    ).run()


def _run_forwarding_signals(argv: Sequence[str], env: dict[str, str] | None) -> int:
    """Run a long-running child with inherited stdio, passing SIGINT/SIGTERM/SIGHUP on.

    (``envkit._subprocess.run`` captures output and waits: right for tools, not a server.)
    A child that stops because of a signal we passed on has stopped as asked: 0.
    """
    # The child gets a session of its own, so a terminal's Ctrl-C reaches it once: from us.
    logger.debug("running: %s", " ".join(argv))
    proc = subprocess.Popen(list(argv), env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    forwarded: list[int] = []
    with _forward_signals(proc, forwarded):
        code = proc.wait()
    if code < 0 and -code in forwarded:
        return 0
    return code


@contextlib.contextmanager
def _forward_signals(proc: subprocess.Popen[Any], forwarded: list[int]) -> Iterator[None]:
    previous: dict[int, Any] = {}

    def forward(signum: int, _frame: Any) -> None:
        forwarded.append(signum)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is None:
            continue
        try:
            previous[sig] = signal.signal(sig, forward)
        except ValueError:  # not the main thread
            pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
