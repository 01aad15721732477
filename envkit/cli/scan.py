"""``envkit scan MODEL``: what the model's pickles would call when loaded, without loading them."""

from __future__ import annotations

import argparse
import json
from typing import Any

from envkit.cli._common import (
    add_format_option,
    add_model_command,
    add_trust_type_option,
)


def register(subparsers: Any) -> None:
    parser = add_model_command(
        subparsers,
        "scan",
        run,
        help="scan the model's pickles for globals that run code when loaded",
        description=(
            "List, per pickle-based file of the model (pickle, cloudpickle, joblib, and the "
            "pickles inside zip archives such as torch's model.pth), the "
            "globals it calls when unpickled, without loading it: safe, dangerous (commands, "
            "code, files, network: os.system, builtins.eval, subprocess...) or unknown (not on "
            "envkit's safe list, such as the model's own classes; loading allows them unless "
            "--strict-scan). Exit codes: 0 safe; 1 a dangerous global (or an unknown one, "
            "with --strict-scan); 2 unreadable model or pickle."
        ),
    )
    add_format_option(parser)
    add_trust_type_option(parser)


def run(args: argparse.Namespace) -> int:
    from envkit.models.scan import ModelTrust, scan_model
    from envkit.models.uri import resolve_model_uri

    strict = args.strict_scan or ModelTrust.of(False, (), None).strict
    scan = scan_model(resolve_model_uri(args.model), args.trust_type, strict=strict)
    if args.format == "json":
        print(json.dumps(scan.to_dict(), indent=2))
    else:
        print(render_text(scan.to_dict()))
    return scan.exit_code


def render_text(data: dict[str, Any]) -> str:
    lines = [f"model: {data['model']} ({data['scanner']})"]
    if not data["files"]:
        lines.append("  no pickle-based files")
    for entry in data["files"]:
        lines.append(f"  {entry['path']}: {entry['verdict']}")
        if entry.get("error"):
            lines.append(f"    {entry['error']}")
        for kind in ("dangerous", "unknown"):
            if entry[kind]:
                lines.append(f"    {kind} globals: {', '.join(entry[kind])}")
        if entry.get("partial"):
            lines.append("    (parsed in part: joblib's inline arrays, or a corrupt file)")
    lines.append(f"verdict: {data['verdict']}")
    return "\n".join(lines)
