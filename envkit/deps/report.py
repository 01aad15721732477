"""``envkit deps MODEL``: a model's recorded requirements, their provenance, and this interpreter.

:func:`dependency_report` returns data (:class:`DependencyReport`); the CLI renders it as text
or JSON and turns ``ok == False`` into exit code 1 under ``--check``.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envkit.deps.envfiles import LOCK_FILE, installed_version, requirement_name
from envkit.deps.envvars import read_env_vars_file
from envkit.deps.mismatch import (
    Mismatch,
    check_requirement,
    recorded_python,
    recorded_requirements,
)
from envkit.deps.provenance import RequirementProvenance, read_provenance

__all__ = ["DependencyReport", "RequirementStatus", "dependency_report"]


@dataclass
class RequirementStatus:
    requirement: str
    name: str | None
    installed: str | None
    mismatch: Mismatch | None
    provenance: RequirementProvenance | None = None

    @property
    def satisfied(self) -> bool:
        return self.mismatch is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "requirement": self.requirement,
            "name": self.name,
            "installed": self.installed,
            "satisfied": self.satisfied,
            "mismatch": str(self.mismatch) if self.mismatch else None,
            "provenance": self.provenance.to_dict() if self.provenance else None,
        }


@dataclass
class DependencyReport:
    model_dir: Path
    python_recorded: str | None
    python_current: str
    requirements: list[RequirementStatus]
    mismatches: list[Mismatch]
    env_vars: list[str] = field(default_factory=list)
    has_lock: bool = False
    has_provenance: bool = False
    capture: dict[str, Any] | None = None
    index_url: str | None = None
    unresolved_modules: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": str(self.model_dir),
            "ok": self.ok,
            "python": {"recorded": self.python_recorded, "current": self.python_current},
            "requirements": [r.to_dict() for r in self.requirements],
            "mismatches": [m.to_dict() for m in self.mismatches],
            "env_vars": list(self.env_vars),
            "lock": self.has_lock,
            "capture": self.capture,
            "index_url": self.index_url,
            "unresolved_modules": list(self.unresolved_modules),
        }


def dependency_report(model_uri: str | os.PathLike[str]) -> DependencyReport:
    """Recorded requirements of the model at ``model_uri``, checked against this interpreter."""
    from packaging.utils import canonicalize_name

    from envkit.deps.mismatch import find_mismatches, not_needed_for
    from envkit.models.model import Model
    from envkit.models.uri import resolve_model_uri

    model_dir = resolve_model_uri(model_uri)
    not_needed = not_needed_for(Model.load(model_dir))
    skip = {str(canonicalize_name(n)) for n in not_needed}
    provenance = read_provenance(model_dir)
    by_line = {r.requirement: r for r in provenance.requirements} if provenance else {}
    by_name = provenance.by_name() if provenance else {}
    rows = []
    for line in recorded_requirements(model_dir):
        name = requirement_name(line)
        mismatch = check_requirement(line)
        if name in skip:
            mismatch = None
        rows.append(
            RequirementStatus(
                requirement=line,
                name=name,
                installed=installed_version(name) if name else None,
                mismatch=mismatch,
                provenance=by_line.get(line) or (by_name.get(name) if name else None),
            )
        )
    mismatches = find_mismatches(model_dir, not_needed=not_needed)
    return DependencyReport(
        model_dir=model_dir,
        python_recorded=recorded_python(model_dir),
        python_current=platform.python_version(),
        requirements=rows,
        mismatches=mismatches,
        env_vars=read_env_vars_file(model_dir),
        has_lock=(model_dir / LOCK_FILE).is_file(),
        has_provenance=provenance is not None,
        capture=provenance.capture.to_dict() if provenance else None,
        index_url=provenance.index.index_url if provenance else None,
        unresolved_modules=provenance.unresolved_modules if provenance else [],
    )
