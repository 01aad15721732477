"""``envkit serve MODEL``: serve the model over HTTP (MLflow's scoring protocol)."""

from __future__ import annotations

import argparse
from typing import Any

from envkit.cli._common import add_trust_options
from envkit.cli._sandbox_options import add_quiet_option


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the model over HTTP (POST /invocations, GET /ping, /health, /version)",
        description=(
            "Load the model once, in its rebuilt environment unless --env-manager local, and "
            "serve MLflow's scoring protocol: POST /invocations with a JSON payload "
            "(dataframe_split, dataframe_records, instances or inputs, with params) or text/csv "
            'answers {"predictions": ...}; GET /ping, /health and /version. Bad requests get a '
            '4xx and {"error_code": ..., "message": ...}; a model exception is a 500. Exit '
            "codes: 0 stopped; 1 the model failed to load; 2 bad usage; 3 the environment "
            "could not be built."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="model directory or runs:/<run_id>/<name>")
    add_quiet_option(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", "-p", type=int, default=5000, help="port (default 5000)")
    parser.add_argument(
        "--workers",
        "-w",
        default=None,
        help="server processes, each loading the model (default: $ENVKIT_SERVE_WORKERS, else 1)",
    )
    parser.add_argument(
        "--max-batch-size",
        metavar="N",
        default=None,
        help="micro-batching: merge concurrent requests into one predict of up to N rows "
        "(default: $ENVKIT_SERVE_MAX_BATCH_SIZE, else off); for models whose predict is "
        "row-independent (python_function row_independent: true; sklearn by default), exit 2 "
        "for others",
    )
    parser.add_argument(
        "--max-latency-ms",
        metavar="MS",
        default=None,
        help="micro-batching: the longest a request waits for others to join its batch "
        "(default: $ENVKIT_SERVE_MAX_LATENCY_MS, else 2)",
    )
    parser.add_argument(
        "--env-manager",
        metavar="NAME",
        default="uv",
        help="where the server runs: uv (default) or virtualenv (the cached environment of the "
        "model's requirements plus envkit[serve]), docker (the model's serving image, on the "
        "host network), or local (this interpreter)",
    )
    parser.add_argument(
        "--max-body-size",
        metavar="SIZE",
        default=None,
        help="largest request body accepted (413 above it), e.g. 512k, 50MB (default: "
        "$ENVKIT_SERVE_MAX_BODY_BYTES, else 50MB)",
    )
    parser.add_argument(
        "--body-timeout",
        metavar="S",
        default=None,
        help="seconds a client may take to send its request headers, and its body (408 after; "
        "default: $ENVKIT_SERVE_BODY_TIMEOUT, else 30)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument("--python", metavar="X.Y", help="serve on this Python version")
    parser.add_argument(
        "--base-image",
        metavar="IMAGE",
        help="--env-manager docker: the Python base image (default python:<X.Y>-slim or "
        "$ENVKIT_DOCKER_BASE_IMAGE)",
    )
    parser.add_argument(
        "--ca-bundle",
        metavar="FILE",
        default="auto",
        help="--env-manager docker: CA bundle for pip during the build (default auto: "
        "$ENVKIT_DOCKER_CA_BUNDLE, else PIP_CERT, SSL_CERT_FILE or REQUESTS_CA_BUNDLE; 'none' "
        "for none)",
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="build a throw-away environment (uv, virtualenv)"
    )
    add_trust_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from envkit.cli._common import trust_kwargs
    from envkit.cli._sandbox_options import progress_display, wants_progress
    from envkit.serving.launch import prepare_server

    with progress_display(
        wants_progress(args)
    ) as progress:  # the spinner ends before the server prints
        server = prepare_server(
            args.model,
            host=args.host,
            port=args.port,
            workers=args.workers,
            env_manager=args.env_manager,
            max_body_bytes=args.max_body_size,
            access_log=args.access_log,
            body_timeout=args.body_timeout,
            python=args.python,
            base_image=args.base_image,
            ca_bundle=args.ca_bundle,
            use_cache=not args.no_cache,
            max_batch_size=args.max_batch_size,
            max_latency_ms=args.max_latency_ms,
            progress=progress,
            **trust_kwargs(args),
        )
    return server.run()
