"""``envkit deps MODEL``: a model's recorded requirements, their provenance, and this interpreter.

:func:`dependency_report` returns data (:class:`DependencyReport`); the CLI renders it as text
or JSON and turns ``ok == False`` into exit code 1 under ``--check``.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envkit.deps.envfiles import installed_version
from envkit.deps.envvars import read_env_vars_file
from envkit.deps.mismatch import Mismatch, check_requirement, marker_applies
from envkit.deps.provenance import Provenance, RequirementProvenance, read_provenance
from envkit.deps.recorded import read_recorded_environment
from envkit.deps.requirements import requirement_name

__all__ = ["DependencyReport", "RequirementStatus", "dependency_report"]

# Why a recorded requirement does not matter here (see envkit.deps.mismatch.not_needed_for).
NOT_NEEDED_REASON = "envkit loads this model with its own loader"

# RequirementStatus.status values.
STATUS_OK = "ok"
STATUS_MISMATCH = "mismatch"
STATUS_NOT_NEEDED = "not needed"
STATUS_NOT_APPLICABLE = "not applicable"


@dataclass
class RequirementStatus:
    """One recorded requirement, checked against this interpreter.

    ``not_needed`` is set for a requirement envkit does not need to load the model (``mlflow``
    for a model MLflow wrote): it is never a mismatch, whether installed or not.
    """

    requirement: str
    name: str | None
    installed: str | None
    mismatch: Mismatch | None
    provenance: RequirementProvenance | None = None
    not_needed: str | None = None  # why, when it does not matter here
    applicable: bool = True  # False: its environment marker excludes this platform

    @property
    def satisfied(self) -> bool:
        return self.mismatch is None

    @property
    def status(self) -> str:
        if not self.applicable:
            return STATUS_NOT_APPLICABLE
        if self.not_needed:
            return STATUS_NOT_NEEDED
        return STATUS_OK if self.satisfied else STATUS_MISMATCH

    def to_dict(self) -> dict[str, Any]:
        from envkit._subprocess import redact_url

        return {
            "requirement": redact_url(self.requirement),
            "name": self.name,
            "status": self.status,
            "installed": self.installed,
            "satisfied": self.satisfied,
            "mismatch": str(self.mismatch) if self.mismatch else None,
            "note": f"not needed: {self.not_needed}" if self.not_needed else None,
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
    stale_lock: str | None = None  # why requirements.lock no longer matches requirements.txt
    # Installed here, and needed neither by the requirements nor by envkit (the loader).
    unrequested: list[str] = field(default_factory=list)

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
            "stale_lock": self.stale_lock,
            "capture": self.capture,
            "index_url": self.index_url,
            "unresolved_modules": list(self.unresolved_modules),
            "unrequested": list(self.unrequested),
        }


def dependency_report(model_uri: str | os.PathLike[str]) -> DependencyReport:
    """Recorded requirements of the model at ``model_uri``, checked against this interpreter.

    Raises :class:`~envkit.errors.EnvkitError` when the model's environment files are missing
    or invalid (as ``envkit validate`` does), rather than reporting them satisfied.
    """
    from packaging.utils import canonicalize_name

    from envkit.deps.installed import unrequested_distributions
    from envkit.deps.mismatch import check_recorded, not_needed_for
    from envkit.models.model import Model
    from envkit.models.uri import resolve_model_uri

    model_dir = resolve_model_uri(model_uri)
    model = Model.load(model_dir)
    recorded = read_recorded_environment(model_dir, model)
    not_needed = not_needed_for(model)
    skip = {str(canonicalize_name(n)) for n in not_needed}
    provenance = read_provenance(model_dir)
    find = _provenance_finder(provenance)
    rows = [_status(line, skip, find(line)) for line in recorded.lines]
    return DependencyReport(
        model_dir=model_dir,
        python_recorded=recorded.python,
        python_current=platform.python_version(),
        requirements=rows,
        mismatches=check_recorded(recorded, not_needed=not_needed).mismatches,
        env_vars=read_env_vars_file(model_dir),
        has_lock=recorded.has_lock_file,
        stale_lock=recorded.stale_lock,
        has_provenance=provenance is not None,
        capture=provenance.capture.to_dict() if provenance else None,
        index_url=provenance.index.index_url if provenance else None,
        unresolved_modules=provenance.unresolved_modules if provenance else [],
        unrequested=unrequested_distributions(
            [row.requirement for row in rows if row.applicable] + list(recorded.build_dependencies)
        ),
    )


def _provenance_finder(
    provenance: Provenance | None,
) -> Callable[[str], RequirementProvenance | None]:
    """line -> its provenance record: the record of that line, else of that distribution."""
    from envkit._subprocess import redact_url

    by_line = {redact_url(r.requirement): r for r in provenance.requirements} if provenance else {}
    by_name = provenance.by_name() if provenance else {}

    def find(line: str) -> RequirementProvenance | None:
        name = requirement_name(line)
        return by_line.get(redact_url(line)) or (by_name.get(name) if name else None)

    return find


def _status(
    line: str, skip: set[str], provenance: RequirementProvenance | None
) -> RequirementStatus:
    """One recorded line checked here; ``skip`` names the distributions not needed."""
    name = requirement_name(line)
    mismatch = check_requirement(line)
    reason = None
    if name in skip:
        mismatch, reason = None, NOT_NEEDED_REASON
    return RequirementStatus(
        requirement=line,
        name=name,
        installed=installed_version(name) if name else None,
        mismatch=mismatch,
        provenance=provenance,
        not_needed=reason,
        applicable=marker_applies(line),
    )
