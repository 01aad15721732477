"""What several commands share: a parser that takes ``MODEL``, ``--format``, ``--timeout``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import Any

MODEL_HELP = "model directory or runs:/<run_id>/<name>"


def add_model_command(
    subparsers: Any,
    name: str,
    run: Callable[[argparse.Namespace], int],
    *,
    help: str,
    description: str,
) -> argparse.ArgumentParser:
    """The parser of command ``name``, which takes ``MODEL`` and is run by ``run``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=help, description=description
    )
    add_model_argument(parser)
    parser.set_defaults(func=run)
    return parser


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """The ``MODEL`` positional (``args.model``): a model directory or a ``runs:/`` URI."""
    parser.add_argument("model", metavar="MODEL", help=MODEL_HELP)


def add_format_option(
    parser: argparse.ArgumentParser, choices: Sequence[str] = ("text", "json")
) -> None:
    """``--format`` (``args.format``): how the result is rendered, ``text`` by default."""
    parser.add_argument("--format", choices=tuple(choices), default="text")


def add_timeout_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--timeout S`` (``args.timeout``): seconds, None when not given."""
    parser.add_argument("--timeout", type=float, default=None, metavar="S", help=help)


def add_trust_options(parser: argparse.ArgumentParser) -> None:
    """``--trust-model`` and ``--trust-type T`` (repeatable): what the pickle scan accepts."""
    parser.add_argument(
        "--trust-model",
        action="store_true",
        help="load the model without scanning its pickles (only for a model you trust: "
        "unpickling can run any code)",
    )
    add_trust_type_option(parser)


def add_trust_type_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-type",
        metavar="T",
        action="append",
        default=[],
        help="accept this global in the model's pickles (module.name, or module.* for a "
        "package; repeatable), e.g. mypkg.MyClass",
    )
    parser.add_argument(
        "--strict-scan",
        action="store_true",
        help="refuse every global in the model's pickles that is neither on envkit's safe "
        "list nor named by --trust-type (the model's own classes included); the same as "
        "ENVKIT_STRICT_SCAN=1",
    )


def trust_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The library's keywords for :func:`add_trust_options`' options. ``--strict-scan`` is
    this command's ``ENVKIT_STRICT_SCAN``: every scan it makes, and the model's process
    (through :meth:`~envkit.models.scan.ModelTrust.environment`), reads it there."""
    if args.strict_scan:
        from envkit.models.scan import ENV_STRICT_SCAN

        os.environ[ENV_STRICT_SCAN] = "1"
    return {"trust_model": bool(args.trust_model), "trusted_types": tuple(args.trust_type)}
