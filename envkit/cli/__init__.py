"""The ``envkit`` command line: parse, call one library function, render, map errors to exits.

Each command lives in its own module under ``envkit.cli`` with two functions:
``register(subparsers)`` adds its parser (and sets ``func``), and the function it sets runs it
and returns an exit code. Command modules import heavy libraries only inside that function.
This module is the only place that turns exceptions into exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from envkit._version import __version__
from envkit.errors import EXIT_BAD_INPUT, EXIT_ENV_FAILED, EXIT_MODEL_FAILED, EnvkitError

# Order is the order of `envkit --help`.
COMMAND_MODULES = [
    "envkit.cli.validate",
    "envkit.cli.matrix",
    "envkit.cli.predict",
    "envkit.cli.info",
    "envkit.cli.scan",
    "envkit.cli.deps",
    "envkit.cli.serve",
    "envkit.cli.docker",
    "envkit.cli.wheel",
    "envkit.cli.env",
    "envkit.cli.hook",
]

logger = logging.getLogger("envkit")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="envkit",
        description=(
            "Package ML models in the MLflow Models format, capture their environments, and "
            "prove they run in a rebuilt sandbox before deployment."
        ),
        epilog=(
            "exit codes: 0 ok; 1 the model failed (load/predict error, timeout, schema error, "
            "failed --check); 2 bad usage or unreadable model; 3 the environment could not be "
            "built"
        ),
    )
    parser.add_argument("--version", action="version", version=f"envkit {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show details and tracebacks on errors"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    # --verbose is accepted after the command too (`envkit validate m --verbose`).
    verbose_parent = argparse.ArgumentParser(add_help=False)
    verbose_parent.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    add_parser = subparsers.add_parser

    def add_parser_with_verbose(*args: Any, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs["parents"] = [*kwargs.get("parents", []), verbose_parent]
        return add_parser(*args, **kwargs)

    subparsers.add_parser = add_parser_with_verbose  # type: ignore[method-assign]
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # a command that is not part of this build
            raise
        module.register(subparsers)
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (it may be replaced after setup)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _configure_output(verbose: bool) -> None:
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logger.propagate = False

    def show(
        message: Any, category: Any, filename: Any, lineno: Any, file: Any = None, line: Any = None
    ) -> None:
        print(f"warning: {message}", file=sys.stderr)

    warnings.showwarning = show


class _RedactingStream:
    """A text stream that redacts what it writes, a line at a time (a value split between two
    writes is still found): no environment value or URL password reaches the terminal."""

    def __init__(self, target: Any, redactor: Any) -> None:
        self._target = target
        self._redactor = redactor
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending:
            lines, _, self._pending = self._pending.rpartition("\n")
            self._target.write(self._redactor(lines + "\n"))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._target.write(self._redactor(self._pending))
            self._pending = ""
        self._target.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, encoding, fileno...
        return getattr(self._target, name)


def main(argv: Sequence[str] | None = None) -> int:
    from envkit._redact import Redactor

    redactor = Redactor()
    saved = sys.stdout, sys.stderr
    sys.stdout = _RedactingStream(sys.stdout, redactor)
    sys.stderr = _RedactingStream(sys.stderr, redactor)
    try:
        return _main(argv)
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        sys.stdout, sys.stderr = saved


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    _configure_output(verbose)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return int(func(args) or 0)
    except EnvkitError as exc:
        _report_error(exc.message, exc.detail, exc, verbose)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except ModuleNotFoundError as exc:
        if exc.name not in CLI_TOOLS:
            _report_error(f"unexpected {type(exc).__name__}: {exc}", None, exc, verbose)
            return EXIT_MODEL_FAILED
        _report_error(
            f"this command needs envkit's sandbox tools, and {exc.name} is not installed here: "
            "pip install 'envkit[cli]'",
            None,
            exc,
            verbose,
        )
        return EXIT_ENV_FAILED
    except Exception as exc:  # a bug or an unexpected failure: still one line without --verbose
        _report_error(f"unexpected {type(exc).__name__}: {exc}", None, exc, verbose)
        return EXIT_MODEL_FAILED


MAX_ERROR_LINE = 400

# The `cli` extra: what the commands that build sandboxes import; the runtime has none of it.
CLI_TOOLS = frozenset({"filelock", "rich", "uv", "virtualenv"})


def one_line(text: str, limit: int = MAX_ERROR_LINE) -> tuple[str, str]:
    """(the first line of ``text``, shortened to ``limit``; the rest, for --verbose)."""
    lines = [line.rstrip() for line in str(text).strip().splitlines()]
    first = lines[0].strip() if lines else ""
    rest = "\n".join(lines[1:]).strip()
    if len(first) > limit:
        rest = (first + ("\n" + rest if rest else "")).strip()
        first = first[: limit - 1].rstrip() + "\u2026"
    return first, rest


def _report_error(message: str, detail: str | None, exc: BaseException, verbose: bool) -> None:
    """One line on stderr; the full message, detail and traceback only with --verbose."""
    first, rest = one_line(message)
    more = "\n".join(part for part in (rest, detail or "") if part)
    if not verbose:
        hint = " (--verbose for details)" if more or not isinstance(exc, EnvkitError) else ""
        print(f"error: {first}{hint}", file=sys.stderr)
        return
    print(f"error: {first}", file=sys.stderr)
    if more:
        print(more, file=sys.stderr)
    import traceback

    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
