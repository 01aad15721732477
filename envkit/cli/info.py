"""``envkit info MODEL``: flavors, signature, files and sizes."""

from __future__ import annotations

import argparse
import json
from typing import Any

from envkit.cli._common import add_format_option, add_model_command, add_trust_options


def register(subparsers: Any) -> None:
    parser = add_model_command(
        subparsers,
        "info",
        run,
        help="show a model's flavors, signature, environment, files and sizes",
        description="Show a model's flavors, signature, environment, files and sizes, and the "
        "verdict of the scan of its pickles (exit 1 when one calls a dangerous global).",
    )
    add_format_option(parser)
    add_trust_options(parser)


def run(args: argparse.Namespace) -> int:
    from envkit.deps.describe import describe_model
    from envkit.models.scan import ModelTrust, ensure_safe
    from envkit.models.uri import resolve_model_uri

    info = describe_model(args.model)  # (reads the MLmodel; loads no pickle)
    scan = ensure_safe(
        resolve_model_uri(args.model),
        ModelTrust.of(args.trust_model, tuple(args.trust_type), args.strict_scan or None),
    )
    info["scan"] = scan.to_dict() if scan is not None else {"verdict": "not scanned (trusted)"}
    if args.format == "json":
        print(json.dumps(info, indent=2, default=str))
    else:
        print(render_text(info))
    return 0


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _created(info: dict[str, Any]) -> str:
    """The creation time the MLmodel records (``time_created``: older MLflow, no time zone)."""
    if info.get("utc_time_created"):
        return f"{info['utc_time_created']} UTC"
    if info.get("time_created"):
        return f"{info['time_created']} (as recorded in time_created)"
    return "unknown (not recorded)"


def wheels_lines(wheels: dict[str, Any] | None) -> list[str]:
    """A wheeled model's wheels: how many, their size, the platform, the misfits here."""
    if not wheels:
        return []
    lines = [
        f"wheels: {len(wheels['files'])} ({human_size(wheels['total_bytes'])}), made for "
        f"{wheels.get('platform') or 'an unknown platform'}"
    ]
    if wheels["not_for_this_platform"]:
        lines.append("  not for this platform: " + ", ".join(wheels["not_for_this_platform"]))
    return lines


_SHOWN_KEYS = (
    "loader_module",
    "predict_fn",
    "model_class",
    "model_type",
    "model_format",
    "serialization_format",
    "save_format",
)


def _shown_keys(name: str, conf: dict[str, Any]) -> list[str]:
    """The flavor keys ``info`` shows: what loads the model, its class and format, and a
    library flavor's version (``sklearn_version``, ``xgb_version``...)."""
    if name == "python_function":
        return list(_SHOWN_KEYS)
    return [*_SHOWN_KEYS, *(k for k in conf if k.endswith("_version"))]


def render_text(info: dict[str, Any]) -> str:
    """``describe_model`` output as readable text."""
    lines = [f"model: {info['path']}"]
    made_by = [f"envkit {info['envkit_version']}"] if info.get("envkit_version") else []
    if info.get("mlflow_version"):
        made_by.append(f"MLflow {info['mlflow_version']}")
    lines.append(f"  created: {_created(info)} by {', '.join(made_by) or 'unknown'}")
    lines.append(f"  uuid: {info['model_uuid'] or 'unknown (not recorded)'}")
    if info.get("run_id"):
        lines.append(f"  run: runs:/{info['run_id']}/{info['artifact_path']}")
    lines.append("flavors:")
    for name, conf in info["flavors"].items():
        details = ", ".join(f"{k}={conf[k]}" for k in _shown_keys(name, conf) if conf.get(k))
        lines.append(f"  {name}" + (f" ({details})" if details else ""))
    signature = info.get("signature")
    lines.append("signature:" + ("" if signature else " none"))
    if signature:
        for part in ("inputs", "outputs", "params"):
            if signature.get(part):
                lines.append(f"  {part}: {signature[part]}")
    example = info.get("saved_input_example_info")
    if example:
        lines.append(f"input example: {example.get('artifact_path')} ({example.get('type')})")
    env = info.get("environment") or {}
    if env:
        lines.append(f"environment: python {env.get('python', '?')}")
        for req in env.get("requirements", []):
            lines.append(f"  {req}")
        if env.get("payloads"):
            lines.append(f"payloads: {env['payloads']}")
    if info.get("env_vars"):
        lines.append("environment variables read: " + ", ".join(info["env_vars"]))
    if info.get("scan"):
        lines.append(f"pickle scan: {scan_summary(info['scan'])}")
    lines.extend(wheels_lines(info.get("wheels")))
    lines.append(f"files ({human_size(info['total_size'])}):")
    for entry in info["files"]:
        lines.append(f"  {human_size(entry['size']):>9}  {entry['path']}")
    return "\n".join(lines)


def scan_summary(scan: dict[str, Any]) -> str:
    """One line: the verdict, the files scanned and the globals outside the safe list."""
    files = scan.get("files")
    if files is None:
        return str(scan["verdict"])
    unknown = sorted({name for f in files for name in f["unknown"]})
    text = f"{scan['verdict']} ({len(files)} pickle file{'s' if len(files) != 1 else ''})"
    return text + (f"; unknown globals: {', '.join(unknown)}" if unknown else "")
