"""``envkit wheel MODEL [-o OUT] [--platform TAG]``: a copy of the model that installs with no
package index (its requirements as wheels in ``wheels/``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from envkit.cli._common import add_format_option, add_model_command


def register(subparsers: Any) -> None:
    parser = add_model_command(
        subparsers,
        "wheel",
        run,
        help="copy a model with every requirement as a wheel (installs with no index)",
        description="Download every requirement of the model (its lock when present, else a "
        "resolution of requirements.txt) as wheels into wheels/ inside a copy of the model, "
        "rewrite its requirements to install from there, and record it in MLmodel (MLflow's "
        "wheeled-model layout). validate, predict, serve and build-docker then install it with "
        "--no-index --find-links.",
    )
    parser.add_argument(
        "-o", "--output", default=None, help="where to write the copy (default: MODEL_wheels)"
    )
    parser.add_argument(
        "--platform",
        default=None,
        help="a wheel platform tag to target (manylinux2014_x86_64...; binary wheels only); "
        "default: this platform, building a package that has no wheel",
    )
    add_format_option(parser)


def run(args: argparse.Namespace) -> int:
    from envkit.cli.info import human_size
    from envkit.sandbox.wheels import add_wheels

    result = add_wheels(args.model, args.output, platform=args.platform)
    if args.format == "json":
        data = {
            "path": str(result.path),
            "platform": result.platform,
            "wheels": result.wheels,
            "total_bytes": result.total_bytes,
        }
        print(json.dumps(data, indent=2))
        return 0
    print(
        f"wrote {result.path}: {len(result.wheels)} wheels, {human_size(result.total_bytes)} "
        f"(platform {result.platform})"
    )
    return 0
