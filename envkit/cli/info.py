"""``envkit info MODEL``: flavors, signature, files and sizes."""

from __future__ import annotations

import argparse
import json
from typing import Any

from envkit.cli._common import add_format_option, add_model_command


def register(subparsers: Any) -> None:
    parser = add_model_command(
        subparsers,
        "info",
        run,
        help="show a model's flavors, signature, environment, files and sizes",
        description="Show a model's flavors, signature, environment, files and sizes.",
    )
    add_format_option(parser)


def run(args: argparse.Namespace) -> int:
    from envkit.models.describe import describe_model, render_text

    info = describe_model(args.model)
    if args.format == "json":
        print(json.dumps(info, indent=2, default=str))
    else:
        print(render_text(info))
    return 0
