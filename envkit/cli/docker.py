"""``envkit generate-dockerfile`` and ``envkit build-docker``: the model's serving image."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from envkit.cli._common import add_trust_options
from envkit.cli._sandbox_options import add_quiet_option


def _add_image_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="model directory or runs:/<run_id>/<name>")
    parser.add_argument(
        "--base-image",
        metavar="IMAGE",
        help="Python base image (default: $ENVKIT_DOCKER_BASE_IMAGE, else python:<X.Y>-slim "
        "for the Python the model records)",
    )
    parser.add_argument(
        "--ca-bundle",
        metavar="FILE",
        default="auto",
        help="CA bundle pip trusts during the build, for TLS-intercepting proxies (default "
        "auto: $ENVKIT_DOCKER_CA_BUNDLE, PIP_CERT, SSL_CERT_FILE or REQUESTS_CA_BUNDLE; "
        "'none' for none); used by the install step only",
    )
    parser.add_argument("--python", metavar="X.Y", help="build for this Python version")


def register(subparsers: Any) -> None:
    generate = subparsers.add_parser(
        "generate-dockerfile",
        help="write a Docker build context (Dockerfile, requirements, model) for the model",
        description=(
            "Write DIR/Dockerfile, DIR/envkit-build/ and DIR/model/: an image that serves the "
            "model (non-root, the scoring server on port 8080). Build it with `docker build "
            "--network host -t TAG DIR`. Classic-builder syntax only."
        ),
    )
    _add_image_options(generate)
    generate.add_argument(
        "-o", "--output", metavar="DIR", required=True, help="new or empty directory"
    )
    generate.set_defaults(func=run_generate)

    build = subparsers.add_parser(
        "build-docker",
        help="build the model's serving image",
        description=(
            "Build an image that serves the model: the base image, the model's requirements "
            "in a layer keyed on them alone, envkit[serve], the model, a non-root user, the "
            "scoring server as entrypoint (port 8080). Exit codes: 0 built; 2 bad usage; "
            "3 the image could not be built or no Docker engine is reachable."
        ),
    )
    _add_image_options(build)
    build.add_argument("-t", "--tag", metavar="TAG", required=True, help="image name[:tag]")
    build.add_argument("--no-cache", action="store_true", help="build every layer afresh")
    build.add_argument("--format", choices=("text", "json"), default="text")
    add_quiet_option(build)
    add_trust_options(build)
    build.set_defaults(func=run_build)


def run_generate(args: argparse.Namespace) -> int:
    from envkit.docker import generate_dockerfile

    context = generate_dockerfile(
        args.model,
        args.output,
        base_image=args.base_image,
        ca_bundle=args.ca_bundle,
        python=args.python,
    )
    print(f"wrote {context.dockerfile} (base image {context.base_image})")
    if context.ca_bundle is not None:
        print(f"CA bundle for the install step: {context.ca_bundle}")
    if context.env_vars:
        print(f"the model expects these environment variables: {', '.join(context.env_vars)}")
    print(f"build it with: docker build --network host -t TAG {context.directory}")
    return 0


def run_build(args: argparse.Namespace) -> int:
    from envkit.cli._common import trust_kwargs
    from envkit.cli._sandbox_options import progress_display, wants_progress
    from envkit.docker import build_image

    with progress_display(wants_progress(args)) as progress:
        build = build_image(
            args.model,
            args.tag,
            base_image=args.base_image,
            ca_bundle=args.ca_bundle,
            python=args.python,
            no_cache=args.no_cache,
            progress=progress,
            **trust_kwargs(args),
        )
    if args.format == "json":
        sys.stdout.write(json.dumps(build.to_dict(), indent=2) + "\n")
        return 0
    cached = f", {build.cached_steps}/{build.steps} steps from cache" if build.steps else ""
    print(
        f"built {build.tag} ({build.image_id[:19]}, {build.size_bytes / 1e6:.0f} MB, "
        f"Python {build.python or '?'}, {build.duration:.1f}s{cached})"
    )
    print(f"run it with: docker run --rm -p 127.0.0.1:8080:8080 {build.tag}")
    return 0
