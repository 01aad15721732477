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
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from envkit._subprocess import die_with_parent
from envkit.errors import UsageError
from envkit.models.scan import ModelTrust, ensure_safe
from envkit.serving.server import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    check_port_free,
    resolve_batching,
    resolve_body_timeout,
    resolve_max_body_bytes,
    resolve_workers,
)

if TYPE_CHECKING:
    from envkit.serving.batching import BatchSettings

logger = logging.getLogger(__name__)

__all__ = ["PreparedServer", "prepare_server", "serve"]

SERVE_EXTRA = "serve"


class _Process(Protocol):
    """A started server: a child process (``subprocess.Popen``) or a container."""

    def send_signal(self, signum: int) -> None: ...

    def wait(self) -> int: ...


@dataclass
class PreparedServer:
    """The server to start, once its environment is ready: ``run()`` serves.

    ``argv`` is the server's command; ``start`` starts it (by default as a child process
    with ``env``); ``cleanup`` runs when it has stopped.
    """

    argv: list[str]
    env: dict[str, str] | None = None
    cleanup: Callable[[], None] = field(default=lambda: None)
    start: Callable[[], _Process] | None = None

    def run(self) -> int:
        """Run the server until it stops; returns its exit status."""
        try:
            code = _run_forwarding_signals(self.start or self._child)
        finally:
            self.cleanup()
        return 128 - code if code < 0 else code  # killed by a signal: 128 + its number

    def _child(self) -> subprocess.Popen[bytes]:
        # The child gets a session of its own, so a terminal's Ctrl-C reaches it once: from us.
        logger.debug("running: %s", " ".join(self.argv))
        # It dies with envkit, even when envkit is SIGKILLed (the server's workers watch it).
        return subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
        )


def _server_args(
    model: str,
    *,
    host: str,
    port: int,
    workers: int,
    max_body_bytes: int,
    access_log: bool,
    body_timeout: float,
    batching: BatchSettings | None = None,
) -> list[str]:
    args = [model, "--host", host, "--port", str(port), "--workers", str(workers)]
    args += ["--max-body-size", str(max_body_bytes), "--body-timeout", f"{body_timeout:g}"]
    if batching is not None:
        args += ["--max-batch-size", str(batching.max_batch_size)]
        args += ["--max-latency-ms", f"{batching.max_latency_ms:g}"]
    if access_log:
        args.append("--access-log")
    return args


def prepare_server(
    model_uri: str | os.PathLike[str],
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    workers: int | None = None,
    env_manager: str = "uv",
    max_body_bytes: int | str | None = None,
    access_log: bool = False,
    body_timeout: float | str | None = None,
    python: str | None = None,
    base_image: str | None = None,
    ca_bundle: str | None = "auto",
    use_cache: bool = True,
    progress: Callable[[str, str], None] | None = None,
    trust_model: bool = False,
    trusted_types: Sequence[str] = (),
    max_batch_size: int | str | None = None,
    max_latency_ms: float | str | None = None,
) -> PreparedServer:
    """The process that serves the model in its environment.

    ``max_body_bytes`` defaults to ``$ENVKIT_SERVE_MAX_BODY_BYTES``, else 50 MB,
    ``body_timeout`` (seconds for request headers and body) to ``$ENVKIT_SERVE_BODY_TIMEOUT``,
    else 30. ``workers`` defaults to ``$ENVKIT_SERVE_WORKERS``, else 1; ``max_batch_size`` and
    ``max_latency_ms`` turn on micro-batching, refused (:class:`~envkit.errors.UsageError`)
    for a model that does not declare a row-independent predict. Scans the model's pickles on
    the host (:class:`~envkit.errors.UnsafeModelError` for a dangerous one, unless
    ``trust_model`` or its globals are in ``trusted_types``), checks that the port is free and
    builds (or takes from the cache) the environment first; raises
    :class:`~envkit.errors.EnvkitError` when it cannot be built.
    """
    from envkit.models.uri import resolve_model_uri

    workers = resolve_workers(workers)
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {port}")
    limit = resolve_max_body_bytes(max_body_bytes)
    timeout = resolve_body_timeout(body_timeout)
    batching = resolve_batching(max_batch_size, max_latency_ms)
    model_dir = resolve_model_uri(model_uri)
    if batching is not None:
        _check_batchable(model_dir)
    trust = ModelTrust.of(trust_model, trusted_types)
    ensure_safe(model_dir, trust)  # on the host, before anything is built or loaded
    check_port_free(host, port)  # before a build that may take minutes
    if env_manager == "docker":
        return _docker_command(
            model_dir,
            trust=trust,
            host=host,
            port=port,
            workers=workers,
            max_body_bytes=limit,
            access_log=access_log,
            body_timeout=timeout,
            batching=batching,
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
        max_body_bytes=limit,
        access_log=access_log,
        body_timeout=timeout,
        batching=batching,
    )
    if env_manager == "local":
        local_env = {**os.environ, **trust.environment()} if trust.environment() else None
        return PreparedServer([sys.executable, "-m", "envkit.serving", *args], local_env)
    return _env_command(model_dir, args, env_manager, python, use_cache, progress, trust)


def _check_batchable(model_dir: Path) -> None:
    """Refuse batching, before anything is built, for a model whose MLmodel does not say its
    predict is row-independent (the server checks again when it loads the model)."""
    from envkit.models.model import MLMODEL_FILE_NAME, Model
    from envkit.pyfunc.loading import ROW_INDEPENDENT, is_row_independent

    if not is_row_independent(Model.load(model_dir / MLMODEL_FILE_NAME)):
        raise UsageError(
            "--max-batch-size: this model does not declare a row-independent predict "
            f"(python_function {ROW_INDEPENDENT}: true), so requests cannot be merged; save it "
            "with row_independent=True if each row's prediction depends on that row only, or "
            "serve it without batching"
        )


def _env_command(
    model_dir: Path,
    args: list[str],
    env_manager: str,
    python: str | None,
    use_cache: bool,
    progress: Callable[[str, str], None] | None,
    trust: ModelTrust,
) -> PreparedServer:
    from envkit.sandbox.backends.base import child_environment
    from envkit.sandbox.provision import ProvisionOptions, provision, quiet

    options = ProvisionOptions(
        env_manager=env_manager,
        python=python,
        build_timeout=None,
        use_cache=use_cache,
        # The server needs starlette and uvicorn: envkit's serve extra, a spec of its own.
        envkit_extras=(SERVE_EXTRA,),
        progress=progress or quiet,
        trust=trust,
    )
    ready = provision(model_dir, options)  # (the server does not run the input example)
    if not ready.isolated or ready.environment.python == Path(sys.executable):
        ready.close()
        local_env = {**os.environ, **trust.environment()} if trust.environment() else None
        return PreparedServer([sys.executable, "-m", "envkit.serving", *args], local_env)
    for warning in ready.warnings:
        logger.warning("%s", warning)
    env = ready.environment
    child_env = child_environment()
    child_env["PATH"] = str(env.python.parent) + os.pathsep + child_env.get("PATH", "")
    child_env["VIRTUAL_ENV"] = str(env.path)
    child_env.update(trust.environment())  # the server loads (and scans) the model again
    # The server runs the model's code: it never writes into the cached environment, whose
    # manifest a later use checks.
    child_env["PYTHONDONTWRITEBYTECODE"] = "1"
    argv = [str(env.python), *env.python_flags, "-m", "envkit.serving", *args]
    logger.info(
        "serving from environment %s (%s)",
        ready.cache.key or "?",
        "cache hit" if ready.cache.hit else "built",
    )
    return PreparedServer(argv, child_env, ready.close)


def _docker_command(
    model_dir: Path,
    *,
    trust: ModelTrust,
    host: str,
    port: int,
    workers: int,
    max_body_bytes: int,
    access_log: bool,
    body_timeout: float,
    batching: BatchSettings | None,
    python: str | None,
    base_image: str | None,
    ca_bundle: str | None,
    progress: Callable[[str, str], None] | None,
) -> PreparedServer:
    from envkit import docker as db
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
        trust_model=trust.trust_model,
        trusted_types=trust.trusted_types,
    )
    logger.info("serving image %s (%s)", tag, build.image_id[:19])
    command = _server_args(
        db.CONTAINER_MODEL_DIR,
        host=host,
        port=port,
        workers=workers,
        max_body_bytes=max_body_bytes,
        access_log=access_log,
        body_timeout=body_timeout,
        batching=batching,
    )[1:]
    container = _ServerContainer(
        tag,
        command,
        name=f"envkit-serve-{digest}-{os.getpid()}",
        # The recorded variables that are set here; values go to the engine, never to a log.
        environment={
            **{k: os.environ[k] for k in read_env_vars_file(model_dir) if k in os.environ},
            **trust.environment(),
        },
    )
    return PreparedServer(command, cleanup=container.remove, start=container.start)


class _ServerContainer:
    """The serving container, driven like a child process: ``start``, ``send_signal``,
    ``wait``; its output is copied to this process's as it comes. It runs in the host's
    network namespace (the server binds --host/--port itself; no bridge), read-only, as the
    image's non-root user, with every capability dropped."""

    def __init__(
        self, image: str, command: list[str], *, name: str, environment: dict[str, str]
    ) -> None:
        self.image = image
        self.command = command
        self.name = name
        self.environment = environment
        self._resources = contextlib.ExitStack()
        self._container: Any = None
        self._exited = threading.Event()
        self._status: int | None = None
        self._signalled: list[int] = []
        self._output: threading.Thread | None = None

    def start(self) -> _ServerContainer:
        from envkit import docker as db
        from envkit.errors import EnvironmentBuildError

        client = self._resources.enter_context(db.engine())
        from docker.errors import DockerException

        try:
            db.reap_orphaned_containers(client)
            self._container = client.containers.create(
                self.image,
                self.command,
                name=self.name,
                labels=db.owner_labels(),
                environment=self.environment,
                network_mode="host",
                read_only=True,
                tmpfs={"/tmp": "rw,nosuid,nodev"},
                user=f"{db.CONTAINER_UID}:{db.CONTAINER_UID}",
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
            )
            output = client.api.attach(
                self._container.id, stdout=True, stderr=True, stream=True, logs=True, demux=True
            )
            self._resources.callback(output.close)
            self._container.start()
        except DockerException as exc:
            raise EnvironmentBuildError(f"the serving container cannot start: {exc}")
        self._output = threading.Thread(target=_copy_output, args=(output,), daemon=True)
        self._output.start()
        threading.Thread(target=self._wait, daemon=True).start()
        return self

    def _wait(self) -> None:
        try:
            self._status = int(self._container.wait(timeout=None)["StatusCode"])
        except Exception as exc:  # the engine went away: report the server as failed
            logger.error("lost the serving container %s: %s", self.name, exc)
            self._status = 1
        finally:
            self._exited.set()

    def send_signal(self, signum: int) -> None:
        from docker.errors import APIError

        self._signalled.append(signum)
        with contextlib.suppress(APIError):  # it may have stopped meanwhile
            self._container.kill(signal=signum)

    def wait(self) -> int:
        """Its exit status; as for a child process, ``-N`` when a signal N we sent ended it."""
        self._exited.wait()
        if self._output is not None:
            self._output.join(timeout=10)
        status = self._status if self._status is not None else 1
        if status > 128 and status - 128 in self._signalled:
            return 128 - status
        return status

    def remove(self) -> None:
        from docker.errors import DockerException

        try:
            if self._container is not None:
                self._container.remove(force=True)
        except DockerException as exc:
            logger.warning("could not remove container %s: %s", self.name, exc)
        finally:
            self._resources.close()


def _copy_output(frames: Iterable[tuple[bytes | None, bytes | None]]) -> None:
    """Copy a container's (stdout, stderr) frames to ours until it ends."""
    try:
        for out, err in frames:
            for data, stream in ((out, sys.stdout), (err, sys.stderr)):
                if data:
                    buffer = getattr(stream, "buffer", None)
                    if buffer is not None:
                        buffer.write(data)
                    else:
                        stream.write(data.decode("utf-8", "replace"))
                    stream.flush()
    except Exception as exc:  # the stream was closed under us, or the engine went away
        logger.debug("container output ended: %s", exc)


def serve(model_uri: str | os.PathLike[str], **options: Any) -> int:
    """Serve the model until the server stops; returns the server's exit status.

    ``options`` are those of :func:`prepare_server`. The server process inherits this
    process's standard streams; SIGTERM and SIGINT sent to this process are passed on to it
    (it stops gracefully).
    """
    return prepare_server(model_uri, **options).run()


def _run_forwarding_signals(start: Callable[[], _Process]) -> int:
    """Start a long-running server with inherited stdio, passing SIGINT/SIGTERM/SIGHUP on.

    (``envkit._subprocess.run`` captures output and waits: right for tools, not a server.)
    A signal that comes while the server starts is passed on once it has. A server that
    stops because of a signal we passed on has stopped as asked: 0.
    """
    forwarded: list[int] = []
    started: list[_Process] = []

    def forward(signum: int, _frame: Any) -> None:
        forwarded.append(signum)
        for proc in started:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

    with _handling_signals(forward):
        proc = start()
        started.append(proc)
        for signum in forwarded:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)
        code = proc.wait()
    if code < 0 and -code in forwarded:
        return 0
    return code


@contextlib.contextmanager
def _handling_signals(handler: Callable[[int, Any], None]) -> Iterator[None]:
    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is None:
            continue
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
