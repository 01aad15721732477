"""Run the scoring server on uvicorn in this interpreter: ``python -m envkit.serving MODEL``.

This is what ``envkit serve`` starts inside the model's environment (a cached virtualenv, a
container, or this interpreter with ``--env-manager local``). The model is loaded once per
worker process, before the port opens, so a model that cannot load fails at startup with
envkit's exit code instead of failing every request.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envkit.errors import EnvkitError, ModelFailedError, UsageError
from envkit.serving.app import DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY_BYTES

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from envkit.serving.batching import BatchSettings

logger = logging.getLogger("envkit.serving")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
# Read by the worker processes uvicorn spawns for --workers N (they build the app themselves).
ENV_MODEL = "ENVKIT_SERVE_MODEL"
ENV_MAX_BODY = "ENVKIT_SERVE_MAX_BODY_BYTES"
ENV_BODY_TIMEOUT = "ENVKIT_SERVE_BODY_TIMEOUT"
ENV_WORKERS = "ENVKIT_SERVE_WORKERS"
ENV_MAX_BATCH_SIZE = "ENVKIT_SERVE_MAX_BATCH_SIZE"
ENV_MAX_LATENCY_MS = "ENVKIT_SERVE_MAX_LATENCY_MS"
DEFAULT_MAX_LATENCY_MS = 2.0

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str | int, what: str = "size") -> int:
    """Bytes from ``1048576``, ``512k``, ``50MB``, ``1GiB`` (binary units); ``what`` names the
    value in the error (``--max-body-size``)."""
    if isinstance(text, int):
        value = text
    else:
        match = _SIZE.match(str(text))
        if not match:
            raise UsageError(f"invalid {what} {text!r}; use bytes or a unit, e.g. 512k, 50MB, 1GB")
        unit = (match.group(2) or "").lower()[:1]
        value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise UsageError(f"{what} must be positive, got {text!r}")
    return value


def resolve_max_body_bytes(option: str | int | None = None) -> int:
    """The request size limit: ``option`` (``--max-body-size``) when given, else
    ``$ENVKIT_SERVE_MAX_BODY_BYTES``, else 50 MB. An invalid value is a :class:`UsageError`."""
    if option is not None:
        return parse_size(option, "--max-body-size")
    from_env = os.environ.get(ENV_MAX_BODY, "").strip()
    if from_env:
        return parse_size(from_env, ENV_MAX_BODY)
    return DEFAULT_MAX_BODY_BYTES


def resolve_body_timeout(option: str | float | None = None) -> float:
    """Seconds a client may take to send its request headers, and its body: ``option``, else
    ``$ENVKIT_SERVE_BODY_TIMEOUT``, else 30."""
    where, value = "--body-timeout", option
    if value is None or value == "":
        where, value = ENV_BODY_TIMEOUT, os.environ.get(ENV_BODY_TIMEOUT, "").strip() or None
    if value is None:
        return DEFAULT_BODY_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0 or seconds == float("inf"):
        raise UsageError(f"{where} must be a number of seconds > 0, got {value!r}")
    return seconds


def _option_or_env(option: Any, variable: str, flag: str) -> tuple[str, Any]:
    if option is not None and option != "":
        return flag, option
    return variable, os.environ.get(variable, "").strip() or None


def resolve_workers(option: int | str | None = None) -> int:
    """Server processes: ``option`` (``--workers``), else ``$ENVKIT_SERVE_WORKERS``, else 1."""
    where, value = _option_or_env(option, ENV_WORKERS, "--workers")
    if value is None:
        return 1
    try:
        workers = int(value)
    except ValueError:
        workers = 0
    if workers < 1:
        raise UsageError(f"{where} must be at least 1, got {value!r}")
    return workers


def resolve_batching(
    max_batch_size: int | str | None = None, max_latency_ms: float | str | None = None
) -> BatchSettings | None:
    """Micro-batching settings: ``--max-batch-size`` (rows merged into one predict; else
    ``$ENVKIT_SERVE_MAX_BATCH_SIZE``) and ``--max-latency-ms`` (the longest a request waits for
    others; else ``$ENVKIT_SERVE_MAX_LATENCY_MS``, else 2). None (off) without a batch size
    over 1."""
    from envkit.serving.batching import BatchSettings

    where, size = _option_or_env(max_batch_size, ENV_MAX_BATCH_SIZE, "--max-batch-size")
    latency_where, latency = _option_or_env(max_latency_ms, ENV_MAX_LATENCY_MS, "--max-latency-ms")
    if size is None:
        if latency is not None and latency_where == "--max-latency-ms":
            raise UsageError("--max-latency-ms needs --max-batch-size (batching is off without)")
        return None
    try:
        rows = int(size)
    except ValueError:
        rows = 0
    if rows < 1:
        raise UsageError(f"{where} must be a number of rows >= 1, got {size!r}")
    try:
        wait = DEFAULT_MAX_LATENCY_MS if latency is None else float(latency)
    except ValueError:
        wait = -1.0
    if not 0 <= wait <= 60_000:
        raise UsageError(
            f"{latency_where} must be milliseconds between 0 and 60000, got {latency!r}"
        )
    return BatchSettings(rows, wait) if rows > 1 else None


def _use_body_timeout(seconds: float) -> Any:
    """The uvicorn protocol class that times out slow request headers after ``seconds``."""
    from envkit.serving import _protocol

    _protocol.HEADER_TIMEOUT = seconds
    return _protocol.HeaderTimeoutProtocol


def check_port_free(host: str, port: int) -> None:
    """Raise a one-line :class:`UsageError` when ``host:port`` cannot be listened on (the port
    is in use, the address is not this machine's), before anything slow is started."""
    import errno
    import socket

    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"cannot listen on {host}: {exc.strerror or exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(
                    f"port {port} is in use on {host}; stop what listens there or choose "
                    "another --port"
                ) from None
            if exc.errno == errno.EACCES:
                raise UsageError(
                    f"port {port} needs privileges this user lacks; choose a port above 1023"
                ) from None
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def load_scoring_model(model_uri: str | os.PathLike[str]) -> Any:
    """The model as a pyfunc; a failure to load is a :class:`ModelFailedError` (exit 1)."""
    from envkit.pyfunc import load_model

    try:
        return load_model(model_uri)
    except EnvkitError:
        raise
    except Exception as exc:
        raise ModelFailedError(
            f"loading the model failed: {type(exc).__name__}: {exc}",
            detail=f"model: {model_uri}",
        ) from exc


def missing_expected_env_vars(model_uri: str | os.PathLike[str]) -> list[str]:
    """Names recorded in ``environment_variables.txt`` that are not set here (names only)."""
    from envkit.deps.envvars import read_env_vars_file

    try:
        names = read_env_vars_file(model_uri)
    except OSError:
        return []
    return [name for name in names if name not in os.environ]


def app_from_environment() -> Starlette:
    """The app for one uvicorn worker process (``--workers N``), configured by variables."""
    from envkit.serving.app import create_app

    model_uri = os.environ[ENV_MODEL]
    _stop_when_orphaned()
    timeout = resolve_body_timeout()
    _use_body_timeout(timeout)
    return create_app(
        load_scoring_model(model_uri),
        max_body_bytes=resolve_max_body_bytes(),
        body_timeout=timeout,
        batching=resolve_batching(),
    )


def _stop_when_orphaned(interval: float = 1.0) -> None:
    """In a worker: stop (SIGTERM, graceful) when the uvicorn process that started it is gone,
    killed with the envkit that started it, instead of serving on as an orphan."""
    import signal
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        logger.warning("the server's main process is gone; stopping this worker")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="envkit-orphan-watch", daemon=True).start()


def run_server(
    model_uri: str | os.PathLike[str],
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    workers: int = 1,
    max_body_bytes: int | str | None = None,
    access_log: bool = False,
    log_level: str = "info",
    body_timeout: float | str | None = None,
    max_batch_size: int | str | None = None,
    max_latency_ms: float | str | None = None,
) -> None:
    """Load the model and serve it until interrupted (SIGINT/SIGTERM stop it gracefully).

    ``max_batch_size``/``max_latency_ms`` turn on micro-batching (see
    :func:`resolve_batching`, :mod:`envkit.serving.batching`): refused
    (:class:`~envkit.errors.UsageError`) for a model whose predict is not row-independent.

    ``max_body_bytes`` (bytes, or a size such as ``50MB``) defaults to
    ``$ENVKIT_SERVE_MAX_BODY_BYTES``, else 50 MB. ``body_timeout`` (seconds a client may take
    to send its request headers, and its body; 408 after) defaults to
    ``$ENVKIT_SERVE_BODY_TIMEOUT``, else 30.
    """
    try:
        import uvicorn
    except ImportError as exc:
        raise UsageError(
            f"serving needs starlette and uvicorn ({exc.name} is missing here): "
            "pip install 'envkit[serve]'"
        ) from None
    from envkit.models.uri import resolve_model_uri
    from envkit.serving.app import create_app

    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    limit = resolve_max_body_bytes(max_body_bytes)
    timeout = resolve_body_timeout(body_timeout)
    batching = resolve_batching(max_batch_size, max_latency_ms)
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {port}")
    check_port_free(host, port)
    model_dir = resolve_model_uri(model_uri)
    missing = missing_expected_env_vars(model_dir)
    if missing:
        logger.warning(
            "the model records environment variables that are not set: %s (set them if its "
            "predictions need them)",
            ", ".join(missing),
        )
    # Loaded here even with several workers: a model that cannot load fails before the port
    # opens, once, instead of in every worker.
    model = load_scoring_model(model_dir)
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": access_log,
        "server_header": False,
        "timeout_graceful_shutdown": 10,
        "timeout_keep_alive": 5,  # idle keep-alive connections
        "http": _use_body_timeout(timeout),  # request headers
    }
    app = create_app(model, max_body_bytes=limit, body_timeout=timeout, batching=batching)
    if batching is not None:
        logger.info(
            "micro-batching: up to %d rows per predict, waiting at most %g ms",
            batching.max_batch_size,
            batching.max_latency_ms,
        )
    if workers == 1:
        uvicorn.run(app, **common)
        return
    del model, app
    os.environ[ENV_MODEL] = str(model_dir)
    os.environ[ENV_MAX_BODY] = str(limit)
    os.environ[ENV_BODY_TIMEOUT] = str(timeout)
    os.environ.pop(ENV_MAX_BATCH_SIZE, None)
    if batching is not None:
        os.environ[ENV_MAX_BATCH_SIZE] = str(batching.max_batch_size)
        os.environ[ENV_MAX_LATENCY_MS] = f"{batching.max_latency_ms:g}"
    uvicorn.run(
        "envkit.serving.server:app_from_environment", factory=True, workers=workers, **common
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m envkit.serving",
        description="Serve an MLflow-format model over HTTP in this interpreter.",
    )
    parser.add_argument("model", metavar="MODEL", help="model directory or URI")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--workers", default=None, help=f"server processes (default: ${ENV_WORKERS}, else 1)"
    )
    parser.add_argument(
        "--max-batch-size",
        default=None,
        help=f"merge concurrent requests into one predict of up to this many rows (default: "
        f"${ENV_MAX_BATCH_SIZE}, else off)",
    )
    parser.add_argument(
        "--max-latency-ms",
        default=None,
        help=f"the longest a request waits for others to join its batch (default: "
        f"${ENV_MAX_LATENCY_MS}, else {DEFAULT_MAX_LATENCY_MS:g})",
    )
    parser.add_argument(
        "--max-body-size",
        default=None,
        help=f"largest request body (default: ${ENV_MAX_BODY}, else 50MB)",
    )
    parser.add_argument(
        "--body-timeout",
        default=None,
        help=f"seconds a client may take to send request headers and body (408 after; "
        f"default: ${ENV_BODY_TIMEOUT}, else 30)",
    )
    parser.add_argument("--access-log", action="store_true")
    parser.add_argument(
        "--log-level", default="info", choices=("critical", "error", "warning", "info", "debug")
    )
    return parser


class RedactingFormatter(logging.Formatter):
    """Log lines without environment values or URL passwords (:mod:`envkit._redact`)."""

    def __init__(self, fmt: str) -> None:
        from envkit._redact import Redactor

        super().__init__(fmt)
        self._redact = Redactor()

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("envkit: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    try:
        run_server(
            Path(args.model) if "://" not in args.model else args.model,
            host=args.host,
            port=args.port,
            workers=resolve_workers(args.workers),
            max_body_bytes=resolve_max_body_bytes(args.max_body_size),
            access_log=args.access_log,
            log_level=args.log_level,
            body_timeout=args.body_timeout,
            max_batch_size=args.max_batch_size,
            max_latency_ms=args.max_latency_ms,
        )
    except EnvkitError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.detail:
            print(exc.detail, file=sys.stderr)
        return exc.exit_code
    except SystemExit as exc:  # uvicorn exits when it cannot bind or start
        if exc.code not in (0, None):
            print(
                f"error: the server could not start on {args.host}:{args.port} (see above)",
                file=sys.stderr,
            )
            return 2
        return 0
    return 0
