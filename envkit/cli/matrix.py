"""``envkit matrix MODEL``: validate the model over interpreters and override sets."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from envkit.cli._common import add_trust_options, trust_kwargs
from envkit.cli._sandbox_options import add_quiet_option, progress_board, wants_progress


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "matrix",
        help="validate the model over several Pythons and requirement override sets",
        description=(
            "Validate the model in every combination of --python and --with (each --with is "
            "one override set, applied as --override is), up to --jobs at a time, sharing the "
            "environment and package caches, and print one row per cell. A Python that is not "
            "on this machine makes its cells skipped (a failure with --strict). The exit code "
            "is the worst cell's: 0 ok; 1 a model failed; 2 bad usage or unreadable model; "
            "3 an environment could not be built."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="model directory or runs:/<run_id>/<name>")
    parser.add_argument(
        "--python",
        metavar="X.Y",
        action="append",
        default=[],
        help="a Python of the matrix (repeatable): 3.11, 3.11.7, a range 3.9-3.13, or "
        "'recorded' (the default: the one the model records)",
    )
    parser.add_argument(
        "--with",
        metavar="REQS",
        action="append",
        default=[],
        dest="with_sets",
        help="an override set (repeatable): requirements separated by spaces, quoted as one "
        "argument, e.g. --with 'scikit-learn==1.5.* numpy<2'",
    )
    parser.add_argument(
        "--env-manager",
        metavar="NAME",
        default="uv",
        help="how to build each environment (uv, virtualenv, conda, docker, auto)",
    )
    parser.add_argument(
        "--jobs", type=int, metavar="N", help="cells at a time (default: the number of cores)"
    )
    parser.add_argument(
        "--strict", action="store_true", help="a Python missing here fails its cells"
    )
    parser.add_argument("--timeout", metavar="S", type=float, default=300.0)
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--env", metavar="NAME", action="append", default=[], dest="pass_env")
    parser.add_argument("--no-contain", action="store_true")
    add_trust_options(parser)
    add_quiet_option(parser)
    parser.add_argument("--format", choices=("text", "json", "junit"), default="text")
    parser.add_argument("--output", metavar="FILE", help="write the report to FILE")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from envkit.errors import UsageError
    from envkit.sandbox.matrix import render

    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    try:
        sets = [shlex.split(text) for text in args.with_sets]
    except ValueError as exc:
        raise UsageError(f"--with: {exc}") from None
    with progress_board(wants_progress(args)) as board:
        report = _matrix(args, sets, board.callback if board is not None else None)
    text = render(report, args.format)
    if args.output:
        from envkit.cli._sandbox_options import write_output

        write_output(args.output, text)
        print(render(report, "text").splitlines()[-1])
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return report.exit_code


def _matrix(args: argparse.Namespace, sets: list[list[str]], progress_for: Any) -> Any:
    from envkit.sandbox.matrix import matrix

    return matrix(
        args.model,
        pythons=args.python or ["recorded"],
        override_sets=sets,
        jobs=args.jobs,
        env_manager=args.env_manager,
        strict=args.strict,
        timeout=args.timeout,
        use_cache=not args.no_cache,
        contain=not args.no_contain,
        pass_env=list(args.pass_env),
        **trust_kwargs(args),
        progress_for=progress_for,
    )
