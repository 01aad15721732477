"""Compare a model's requirements with a target environment described by a file.

``envkit deps MODEL --check --against FILE``: the target is a requirements or lock file (a
serving image's ``pip freeze``, a ``requirements.lock``), read without building anything. Each
requirement of the model is *satisfied* (the target pins a version inside its specifier, or
has the distribution of a URL requirement), *violated* (the target pins a version outside it)
or *lacking* (the target does not have it). Requirements whose marker excludes this platform
are *not applicable*. The check fails on any violated or lacking requirement.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envkit.errors import UsageError

__all__ = ["AgainstReport", "TargetRow", "check_against", "read_target"]

SATISFIED = "satisfied"
VIOLATED = "violated"
LACKING = "lacking"
NOT_APPLICABLE = "n/a"


@dataclass(frozen=True)
class TargetRow:
    """One requirement of the model against the target."""

    requirement: str
    name: str
    status: str
    target: str | None  # what the target has: a version, "unpinned" or a URL's name

    def to_dict(self) -> dict[str, Any]:
        return {
            "requirement": self.requirement,
            "name": self.name,
            "status": self.status,
            "target": self.target,
        }


@dataclass
class AgainstReport:
    model_dir: Path
    target_file: Path
    target_size: int
    rows: list[TargetRow] = field(default_factory=list)

    @property
    def failed(self) -> list[TargetRow]:
        return [r for r in self.rows if r.status in (VIOLATED, LACKING)]

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": str(self.model_dir),
            "against": str(self.target_file),
            "ok": self.ok,
            "target_distributions": self.target_size,
            "requirements": [r.to_dict() for r in self.rows],
        }


def read_target(path: str | os.PathLike[str]) -> dict[str, str | None]:
    """``canonical name -> pinned version`` (None: present, not pinned) of a requirements or
    lock file (``-r`` includes followed)."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    from envkit.deps.requirements import read_requirements_file, split_hashes

    target = Path(path)
    if not target.is_file():
        raise UsageError(f"--against {path}: no such file")
    found: dict[str, str | None] = {}
    for line in read_requirements_file(target):
        if line.startswith("-"):
            continue
        try:
            requirement = Requirement(split_hashes(line)[0])
        except InvalidRequirement:
            continue
        pins = [s.version for s in requirement.specifier if s.operator in ("==", "===")]
        found[canonicalize_name(requirement.name)] = pins[0] if len(pins) == 1 else None
    return found


def check_against(
    model_uri: str | os.PathLike[str], target_file: str | os.PathLike[str]
) -> AgainstReport:
    """Each recorded requirement of the model against the target file (see the module doc)."""
    from envkit.deps.recorded import read_recorded_environment
    from envkit.models.uri import resolve_model_uri

    model_dir = resolve_model_uri(model_uri)
    target = read_target(target_file)
    recorded = read_recorded_environment(model_dir)
    report = AgainstReport(model_dir, Path(target_file), len(target))
    for line in recorded.listed.requirements:
        report.rows.append(_row(line, target))
    return report


def _row(line: str, target: dict[str, str | None]) -> TargetRow:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    from envkit.deps.mismatch import marker_applies
    from envkit.deps.requirements import split_hashes

    text = split_hashes(line)[0]
    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        return TargetRow(text, text, LACKING, None)
    name = canonicalize_name(requirement.name)
    if not marker_applies(requirement):
        return TargetRow(text, name, NOT_APPLICABLE, target.get(name))
    if name not in target:
        return TargetRow(text, name, LACKING, None)
    version = target[name]
    if requirement.url or not requirement.specifier:
        return TargetRow(text, name, SATISFIED, version or "unpinned")
    if version is None:
        return TargetRow(text, name, VIOLATED, "unpinned")
    try:
        inside = requirement.specifier.contains(Version(version), prereleases=True)
    except InvalidVersion:
        inside = False
    return TargetRow(text, name, SATISFIED if inside else VIOLATED, version)


def render_against(report: AgainstReport) -> str:
    from envkit._subprocess import redact_url

    marks = {SATISFIED: "ok", VIOLATED: "VIOLATED", LACKING: "LACKING", NOT_APPLICABLE: "n/a"}
    lines = [
        f"model: {report.model_dir}",
        f"against: {report.target_file} ({report.target_size} distributions)",
    ]
    for row in report.rows:
        where = f"target: {row.target}" if row.target else "not in the target"
        lines.append(f"  [{marks[row.status]:>8}] {redact_url(row.requirement)}  ({where})")
    counts = {s: sum(r.status == s for r in report.rows) for s in (VIOLATED, LACKING)}
    if report.ok:
        lines.append(f"the target satisfies the model's {len(report.rows)} requirements")
    else:
        lines.append(
            f"the target violates {counts[VIOLATED]} and lacks {counts[LACKING]} of the "
            f"model's {len(report.rows)} requirements"
        )
    return "\n".join(lines)
