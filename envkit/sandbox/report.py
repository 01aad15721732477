"""Render a :class:`~envkit.sandbox.validate.ValidationReport` as text, JSON or JUnit XML."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from envkit.sandbox.validate import ValidationReport

FORMATS = ("text", "json", "junit")


def render(report: ValidationReport, fmt: str, *, verbose: bool = False) -> str:
    if fmt == "json":
        return render_json(report, verbose=verbose)
    if fmt == "junit":
        return render_junit(report)
    return render_text(report, verbose=verbose)


def render_json(report: ValidationReport, *, verbose: bool = False) -> str:
    data = report.to_dict()
    if verbose:
        data["model_log"] = report.model_log
    return json.dumps(data, indent=2, default=str) + "\n"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def _rows(report: ValidationReport) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = [("model", report.model)]
    backend = report.backend or "?"
    if report.tools:
        backend += " (" + ", ".join(f"{k} {v}" for k, v in sorted(report.tools.items())) + ")"
    if report.backend_note:
        backend += f"; {report.backend_note}"
    if not report.isolated and report.backend:
        backend += "; NOT isolated"
    rows.append(("backend", backend))
    interp = report.interpreter
    if interp:
        text = f"Python {interp.get('version', '?')}"
        if interp.get("path"):
            text += f" {interp['path']}"
        recorded = interp.get("recorded")
        if recorded and interp.get("requested") != recorded:
            text += f" (--python {interp.get('requested')}; the model recorded {recorded})"
        elif recorded and interp.get("exact"):
            text += f" (matches the recorded {recorded})"
        elif recorded:
            text += f" (the model recorded {recorded})"
        rows.append(("interpreter", text))
    cache = report.cache
    if cache:
        if not cache.get("used"):
            text = f"not cached ({cache.get('reason')})"
        elif cache.get("hit"):
            text = f"cache hit: {cache.get('reason')} [{cache.get('key')}]"
        else:
            text = f"cache miss: {cache.get('reason')}; built [{cache.get('key')}]"
        if cache.get("path"):
            text += f"\n{cache['path']}"
        rows.append(("environment", text))
    spec = report.spec
    if spec:
        reqs = spec.get("requirements") or []
        text = f"{len(reqs)} from {spec.get('source', '?')}: " + ", ".join(reqs)
        for note in report.spec_notes:
            text += f"\n{note}"
        rows.append(("requirements", text))
    t = report.timings
    parts = [f"install {_seconds(t.get('install'))}"]
    for name in ("load", "input", "predict", "stream"):
        if name in t:
            parts.append(f"{name} {_seconds(t[name])}")
    parts.append(f"total {_seconds(t.get('total'))}")
    rows.append(("timings", "  ".join(parts)))
    if report.loader:
        rows.append(("loader", report.loader))
    if report.input and report.input.get("source"):
        text = str(report.input["source"]).replace("_", " ")
        if report.input.get("params"):
            text += f" with params {', '.join(report.input['params'])}"
        rows.append(("input", text))
    if report.output:
        rows.append(("output", _describe(report.output)))
    if report.stream:
        rows.append(
            (
                "stream",
                f"{report.stream.get('chunks')} chunks"
                + (f" ({report.stream['note']})" if report.stream.get("note") else "")
                + ": "
                + str(report.stream.get("preview", "")),
            )
        )
    if report.mismatches:
        rows.append(
            (
                "mismatches",
                "\n".join(f"{m.get('requirement')}: {m.get('problem')}" for m in report.mismatches),
            )
        )
    elif report.output is not None or report.loader:
        overridden = any(note.startswith("--override") for note in report.spec_notes)
        # An override is intended: the requirements row says so, once.
        rows.append(("mismatches", "none (with the --override above)" if overridden else "none"))
    if report.warnings:
        rows.append(("warnings", "\n".join(report.warnings)))
    return rows


def _describe(output: dict[str, Any]) -> str:
    text = str(output.get("type", "?"))
    if output.get("shape") is not None:
        text += f" shape {tuple(output['shape'])}"
    if output.get("dtype"):
        text += f" {output['dtype']}"
    if output.get("preview"):
        text += "\n" + str(output["preview"])
    return text


def render_text(report: ValidationReport, *, verbose: bool = False) -> str:
    lines = [report.headline]
    width = max(len(label) for label, _ in _rows(report))
    for label, value in _rows(report):
        first, *rest = str(value).splitlines() or [""]
        lines.append(f"  {label.ljust(width)}  {first}")
        lines.extend(f"  {' ' * width}  {line}" for line in rest)
    if report.error:
        reasons = report.error.get("reasons")
        if reasons:
            lines.append("  backends:")
            lines.extend(f"    {name}: {why}" for name, why in reasons.items())
        if verbose and report.error.get("detail"):
            lines.append("")
            lines.append(str(report.error["detail"]).rstrip())
    if verbose and report.model_log:
        lines.append("")
        lines.append("model output:")
        lines.append(report.model_log.rstrip())
    return "\n".join(lines) + "\n"


def render_junit(report: ValidationReport) -> str:
    """One ``<testsuite>`` with one ``<testcase>``: a failure (model) or error (environment)."""
    import xml.etree.ElementTree as ET
    from pathlib import Path

    total = report.timings.get("total", 0.0)
    root = ET.Element("testsuites")
    suite = ET.SubElement(
        root,
        "testsuite",
        name="envkit.validate",
        tests="1",
        failures="1" if report.status == "model_failed" else "0",
        errors="1" if report.status in ("env_failed", "bad_input") else "0",
        skipped="0",
        time=f"{total:.3f}",
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("backend", report.backend),
        ("python", report.interpreter.get("version", "")),
        ("cache", "hit" if report.cache.get("hit") else "miss"),
        ("cache_reason", report.cache.get("reason", "")),
        ("env_key", report.cache.get("key", "")),
    ):
        ET.SubElement(properties, "property", name=name, value=str(value or ""))
    case = ET.SubElement(
        suite,
        "testcase",
        classname=f"envkit.validate.{report.backend or 'unknown'}",
        name=Path(report.model).name or report.model,
        time=f"{total:.3f}",
    )
    if report.error:
        tag = "failure" if report.status == "model_failed" else "error"
        element = ET.SubElement(
            case,
            tag,
            message=str(report.error.get("message", "")),
            type=str(report.error.get("kind", "")),
        )
        element.text = str(report.error.get("detail") or report.error.get("message", ""))
    out = ET.SubElement(case, "system-out")
    out.text = render_text(report)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
