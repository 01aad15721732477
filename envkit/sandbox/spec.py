"""What an environment is made of: :class:`EnvSpec`, read from a model's environment files.

An ``EnvSpec`` is normalized (requirement names canonicalized, duplicates removed, sorted) so
that two models that need the same environment get the same cache key, and two specs can be
compared requirement by requirement ("removed X, added Y").
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envkit.deps.envfiles import LOCK_FILE
from envkit.deps.requirements import option_name, option_value, parse_requirement_line
from envkit.deps.requirements import requirement_name as requirement_name
from envkit.errors import InvalidRequirementError

if TYPE_CHECKING:
    from envkit.deps.recorded import RecordedEnvironment, RecordedLock

# Bump when the meaning of a spec (or how an environment is built from it) changes, so that
# environments built by an older envkit are not reused.
SPEC_FORMAT = 1

# Requirement-file options that change *where* packages come from; they are kept in the spec
# (and the requirements file handed to the installer). Everything else is refused.
_SOURCE_OPTIONS = (
    "--index-url",
    "-i",
    "--extra-index-url",
    "--find-links",
    "-f",
    "--pre",
    "--no-binary",
    "--only-binary",
    "--prefer-binary",
    "--trusted-host",
)


def current_platform() -> str:
    """``<sys.platform>-<machine>``, e.g. ``linux-x86_64``."""
    return f"{sys.platform}-{platform.machine().lower() or 'unknown'}"


def canonical_requirement(line: str) -> str:
    """One requirement in a canonical form: canonical name, sorted extras, sorted specifiers."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    parsed = parse_requirement_line(line)
    if parsed is None:
        raise InvalidRequirementError(f"empty requirement {line!r}")
    try:
        req = Requirement(parsed)
    except InvalidRequirement:
        return parsed  # a path or URL requirement; kept as written
    text: str = str(canonicalize_name(req.name))
    if req.extras:
        text += "[" + ",".join(sorted(canonicalize_name(e) for e in req.extras)) + "]"
    if req.url:
        text += f" @ {req.url}"
        if req.marker:
            text += " "
    elif req.specifier:
        text += ",".join(sorted(str(s) for s in req.specifier))
    if req.marker:
        text += f"; {req.marker}"
    return text


# (canonical requirement, its allowed hashes) for each hashed line of a requirements.lock.
LockHashes = tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class EnvSpec:
    """The normalized description of an environment: what the cache key is computed from.

    ``python`` is the Python version the model recorded until :meth:`resolved` pins it to the
    interpreter actually used. ``installer`` is the backend name. ``runner`` identifies the
    envkit build installed into the environment (its wheel digest).
    """

    python: str
    requirements: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    build_dependencies: tuple[str, ...] = ()
    conda_dependencies: tuple[str, ...] = ()
    conda_channels: tuple[str, ...] = ()
    installer: str = "uv"
    platform: str = field(default_factory=current_platform)
    runner: str = ""
    # Where the spec came from (not part of the key): e.g. "python_env.yaml + requirements.txt".
    source: str = field(default="", compare=False)
    # From a requirements.lock: canonical requirement -> its allowed hashes (``sha256:...``),
    # which installs check (``--require-hashes``). Part of the key: what may be installed.
    hashes: LockHashes = ()
    # Unpinned build dependencies of an older model: only releases before this time (RFC 3339,
    # the model's creation), so the build tools are contemporary with it (uv --exclude-newer).
    exclude_newer: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The hashed content of the spec, as plain JSON-able data."""
        return {
            "format": SPEC_FORMAT,
            "python": self.python,
            "requirements": list(self.requirements),
            "constraints": list(self.constraints),
            "options": [_redact(option) for option in self.options],
            "build_dependencies": list(self.build_dependencies),
            "conda_dependencies": list(self.conda_dependencies),
            "conda_channels": list(self.conda_channels),
            "installer": self.installer,
            "platform": self.platform,
            "runner": self.runner,
            # (only when there are some: the keys of unlocked specs stay as they were)
            **({"hashes": {r: list(h) for r, h in self.hashes}} if self.hashes else {}),
            **({"exclude_newer": self.exclude_newer} if self.exclude_newer else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnvSpec:
        def strings(name: str) -> tuple[str, ...]:
            return tuple(str(x) for x in data.get(name) or ())

        return cls(
            python=str(data.get("python", "")),
            requirements=strings("requirements"),
            constraints=strings("constraints"),
            options=strings("options"),
            build_dependencies=strings("build_dependencies"),
            conda_dependencies=strings("conda_dependencies"),
            conda_channels=strings("conda_channels"),
            installer=str(data.get("installer", "")),
            platform=str(data.get("platform", "")),
            runner=str(data.get("runner", "")),
            hashes=tuple(
                (str(r), tuple(str(x) for x in h)) for r, h in (data.get("hashes") or {}).items()
            ),
            exclude_newer=str(data.get("exclude_newer") or ""),
        )

    @property
    def key(self) -> str:
        """The cache key: a short hash of the normalized spec."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:20]

    def resolved(self, *, python: str | None = None, runner: str | None = None) -> EnvSpec:
        """A copy with the interpreter version and/or runner digest filled in."""
        changes: dict[str, Any] = {}
        if python is not None:
            changes["python"] = python
        if runner is not None:
            changes["runner"] = runner
        return replace(self, **changes)

    def with_installer(self, installer: str) -> EnvSpec:
        return replace(self, installer=installer)

    def requirement_map(self) -> dict[str, str]:
        """Canonical name -> requirement, for PEP 508 requirements."""
        result: dict[str, str] = {}
        for req in self.requirements:
            name = requirement_name(req)
            result[name or req] = req
        return result

    def differences(self, other: EnvSpec) -> list[str]:
        """What changed from ``other`` to this spec, one readable phrase per aspect."""
        changes: list[str] = []
        if self.python != other.python:
            changes.append(f"python changed: {other.python} -> {self.python}")
        req_change = describe_change(other.requirements, self.requirements)
        if req_change:
            changes.append(f"requirements changed: {req_change}")
        for label, mine, theirs in (
            ("constraints", self.constraints, other.constraints),
            ("index options", self.options, other.options),
            ("build dependencies", self.build_dependencies, other.build_dependencies),
            ("conda dependencies", self.conda_dependencies, other.conda_dependencies),
            ("conda channels", self.conda_channels, other.conda_channels),
        ):
            change = describe_change(theirs, mine)
            if change:
                changes.append(f"{label} changed: {change}")
        if self.platform != other.platform:
            changes.append(f"platform changed: {other.platform} -> {self.platform}")
        if self.runner != other.runner:
            changes.append(f"envkit changed: {other.runner or '?'} -> {self.runner or '?'}")
        if self.installer != other.installer:
            changes.append(f"installer changed: {other.installer} -> {self.installer}")
        if self.hashes != other.hashes:
            new_hashes, old_hashes = dict(self.hashes), dict(other.hashes)
            changed = sorted(
                r
                for r in set(new_hashes) | set(old_hashes)
                if new_hashes.get(r) != old_hashes.get(r)
            )
            shown = ", ".join(changed[:3]) + (
                f", +{len(changed) - 3} more" if len(changed) > 3 else ""
            )
            changes.append(f"locked hashes changed: {shown}")
        if not changes and self.to_dict() != other.to_dict():
            changes.append("spec format changed")
        return changes


def _redact(text: str) -> str:
    from envkit._subprocess import redact_url

    return redact_url(text)


def describe_change(old: Iterable[str], new: Iterable[str]) -> str:
    """``"removed a==1, added a==2"`` for two requirement lists, ``""`` when equal."""
    old_set, new_set = set(old), set(new)
    removed = sorted(old_set - new_set)
    added = sorted(new_set - old_set)
    parts = []
    if removed:
        parts.append("removed " + ", ".join(removed))
    if added:
        parts.append("added " + ", ".join(added))
    return "; ".join(parts)


def normalize_requirements(lines: Iterable[str]) -> tuple[str, ...]:
    """Canonical, de-duplicated, sorted requirements (a later line for a name wins)."""
    by_key: dict[str, str] = {}
    for line in lines:
        canonical = canonical_requirement(line)
        by_key[requirement_name(canonical) or canonical] = canonical
    return tuple(sorted(by_key.values()))


@dataclass
class OverrideResult:
    """Requirements after ``--override`` and what each override did."""

    requirements: tuple[str, ...]
    notes: list[str]


def apply_overrides(requirements: Sequence[str], overrides: Sequence[str]) -> OverrideResult:
    """Replace (same distribution name) or add each override, like ``pip_requirements_override``."""
    current = {requirement_name(r) or r: r for r in requirements}
    notes = []
    for raw in overrides:
        if not raw.strip():
            continue
        try:
            override = canonical_requirement(raw.strip())
        except InvalidRequirementError as exc:
            from envkit.errors import UsageError

            raise UsageError(f"invalid --override {raw!r}: {exc.message}")
        if override.startswith("-"):
            from envkit.errors import UsageError

            raise UsageError(f"--override takes a requirement, not an option: {raw!r}")
        name = requirement_name(override) or override
        previous = current.get(name)
        if previous == override:
            continue
        current[name] = override
        notes.append(f"replaced {previous} with {override}" if previous else f"added {override}")
    return OverrideResult(tuple(sorted(current.values())), notes)


# --- reading a model's environment -------------------------------------------------------------


def read_env_spec(
    model_dir: str | Path,
    *,
    env_manager: str = "uv",
    flavor_env: Mapping[str, Any] | None = None,
    python_version_hint: str | None = None,
) -> EnvSpec:
    """The environment a model records, as an :class:`EnvSpec` for ``env_manager``.

    Read by :func:`envkit.deps.recorded.read_recorded_environment`: for ``conda`` from
    ``conda.yaml``; for every other manager from ``python_env.yaml`` with a current
    ``requirements.lock`` when present, else ``requirements.txt`` (and from ``conda.yaml`` when
    the model has no ``python_env.yaml``, as MLflow does). ``flavor_env`` is the
    ``python_function.env`` mapping of the MLmodel (file names).
    """
    recorded = read_model_environment(
        model_dir,
        env_manager=env_manager,
        flavor_env=flavor_env,
        python_version_hint=python_version_hint,
    )
    return spec_from_recorded(recorded, installer=env_manager)


def read_model_environment(
    model_dir: str | Path,
    *,
    env_manager: str = "uv",
    flavor_env: Mapping[str, Any] | None = None,
    python_version_hint: str | None = None,
) -> RecordedEnvironment:
    """What :func:`read_env_spec` reads, before it becomes a spec (which file gave the Python
    version, and whether any did: ``python_from``)."""
    from envkit.deps.recorded import EnvFileNames, read_recorded_environment

    return read_recorded_environment(
        model_dir,
        names=EnvFileNames.from_env(flavor_env, python_version_hint),
        conda=env_manager == "conda",
    )


def spec_from_recorded(recorded: RecordedEnvironment, *, installer: str) -> EnvSpec:
    """The :class:`EnvSpec` of a recorded environment: its current lock's pins when it has
    one; conda dependencies and channels for the conda installer only."""
    python = recorded.checked_python()
    lock = recorded.locked()
    listed = lock.listed if lock is not None else recorded.listed
    origin = LOCK_FILE if lock is not None else recorded.origin
    conda = installer == "conda"
    return EnvSpec(
        python=python,
        requirements=normalize_requirements(listed.requirements),
        constraints=normalize_requirements(listed.constraints),
        options=_source_options(listed.options, origin),
        build_dependencies=normalize_requirements(recorded.build_dependencies),
        conda_dependencies=tuple(sorted(set(recorded.conda_dependencies))) if conda else (),
        conda_channels=recorded.conda_channels if conda else (),
        installer=installer,
        source=f"{recorded.files[0]} + {LOCK_FILE}" if lock is not None else recorded.source or "",
        hashes=_lock_hashes(lock),
    )


def _source_options(options: Iterable[str], origin: str) -> tuple[str, ...]:
    """The option lines an environment keeps (where packages come from), as ``flag value``;
    an editable requirement or another option is refused, naming ``origin``."""
    kept = []
    for line in options:
        flag, value = option_name(line), option_value(line)
        if flag in _SOURCE_OPTIONS:
            kept.append(f"{flag} {value}".strip())
        elif flag in ("-e", "--editable"):
            raise InvalidRequirementError(
                f"{origin} has an editable requirement ({line!r}); a deployable model needs "
                "installable requirements",
                requirement=line,
            )
        else:
            raise InvalidRequirementError(
                f"{origin} has an unsupported option line {line!r}", requirement=line
            )
    return tuple(kept)


def _lock_hashes(lock: RecordedLock | None) -> LockHashes:
    if lock is None:
        return ()
    return tuple(sorted((canonical_requirement(line), found) for line, found in lock.hashes))


def exclude_newer_for(utc_time_created: object) -> str | None:
    """The RFC 3339 time for ``uv --exclude-newer`` of a model made at ``utc_time_created``
    (MLmodel's ``2024-04-16 09:12:31.123456``), or None when it is missing or unreadable."""
    from datetime import datetime, timezone

    try:
        made = datetime.fromisoformat(str(utc_time_created).strip())
    except ValueError:
        return None
    made = made.replace(tzinfo=timezone.utc) if made.tzinfo is None else made
    return made.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
