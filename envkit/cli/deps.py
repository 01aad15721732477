"""``envkit deps``, ``envkit infer`` and ``envkit lock``: a model's recorded requirements.

envkit deps MODEL [--check] [--format text|json]   exit 1 under --check when unsatisfied
envkit infer MODEL [--write] [--format text|json]  re-capture; show the diff (and write it)
envkit lock MODEL [--tool uv|pip-tools]            write requirements.lock (pinned, hashed)
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from envkit.cli._common import (
    add_format_option,
    add_model_command,
    add_timeout_option,
    add_trust_options,
    trust_kwargs,
)
from envkit.cli._sandbox_options import add_quiet_option
from envkit.errors import EXIT_MODEL_FAILED, EXIT_OK


def register(subparsers: Any) -> None:
    deps = add_model_command(
        subparsers,
        "deps",
        run_deps,
        help="list a model's requirements with their provenance; --check them here",
        description=(
            "List the requirements a model records, where each came from, and whether this "
            "interpreter satisfies them. With --check, exit 1 when it does not."
        ),
    )
    deps.add_argument(
        "--check",
        action="store_true",
        help="exit 1 when this environment does not satisfy the requirements (for CI)",
    )
    deps.add_argument(
        "--against",
        metavar="FILE",
        help="compare with the environment FILE describes (a requirements or lock file, such "
        "as the serving image's pip freeze) instead of this interpreter; builds nothing; exit 1 "
        "when it violates or lacks a requirement",
    )
    add_format_option(deps)

    infer = add_model_command(
        subparsers,
        "infer",
        run_infer,
        help="re-capture a model's requirements and show the difference",
        description=(
            "Load the model in a fresh process (and predict on its input example), infer its "
            "requirements as a save would, and show how they differ from what it records. "
            "Works for models MLflow wrote too."
        ),
    )
    infer.add_argument(
        "--write",
        action="store_true",
        help="rewrite the model's environment files, provenance and metadata with the result",
    )
    add_timeout_option(infer, "seconds the model may take to load and predict (default 120)")
    add_format_option(infer)
    add_trust_options(infer)

    lock = add_model_command(
        subparsers,
        "lock",
        run_lock,
        help="write requirements.lock: every transitive requirement pinned, with hashes",
        description=(
            "Resolve the model's requirements.txt for the Python it records and write a fully "
            "pinned, hashed requirements.lock next to it (uv pip compile or pip-compile). "
            "Validation installs the lock when it is present."
        ),
    )
    lock.add_argument(
        "--tool",
        choices=("uv", "pip-tools"),
        default=None,
        help="the resolver to use (default: uv when available)",
    )
    add_timeout_option(lock, "seconds resolution may take (default 600)")
    add_quiet_option(lock)


def run_deps(args: argparse.Namespace) -> int:
    from envkit.deps.report import dependency_report

    if args.against:
        return _run_against(args)

    report = dependency_report(args.model)
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(render_deps(report))
    if args.check and not report.ok:
        return EXIT_MODEL_FAILED
    return EXIT_OK


def _run_against(args: argparse.Namespace) -> int:
    from envkit._redact import redact_data
    from envkit.deps.against import check_against, render_against

    report = check_against(args.model, args.against)
    if args.format == "json":
        print(json.dumps(redact_data(report.to_dict()), indent=2))
    else:
        print(render_against(report))
    return EXIT_OK if report.ok else EXIT_MODEL_FAILED


def _capture_lines(capture: dict[str, Any]) -> list[str]:
    """How the requirements were captured: ``partial`` says what is missing and why."""
    status = capture.get("status")
    reason = capture.get("reason")
    if status == "partial":
        lines = [f"capture: partial: requirements were captured without a prediction ({reason})"]
    else:
        lines = [f"capture: {status}" + (f" ({reason})" if reason else "")]
    static = capture.get("static") or []
    if static:
        lines.append("read from the model's code and pickles (source static): " + ", ".join(static))
    return lines


def render_deps(report: Any) -> str:
    from envkit._subprocess import redact_url
    from envkit.deps.provenance import origin

    lines = [f"model: {report.model_dir}"]
    python = report.python_recorded or "not recorded"
    lines.append(f"python: {python} (this interpreter: {report.python_current})")
    if report.capture:
        lines.extend(_capture_lines(report.capture))
    if report.index_url:
        lines.append(f"index: {report.index_url}")
    lines.append("requirements:")
    if not report.requirements:
        lines.append("  (none)")
    for row in report.requirements:
        # The line as requirements.txt has it; the provenance says where it came from (and
        # that it was edited by hand when the capture recorded another line for that name).
        text = redact_url(row.requirement)  # CI logs are kept: no index password in them
        if row.provenance is not None:
            note = origin(row.provenance)
            if row.provenance.requirement != redact_url(row.requirement):
                note = f"edited after the capture, which recorded {row.provenance.requirement}"
            text = f"{text}  ({note})"
        if not row.applicable:
            lines.append(f"  [{'n/a':>10}] {text}: its marker excludes this platform")
            continue
        if row.not_needed:
            lines.append(f"  [not needed] {text}: {row.not_needed}")
            continue
        mark = "ok" if row.satisfied else "MISMATCH"
        lines.append(f"  [{mark:>10}] {text}")
        if not row.satisfied:
            installed = f"installed {row.installed}" if row.installed else "not installed"
            lines.append(f"               {installed}")
    if report.env_vars:
        lines.append("environment variables read at inference: " + ", ".join(report.env_vars))
    if report.unresolved_modules:
        lines.append(
            "modules no distribution provides (ship them with code_paths): "
            + ", ".join(report.unresolved_modules)
        )
    lock = "requirements.lock" if report.has_lock else "none (envkit lock MODEL)"
    if report.stale_lock:
        lock += f" -- {report.stale_lock}"
    lines.append(f"lock: {lock}")
    lines.append(_unrequested_line(report.unrequested))
    if report.mismatches:
        lines.append("this environment does not satisfy the model:")
        lines.extend(f"  - {m}" for m in report.mismatches)
    else:
        lines.append("this environment satisfies the model's requirements")
    return "\n".join(lines)


SHOWN_UNREQUESTED = 12


def _unrequested_line(names: list[str]) -> str:
    """What this environment holds that neither the model nor envkit needs (none, in a
    deployment made from the model's files)."""
    if not names:
        return "beyond the requirements: nothing (this environment holds what the model needs)"
    shown = ", ".join(names[:SHOWN_UNREQUESTED])
    more = len(names) - SHOWN_UNREQUESTED
    if more > 0:
        shown += f" and {more} more (--format json lists them)"
    return f"beyond the requirements: {len(names)} installed distributions nothing needs: {shown}"


def run_infer(args: argparse.Namespace) -> int:
    import sys

    from envkit._subprocess import check_timeout
    from envkit.deps.infer import infer_model_requirements, write_inferred

    timeout = check_timeout(args.timeout, "--timeout")
    result = infer_model_requirements(args.model, timeout=timeout, **trust_kwargs(args))
    if args.write and not result.up_to_date:
        write_inferred(result)
    if args.format == "json":
        data = result.to_dict()
        data["written"] = bool(args.write and not result.up_to_date)
        print(json.dumps(data, indent=2))
    else:
        for message in result.decision.messages:
            print(f"warning: {message}", file=sys.stderr)
        print(render_infer(result, written=bool(args.write)))
    return EXIT_OK


def render_infer(result: Any, *, written: bool) -> str:
    lines = [f"model: {result.model_dir}"]
    if result.up_to_date:
        lines.append("the recorded requirements match what the model imports")
        return "\n".join(lines)
    if result.changes:
        lines.append("requirements (recorded -> inferred):")
        lines.extend(f"  {change}" for change in result.changes)
    if result.python_changed:
        import platform

        lines.append(f"python: {result.python_recorded} -> {platform.python_version()}")
    if result.env_vars_changed:
        lines.append(
            "environment variables: "
            f"{', '.join(result.env_vars_recorded) or 'none'} -> "
            f"{', '.join(result.decision.env_vars) or 'none'}"
        )
    lines.append("written to the model" if written else "run with --write to record this")
    return "\n".join(lines)


def run_lock(args: argparse.Namespace) -> int:
    from envkit._subprocess import check_timeout
    from envkit.cli._sandbox_options import progress_display, wants_progress
    from envkit.deps.lock import lock_model

    timeout = check_timeout(args.timeout, "--timeout")
    with progress_display(wants_progress(args)) as progress:
        if progress is not None:
            progress("resolve", f"resolving {args.model}'s requirements ({args.tool or 'uv'})")
        result = lock_model(args.model, tool=args.tool, timeout=timeout)
    print(f"wrote {result.path} ({result.pinned} pinned requirements, {result.tool})")
    return EXIT_OK
