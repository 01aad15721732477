"""Validate a model over a matrix of interpreters and requirement override sets.

:func:`matrix` runs one :func:`~envkit.sandbox.validate.validate` per cell (each Python of
``pythons`` times each override set of ``override_sets``, applied as ``--override`` is), up to
``jobs`` at a time. The cells share envkit's environment cache (a cell whose environment
another cell already built is a cache hit) and uv's package cache. An interpreter that is not
on this machine makes its cells *skipped*, with the reason, unless ``strict``. The
:class:`MatrixReport` has one :class:`CellResult` per cell; its exit code is the worst cell's.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envkit.errors import EXIT_ENV_FAILED, EXIT_OK, UsageError

__all__ = ["CellResult", "MatrixCell", "MatrixReport", "expand_pythons", "matrix"]

RECORDED = "recorded"
SKIPPED = "skipped"


@dataclass(frozen=True)
class MatrixCell:
    """One combination: a Python (``None``: the recorded one) and an override set."""

    python: str | None
    overrides: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        python = f"py{self.python}" if self.python else "py(recorded)"
        return " ".join([python, *self.overrides])


@dataclass
class CellResult:
    """How one cell went: ``status`` is a validation status or ``skipped``."""

    cell: MatrixCell
    status: str
    exit_code: int
    reason: str = ""
    interpreter: str = ""
    resolved: dict[str, str] = field(default_factory=dict)  # overridden name -> version
    build_seconds: float = 0.0
    run_seconds: float = 0.0
    report: Any = None  # the cell's ValidationReport (None when skipped)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cell": self.cell.label,
            "python": self.cell.python or RECORDED,
            "overrides": list(self.cell.overrides),
            "status": self.status,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "interpreter": self.interpreter,
            "resolved": dict(self.resolved),
            "build_seconds": round(self.build_seconds, 3),
            "run_seconds": round(self.run_seconds, 3),
        }


@dataclass
class MatrixReport:
    """Every cell of a matrix run, in the order of the cells."""

    model: str
    results: list[CellResult]
    jobs: int
    wall_seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """The worst cell's (0 ok, 1 model failed, 2 bad input, 3 environment)."""
        return max((r.exit_code for r in self.results), default=EXIT_OK)

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "jobs": self.jobs,
            "wall_seconds": round(self.wall_seconds, 3),
            "cells": [r.to_dict() for r in self.results],
        }


def expand_pythons(values: Iterable[str]) -> list[str | None]:
    """``recorded`` -> None; ``3.9-3.13`` -> each minor version; ``3.11`` as is (in order,
    without repeats)."""
    out: list[str | None] = []
    for value in values:
        for python in _expand_one(value.strip()):
            if python not in out:
                out.append(python)
    return out or [None]


def _expand_one(value: str) -> list[str | None]:
    if value == RECORDED:
        return [None]
    span = re.fullmatch(r"(\d+)\.(\d+)\s*-\s*(\d+)\.(\d+)", value)
    if span:
        major, low, major_end, high = (int(g) for g in span.groups())
        if major != major_end or low > high:
            raise UsageError(f"--python {value!r}: give a range of one major version, low-high")
        return [f"{major}.{minor}" for minor in range(low, high + 1)]
    if not re.fullmatch(r"\d+\.\d+(\.\d+)?", value):
        raise UsageError(f"--python {value!r}: expected 'recorded', 3.11, 3.11.7 or 3.9-3.13")
    return [value]


def matrix(
    model_uri: str | os.PathLike[str],
    *,
    pythons: Sequence[str] = (RECORDED,),
    override_sets: Sequence[Sequence[str]] = (),
    jobs: int | None = None,
    env_manager: str = "uv",
    strict: bool = False,
    progress_for: Callable[[str], Callable[[str, str], None]] | None = None,
    **validate_options: Any,
) -> MatrixReport:
    """Validate the model in every cell of ``pythons`` x ``override_sets`` (see the module
    doc); ``validate_options`` are :func:`~envkit.sandbox.validate.validate`'s other keywords
    (``timeout``, ``use_cache``, ``contain``, ``trust_model``...). ``progress_for(label)``
    gives the progress callback of the cell with that label (a line per cell on a terminal)."""
    for bad in ("python", "overrides", "pip_requirements_override", "progress"):
        if bad in validate_options:
            raise UsageError(f"matrix() takes pythons= and override_sets=, not {bad}=")
    if isinstance(override_sets, str) or any(
        isinstance(one_set, str) or any(not isinstance(r, str) for r in one_set)
        for one_set in override_sets
    ):
        raise UsageError("override_sets must be a list of lists of requirements")
    sets = [tuple(one_set) for one_set in override_sets] or [()]
    cells = [MatrixCell(p, o) for p, o in itertools.product(expand_pythons(pythons), sets)]
    workers = max(1, jobs if jobs is not None else (os.cpu_count() or 1))
    started = time.perf_counter()

    def run_one(cell: MatrixCell) -> CellResult:
        options = dict(validate_options)
        if progress_for is not None:
            options["progress"] = progress_for(cell.label)
        return _run_cell(model_uri, cell, env_manager, strict, options)

    with ThreadPoolExecutor(max_workers=min(workers, len(cells))) as pool:
        results = list(pool.map(run_one, cells))
    return MatrixReport(str(model_uri), results, workers, time.perf_counter() - started)


def _run_cell(
    model_uri: str | os.PathLike[str],
    cell: MatrixCell,
    env_manager: str,
    strict: bool,
    options: Mapping[str, Any],
) -> CellResult:
    from envkit.sandbox.validate import validate

    missing = _missing_interpreter(cell.python, env_manager)
    if missing is not None:
        if strict:
            return CellResult(cell, "env_failed", EXIT_ENV_FAILED, missing)
        return CellResult(cell, SKIPPED, EXIT_OK, missing)
    report = validate(
        model_uri, env_manager=env_manager, python=cell.python, overrides=cell.overrides,
        **options,
    )  # fmt: skip
    timings = report.timings
    return CellResult(
        cell,
        report.status,
        report.exit_code,
        reason="" if report.ok else str((report.error or {}).get("message", "")),
        interpreter=str(report.interpreter.get("version", "")),
        resolved=_resolved(report, cell.overrides),
        build_seconds=timings.get("install", 0.0),
        run_seconds=timings.get("run", 0.0),
        report=report,
    )


def _missing_interpreter(python: str | None, env_manager: str) -> str | None:
    """Why ``python`` cannot be had here (venv backends use this machine's interpreters)."""
    if python is None or env_manager not in ("uv", "virtualenv", "auto"):
        return None
    from envkit.errors import InterpreterNotFoundError
    from envkit.sandbox.interpreters import find_interpreter

    try:
        find_interpreter(python)
    except InterpreterNotFoundError as exc:
        return f"no Python {python} on this machine ({exc.message})"
    return None


def _resolved(report: Any, overrides: Sequence[str]) -> dict[str, str]:
    """The versions the cell's environment holds of the packages its overrides name."""
    from importlib.metadata import distributions

    from packaging.utils import canonicalize_name

    from envkit.deps.requirements import requirement_name

    path = (report.cache or {}).get("path")
    if not overrides or not path:
        return {}
    wanted = {canonicalize_name(requirement_name(r) or r) for r in overrides}
    sites = [str(p) for p in Path(path).glob("lib/python*/site-packages")]
    found: dict[str, str] = {}
    for dist in distributions(path=sites):
        name = canonicalize_name(dist.metadata["Name"] or "")
        if name in wanted:
            found[name] = dist.version
    return found


# --- rendering ---------------------------------------------------------------------------------


def render(report: MatrixReport, fmt: str) -> str:
    """The report as ``text`` (a table), ``json`` or ``junit`` (one test case per cell)."""
    renderers: Mapping[str, Callable[[MatrixReport], str]] = {
        "text": render_text,
        "json": render_json,
        "junit": render_junit,
    }
    return renderers[fmt](report)


def render_json(report: MatrixReport) -> str:
    import json

    from envkit._redact import redact_data

    return json.dumps(redact_data(report.to_dict()), indent=2) + "\n"


def render_text(report: MatrixReport) -> str:
    header = ("cell", "interpreter", "resolved", "build", "run", "status", "reason")
    rows = [header]
    for r in report.results:
        resolved = ", ".join(f"{k}=={v}" for k, v in sorted(r.resolved.items())) or "-"
        rows.append(
            (
                r.cell.label,
                r.interpreter or "-",
                resolved,
                f"{r.build_seconds:.1f}s",
                f"{r.run_seconds:.1f}s",
                r.status,
                r.reason.splitlines()[0] if r.reason else "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1]
        for row in rows
    ]
    counts: dict[str, int] = {}
    for r in report.results:
        counts[r.status] = counts.get(r.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    verdict = "OK" if report.ok else "FAILED"
    lines.append(
        f"{verdict}: {len(report.results)} cells ({summary}) in {report.wall_seconds:.1f}s, "
        f"{report.jobs} at a time"
    )
    from envkit._redact import redact

    return redact("\n".join(line.rstrip() for line in lines)) + "\n"


def render_junit(report: MatrixReport) -> str:
    """One ``<testsuite>``, one ``<testcase>`` per cell (failure, error or skipped)."""
    import xml.etree.ElementTree as ET

    from envkit._redact import redact

    root = ET.Element("testsuites")
    suite = ET.SubElement(
        root,
        "testsuite",
        name="envkit.matrix",
        tests=str(len(report.results)),
        failures=str(sum(r.status == "model_failed" for r in report.results)),
        errors=str(sum(r.status in ("env_failed", "bad_input") for r in report.results)),
        skipped=str(sum(r.status == SKIPPED for r in report.results)),
        time=f"{report.wall_seconds:.3f}",
    )
    for r in report.results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname="envkit.matrix",
            name=r.cell.label,
            time=f"{r.build_seconds + r.run_seconds:.3f}",
        )
        tag = {"model_failed": "failure", SKIPPED: "skipped"}.get(r.status, "error")
        if r.status != "ok":
            ET.SubElement(case, tag, message=redact(r.reason), type=r.status)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
