"""``envkit predict MODEL --input FILE``: predict with the model in its rebuilt environment."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from envkit.cli._common import add_trust_options, trust_kwargs
from envkit.cli._sandbox_options import (
    add_sandbox_options,
    progress_display,
    sandbox_kwargs,
    wants_progress,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict with the model in its rebuilt environment",
        description=(
            "Predict with the model in its rebuilt (cached) environment, like "
            '`mlflow models predict`. Prints {"predictions": ...} as JSON.'
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="model directory or runs:/<run_id>/<name>")
    parser.add_argument(
        "--input",
        "-i",
        metavar="FILE",
        required=True,
        help="serving payload JSON (dataframe_split, dataframe_records, instances, inputs; "
        "params) or CSV; '-' reads standard input",
    )
    parser.add_argument("--output", "-o", metavar="FILE", help="write predictions to FILE")
    parser.add_argument(
        "--content-type", "-t", choices=("json", "csv"), help="format of --input (default: json)"
    )
    add_sandbox_options(parser)
    add_trust_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from envkit.sandbox.tempdirs import tempdir
    from envkit.sandbox.validate import predict

    content_type = args.content_type or (
        "csv" if str(args.input).lower().endswith(".csv") else "json"
    )
    with tempdir("stdin") as tmp:
        input_path = args.input
        if input_path == "-":
            input_path = str(tmp / f"input.{content_type}")
            with open(input_path, "w", encoding="utf-8") as handle:
                handle.write(sys.stdin.read())
        with progress_display(wants_progress(args)) as progress:
            predictions = predict(
                args.model,
                input_path=input_path,
                content_type=content_type,
                output_path=args.output,
                progress=progress,
                **sandbox_kwargs(args),
                **trust_kwargs(args),
            )
    if not args.output:
        sys.stdout.write(json.dumps({"predictions": predictions}) + "\n")
    return 0
