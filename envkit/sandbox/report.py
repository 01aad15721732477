"""What ``envkit validate`` found (:class:`ValidationReport`, data), rendered as text, JSON or
JUnit XML."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from envkit.errors import (
    EXIT_OK,
    EnvironmentBuildError,
    EnvkitError,
    ModelFailedError,
    ModelFormatError,
    ModelTimeoutError,
    SchemaEnforcementError,
)

FORMATS = ("text", "json", "junit")


@dataclass
class ValidationReport:
    """What ``envkit validate`` found: where the model ran, how long each step took, its output.

    ``status`` is ``ok``, ``model_failed`` (load/predict error, timeout, schema),
    ``bad_input`` (the model or the input turned out unreadable inside the environment: an
    error envkit raises with exit code 2 in-process, such as a loader module that cannot be
    imported) or ``env_failed`` (the environment could not be built); ``exit_code`` is the
    CLI's.
    """

    model: str
    status: str = "ok"
    exit_code: int = EXIT_OK
    backend: str = ""
    backend_note: str | None = None
    isolated: bool = True
    interpreter: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    spec_notes: list[str] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    loader: str | None = None
    input: dict[str, Any] | None = None
    output: dict[str, Any] | None = None
    stream: dict[str, Any] | None = None
    mismatches: list[dict[str, str]] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)  # --override, as given
    # What held for the model's process (measure -> {"held", "detail"}): containment.py.
    containment: dict[str, Any] | None = None
    # Distributions the environment holds beyond the model's requirements and envkit's runtime
    # (None where the environment is not envkit's to build: local).
    unrequested: list[str] | None = None
    # Remote hosts the model's process reached for ({"stage", "host"}), from the runner.
    network: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None
    model_log: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def headline(self) -> str:
        """One line: what happened and, on failure, what to try."""
        if self.ok:
            where = f"{self.backend}, Python {self.interpreter.get('version', '?')}"
            did = "loaded and predicted" if self.output is not None else "loaded"
            if self.input and self.input.get("source") is None:
                did = "loaded (no input example to predict on; pass --input FILE)"
            return f"OK: the model {did} in a rebuilt environment ({where})"
        from envkit._redact import redact

        message = (self.error or {}).get("message", "failed")
        return redact(f"FAILED: {message}")

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON data, redacted (:mod:`envkit._redact`): no environment value or
        URL password, whatever the model printed or raised."""
        from envkit._redact import redact_data

        data: dict[str, Any] = redact_data(self._data())
        return data

    def _data(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "ok": self.ok,
            "status": self.status,
            "exit_code": self.exit_code,
            "headline": self.headline,
            "backend": self.backend,
            "backend_note": self.backend_note,
            "isolated": self.isolated,
            "interpreter": dict(self.interpreter),
            "spec": dict(self.spec),
            "spec_notes": list(self.spec_notes),
            "cache": dict(self.cache),
            "tools": dict(self.tools),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "loader": self.loader,
            "input": self.input,
            "output": self.output,
            "stream": self.stream,
            "mismatches": list(self.mismatches),
            "overrides": list(self.overrides),
            "containment": self.containment,
            "unrequested": self.unrequested,
            "network": list(self.network),
            "warnings": list(self.warnings),
            "error": self.error,
        }

    def to_error(self) -> EnvkitError | None:
        """The exception that stands for this report's failure (None when it passed): the
        class the sandbox raised, when it was an envkit error with this exit code."""
        if self.ok or self.error is None:
            return None
        message = str(self.error.get("message", "validation failed"))
        detail = self.error.get("detail")
        kind = self.error.get("kind")
        cls: type[EnvkitError]
        if self.status == "env_failed":
            cls = EnvironmentBuildError
        elif self.status == "bad_input":
            cls = ModelFormatError
        elif kind == "timeout":
            cls = ModelTimeoutError
        elif kind == "schema":
            cls = SchemaEnforcementError
        else:
            cls = ModelFailedError
        carried = _error_class(self.error.get("class"), self.exit_code)
        if carried is not None:
            try:
                return carried(message, detail=detail)
            except TypeError:  # a class that needs more than a message (SubprocessError)
                pass
        error = cls(message, detail=detail)
        error.exit_code = self.exit_code or error.exit_code
        return error

    def raise_for_error(self) -> None:
        """Raise the report's failure as an :class:`~envkit.errors.EnvkitError`."""
        error = self.to_error()
        if error is not None:
            raise error


def _error_class(name: Any, exit_code: int) -> type[EnvkitError] | None:
    """The envkit error class called ``name``, when its exit code is ``exit_code``."""
    import envkit.errors

    cls = getattr(envkit.errors, str(name), None) if name else None
    if isinstance(cls, type) and issubclass(cls, EnvkitError) and cls.exit_code == exit_code:
        return cls
    return None


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
    """(label, text) of each row the text report shows, in order; a row without text is left
    out."""
    rows = []
    for label, text_of in _ROWS:
        text = text_of(report)
        if text is not None:
            rows.append((label, text))
    return rows


def _backend_row(report: ValidationReport) -> str:
    backend = report.backend or "?"
    if report.tools:
        backend += " (" + ", ".join(f"{k} {v}" for k, v in sorted(report.tools.items())) + ")"
    if report.backend_note:
        backend += f"; {report.backend_note}"
    if not report.isolated and report.backend:
        backend += "; NOT isolated"
    return backend


def _interpreter_row(report: ValidationReport) -> str | None:
    interp = report.interpreter
    if not interp:
        return None
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
    elif interp.get("assumed"):
        text += f" ({interp['assumed']})"
    return text


def _environment_row(report: ValidationReport) -> str | None:
    cache = report.cache
    if not cache:
        return None
    if not cache.get("used"):
        text = f"not cached ({cache.get('reason')})"
    elif cache.get("hit"):
        text = f"cache hit: {cache.get('reason')} [{cache.get('key')}]"
    else:
        text = f"cache miss: {cache.get('reason')}; built [{cache.get('key')}]"
    if cache.get("path"):
        text += f"\n{cache['path']}"
    return text


def _requirements_row(report: ValidationReport) -> str | None:
    spec = report.spec
    if not spec:
        return None
    reqs = spec.get("requirements") or []
    text = f"{len(reqs)} from {spec.get('source', '?')}: " + ", ".join(reqs)
    for note in report.spec_notes:
        text += f"\n{note}"
    return text


def _timings_row(report: ValidationReport) -> str:
    t = report.timings
    parts = [f"install {_seconds(t.get('install'))}"]
    for name in ("load", "input", "predict", "stream"):
        if name in t:
            parts.append(f"{name} {_seconds(t[name])}")
    parts.append(f"total {_seconds(t.get('total'))}")
    return "  ".join(parts)


def _input_row(report: ValidationReport) -> str | None:
    if not (report.input and report.input.get("source")):
        return None
    text = str(report.input["source"]).replace("_", " ")
    if report.input.get("params"):
        text += f" with params {', '.join(report.input['params'])}"
    return text


def _stream_row(report: ValidationReport) -> str | None:
    if not report.stream:
        return None
    return (
        f"{report.stream.get('chunks')} chunks"
        + (f" ({report.stream['note']})" if report.stream.get("note") else "")
        + ": "
        + str(report.stream.get("preview", ""))
    )


def _mismatches_row(report: ValidationReport) -> str | None:
    if report.mismatches:
        return "\n".join(f"{m.get('requirement')}: {m.get('problem')}" for m in report.mismatches)
    if report.output is None and not report.loader:
        return None
    # An override is intended: the requirements row says so, once.
    return "none (with the --override above)" if report.overrides else "none"


def _containment_row(report: ValidationReport) -> str | None:
    if not report.containment:
        return None
    lines = []
    for name, measure in report.containment.items():
        mark = "held" if measure.get("held") else "NOT HELD"
        lines.append(f"{name}: {mark} ({measure.get('detail')})")
    return "\n".join(lines)


def _unrequested_row(report: ValidationReport) -> str | None:
    if report.unrequested is None:
        return None
    if not report.unrequested:
        return "none (the model's requirements and envkit's runtime only)"
    return ", ".join(report.unrequested) + " (installed, but nothing the model records needs it)"


# The rows of the text report, in order: label -> its text (None: no row).
_ROWS: tuple[tuple[str, Callable[[ValidationReport], str | None]], ...] = (
    ("model", lambda report: report.model),
    ("backend", _backend_row),
    ("interpreter", _interpreter_row),
    ("environment", _environment_row),
    ("requirements", _requirements_row),
    ("timings", _timings_row),
    ("loader", lambda report: report.loader or None),
    ("input", _input_row),
    ("output", lambda report: _describe(report.output) if report.output else None),
    ("stream", _stream_row),
    ("mismatches", _mismatches_row),
    ("unrequested", _unrequested_row),
    ("containment", _containment_row),
    ("warnings", lambda report: "\n".join(report.warnings) if report.warnings else None),
)


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
