"""Options shared by ``envkit validate`` and ``envkit predict`` (the sandbox options)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any


def add_sandbox_options(parser: argparse.ArgumentParser) -> None:
    add_quiet_option(parser)
    parser.add_argument(
        "--env-manager",
        metavar="NAME",
        default="uv",
        help="how to build the environment: uv (default), virtualenv, conda, docker (an image "
        "from --base-image; the model runs in a locked-down container), local (this "
        "interpreter, no isolation), auto (the first of uv, virtualenv, conda that can run "
        "here), or a plugin backend",
    )
    parser.add_argument(
        "--python",
        metavar="X.Y",
        help="validate against this Python version instead of the recorded one",
    )
    parser.add_argument(
        "--override",
        metavar="REQ",
        action="append",
        default=[],
        help="replace or add a requirement for this run (repeatable), e.g. 'scikit-learn==1.5.2'",
    )
    parser.add_argument(
        "--timeout",
        metavar="S",
        type=float,
        default=300.0,
        help="seconds the model may take to load and predict, more than 0 (default 300)",
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="build a throw-away environment instead of using the environment cache",
    )
    parser.add_argument(
        "--env",
        metavar="NAME",
        action="append",
        default=[],
        dest="pass_env",
        help="pass this host environment variable to the model (repeatable; the model gets no "
        "other host variable: environment_variables.txt lists the names it reads)",
    )
    parser.add_argument(
        "--no-contain",
        action="store_true",
        help="run the model uncontained: the host's environment variables and network, "
        "writable inputs, no limits (the report says so)",
    )
    parser.add_argument(
        "--loader",
        choices=("auto", "envkit", "mlflow"),
        default="auto",
        help="how the model's process loads the model: auto (default: envkit's loader for the "
        "flavors envkit knows, mlflow.sklearn and mlflow.pyfunc.model included, even when the "
        "model pins mlflow, which is installed but not imported; MLflow's for the others), "
        "envkit, or mlflow (MLflow's own loader, installed as the model records it); the "
        "report says which ran",
    )
    parser.add_argument(
        "--base-image",
        metavar="IMAGE",
        help="--env-manager docker: the Python base image (default: $ENVKIT_DOCKER_BASE_IMAGE, "
        "else python:<X.Y>-slim for the Python the model records)",
    )
    parser.add_argument(
        "--ca-bundle",
        metavar="FILE",
        help="--env-manager docker: CA bundle pip trusts while installing, for TLS-intercepting "
        "proxies (default auto: $ENVKIT_DOCKER_CA_BUNDLE, else PIP_CERT, SSL_CERT_FILE or "
        "REQUESTS_CA_BUNDLE; 'none' for none)",
    )


def add_quiet_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="show no progress while it works"
    )


def wants_progress(args: argparse.Namespace) -> bool:
    """Progress goes to a terminal only: not with ``--quiet``, not for ``--format json`` or
    ``junit``, not when stdout or stderr is redirected (CI logs get the report alone)."""
    if getattr(args, "quiet", False) or getattr(args, "format", "text") != "text":
        return False
    return sys.stdout.isatty() and sys.stderr.isatty()


class ProgressBoard:
    """Lines on stderr, one per ``key`` (a matrix cell; ``""`` for a single run): a spinner,
    what that run is doing now, and the time since it started."""

    def __init__(self, progress: Any) -> None:
        self._progress = progress
        self._tasks: dict[str, Any] = {}

    def callback(self, key: str = "") -> Callable[[str, str], None]:
        """The library's progress callback for one run."""

        def update(event: str, message: str) -> None:
            text = f"{key}: {message}" if key else message
            task = self._tasks.get(key)
            if task is None:
                self._tasks[key] = self._progress.add_task(text)
            elif event == "done":
                self._progress.update(task, description=text)
                self._progress.stop_task(task)
            else:
                self._progress.update(task, description=text)

        return update


@contextlib.contextmanager
def progress_board(enabled: bool) -> Iterator[ProgressBoard | None]:
    """A :class:`ProgressBoard` while the block runs (``None`` when not ``enabled``); it is
    cleared when the block ends, before the report is printed."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        yield ProgressBoard(progress)


@contextlib.contextmanager
def progress_display(enabled: bool) -> Iterator[Callable[[str, str], None] | None]:
    """The progress callback of a single run (see :func:`progress_board`)."""
    with progress_board(enabled) as board:
        if board is None:
            yield None
            return
        update = board.callback()
        update("start", "reading the model")
        yield update


def write_output(path: str, text: str) -> None:
    """``text`` (a report) written to ``path``, redacted as the terminal's output is."""
    from pathlib import Path

    from envkit._fs import atomic_write_text
    from envkit._redact import redact

    atomic_write_text(Path(path).expanduser().absolute(), redact(text))


def sandbox_kwargs(args: Any) -> dict[str, Any]:
    """The library's keyword arguments for the options :func:`add_sandbox_options` added."""
    return {
        "env_manager": args.env_manager,
        "python": args.python,
        "timeout": args.timeout,
        "use_cache": not args.no_cache,
        "overrides": args.override,
        "base_image": args.base_image,
        "ca_bundle": args.ca_bundle,
        "contain": not args.no_contain,
        "pass_env": list(args.pass_env),
        "loader": args.loader,
    }
