"""``envkit validate MODEL``: rebuild the model's environment and run its input example."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from envkit.cli._common import add_trust_options, trust_kwargs
from envkit.cli._sandbox_options import (
    add_sandbox_options,
    progress_display,
    sandbox_kwargs,
    wants_progress,
    write_output,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="rebuild the model's environment in a sandbox and run its input example",
        description=(
            "Rebuild the model's recorded environment (cached by content), load the model in a "
            "subprocess there and predict on its input example or --input. Exit codes: 0 ok; "
            "1 the model failed (load/predict error, timeout, schema); 2 bad usage or "
            "unreadable model; 3 the environment could not be built."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="model directory or runs:/<run_id>/<name>")
    parser.add_argument(
        "--input",
        metavar="FILE",
        help="predict on this serving payload (JSON: dataframe_split, dataframe_records, "
        "instances or inputs, with params) or CSV file instead of the input example",
    )
    parser.add_argument(
        "--content-type",
        choices=("json", "csv"),
        help="format of --input (default: from its extension)",
    )
    add_sandbox_options(parser)
    add_trust_options(parser)
    parser.add_argument("--no-stream", action="store_true", help="do not also call predict_stream")
    parser.add_argument("--format", choices=("text", "json", "junit"), default="text")
    parser.add_argument("--output", metavar="FILE", help="write the report to FILE")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from envkit.sandbox.report import render
    from envkit.sandbox.validate import validate

    with progress_display(wants_progress(args)) as progress:
        report = validate(
            args.model,
            input_path=args.input,
            content_type=args.content_type,
            stream=not args.no_stream,
            progress=progress,
            **sandbox_kwargs(args),
            **trust_kwargs(args),
        )
    verbose = bool(getattr(args, "verbose", False))
    text = render(report, args.format, verbose=verbose)
    if args.output:
        write_output(args.output, text)
        print(report.headline)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    report.raise_for_error()
    return 0
