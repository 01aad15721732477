"""Arguments that several commands take: ``MODEL``, ``--format`` and ``--timeout``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

MODEL_HELP = "model directory or runs:/<run_id>/<name>"


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
