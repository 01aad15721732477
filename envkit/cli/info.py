"""``envkit info MODEL``: flavors, signature, files and sizes."""

from __future__ import annotations

import argparse
import json
from typing import Any

from envkit.cli._common import add_format_option, add_model_argument


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "info",
        help="show a model's flavors, signature, environment, files and sizes",
        description="Show a model's flavors, signature, environment, files and sizes.",
    )
    add_model_argument(parser)
    add_format_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from envkit.models.describe import describe_model, render_text

    info = describe_model(args.model)
    if args.format == "json":
        print(json.dumps(info, indent=2, default=str))
    else:
        print(render_text(info))
    return 0
