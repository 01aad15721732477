"""What an environment is made of: :class:`EnvSpec`, read from a model's environment files.

An ``EnvSpec`` is normalized (requirement names canonicalized, duplicates removed, sorted) so
that two models that need the same environment get the same cache key, and two specs can be
compared requirement by requirement ("removed X, added Y").
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from envkit.deps.envfiles import (
    CONDA_ENV_FILE,
    LOCK_FILE,
    PYTHON_ENV_FILE,
    REQUIREMENTS_FILE,
    PythonEnv,
    parse_requirement_line,
    read_conda_env,
    read_requirements_file,
)
from envkit.errors import InvalidRequirementError, ModelFormatError

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


def requirement_name(requirement: str) -> str | None:
    """The canonical distribution name of a PEP 508 requirement, None for paths/URLs/options."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    if requirement.startswith("-"):
        return None
    try:
        return canonicalize_name(Requirement(requirement).name)
    except InvalidRequirement:
        return None


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


def read_lock_file(path: Path) -> list[str]:
    """Requirements pinned in a ``requirements.lock`` (see :func:`read_lock`)."""
    return read_lock(path)[0]


def read_lock(path: Path) -> tuple[list[str], LockHashes]:
    """A ``requirements.lock`` (pip-compile / ``uv pip compile`` output): its requirement lines,
    without their ``--hash`` options, and (canonical requirement, hashes) for each hashed one.

    Backslash continuations are joined first.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequirementError(f"cannot read {path}: {exc}") from exc
    text = re.sub(r"\\\r?\n", " ", text)
    lines = []
    hashes = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = re.sub(r"\s--hash[=\s]\S+", "", " " + raw).strip()
        parsed = parse_requirement_line(line, source=f"requirement in {path.name}:{number}")
        if parsed is None:
            continue
        lines.append(parsed)
        found = tuple(re.findall(r"\s--hash[=\s](\S+)", " " + raw))
        if found and not parsed.startswith("-"):
            hashes.append((canonical_requirement(parsed), found))
    return lines, tuple(sorted(hashes))


@dataclass
class _Sections:
    requirements: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)


def _split_lines(lines: Iterable[str], base_dir: Path, origin: str) -> _Sections:
    """Separate requirement lines, ``-c`` constraint files (read) and index options."""
    sections = _Sections()
    for line in lines:
        if not line.startswith("-"):
            sections.requirements.append(line)
            continue
        flag, _, value = line.partition(" ")
        if not value and "=" in flag:
            flag, _, value = flag.partition("=")
        value = value.strip()
        if flag in ("-c", "--constraint"):
            from envkit._fs import resolve_inside

            constraint_path = resolve_inside(base_dir, value)
            sections.constraints.extend(
                r for r in read_requirements_file(constraint_path) if not r.startswith("-")
            )
        elif flag in _SOURCE_OPTIONS:
            sections.options.append(f"{flag} {value}".strip())
        elif flag in ("-e", "--editable"):
            raise InvalidRequirementError(
                f"{origin} has an editable requirement ({line!r}); a deployable model needs "
                "installable requirements"
            )
        else:
            raise InvalidRequirementError(f"{origin} has an unsupported option line {line!r}")
    return sections


def read_env_spec(
    model_dir: str | Path,
    *,
    env_manager: str = "uv",
    flavor_env: Mapping[str, Any] | None = None,
    python_version_hint: str | None = None,
) -> EnvSpec:
    """The environment a model records, as an :class:`EnvSpec` for ``env_manager``.

    For ``conda`` the spec comes from ``conda.yaml``. For every other manager it comes from
    ``python_env.yaml`` with ``requirements.lock`` when present, else ``requirements.txt``
    (and from ``conda.yaml`` when the model has no ``python_env.yaml``, as MLflow does).
    ``flavor_env`` is the ``python_function.env`` mapping of the MLmodel (file names).
    """
    model_dir = Path(model_dir)
    env_files = dict(flavor_env or {})
    conda_name = str(env_files.get("conda") or CONDA_ENV_FILE)
    python_env_name = str(env_files.get("virtualenv") or PYTHON_ENV_FILE)
    conda_path = _model_file(model_dir, conda_name)
    python_env_path = _model_file(model_dir, python_env_name)

    if env_manager == "conda":
        if not conda_path.is_file():
            raise ModelFormatError(
                f"the model has no {conda_name}; the conda manager needs it (use "
                "--env-manager uv, which reads python_env.yaml)"
            )
        return _spec_from_conda(conda_path, model_dir, installer=env_manager)

    if python_env_path.is_file():
        env = PythonEnv.from_yaml(python_env_path)
        lock_path = model_dir / LOCK_FILE
        if lock_path.is_file():
            from envkit.deps.lock import stale_lock_reason

            stale = stale_lock_reason(model_dir)
            if stale is not None:
                # Validating the old pins would pass a model its new requirements may break.
                raise ModelFormatError(stale)
            lines, hashes = read_lock(lock_path)
            source = f"{python_env_name} + {LOCK_FILE}"
            origin = LOCK_FILE
        else:
            lines = []
            sources = []
            for dep in env.dependencies:
                dep = dep.strip()
                if dep.startswith(("-r ", "--requirement ")):
                    name = dep.split(None, 1)[1].strip()
                    lines.extend(read_requirements_file(_model_file(model_dir, name)))
                    sources.append(name)
                else:
                    parsed = parse_requirement_line(dep, source=f"dependency in {python_env_name}")
                    if parsed:
                        lines.append(parsed)
            hashes = ()
            source = " + ".join([python_env_name, *sources])
            origin = sources[0] if sources else python_env_name
        sections = _split_lines(lines, model_dir, origin)
        return EnvSpec(
            python=_check_python(env.python, python_env_name),
            requirements=normalize_requirements(sections.requirements),
            constraints=normalize_requirements(sections.constraints),
            options=tuple(sections.options),
            build_dependencies=normalize_requirements(env.build_dependencies),
            installer=env_manager,
            source=source,
            hashes=hashes,
        )

    if conda_path.is_file():
        return _spec_from_conda(conda_path, model_dir, installer=env_manager, pip_only=True)

    requirements_path = model_dir / REQUIREMENTS_FILE
    if python_version_hint and requirements_path.is_file():
        sections = _split_lines(
            read_requirements_file(requirements_path), model_dir, REQUIREMENTS_FILE
        )
        return EnvSpec(
            python=_check_python(python_version_hint, "MLmodel"),
            requirements=normalize_requirements(sections.requirements),
            constraints=normalize_requirements(sections.constraints),
            options=tuple(sections.options),
            installer=env_manager,
            source=f"MLmodel python_version + {REQUIREMENTS_FILE}",
        )
    raise ModelFormatError(
        f"the model at {model_dir} records no environment ({python_env_name}, {conda_name} "
        f"and {REQUIREMENTS_FILE} are missing); re-save it with envkit or MLflow"
    )


def _model_file(model_dir: Path, name: str) -> Path:
    from envkit._fs import resolve_inside

    return resolve_inside(model_dir, name)


def _check_python(version: str, origin: str) -> str:
    version = str(version).strip()
    if not re.fullmatch(r"\d+(\.\d+){0,2}", version):
        raise InvalidRequirementError(
            f"{origin} records python {version!r}; expected a version like 3.11 or 3.11.7"
        )
    return version


def _spec_from_conda(
    path: Path, model_dir: Path, *, installer: str, pip_only: bool = False
) -> EnvSpec:
    python_version, pip_requirements = read_conda_env(path)
    if not python_version:
        raise InvalidRequirementError(f"{path.name} does not pin python (python=X.Y)")
    conda_deps: list[str] = []
    channels: list[str] = []
    if not pip_only:
        import yaml

        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        channels = [str(c) for c in data.get("channels") or []]
        for dep in data.get("dependencies") or []:
            if isinstance(dep, str) and not re.match(r"python\s*[=<>~]", dep):
                conda_deps.append(dep.strip())
    sections = _split_lines(pip_requirements, model_dir, path.name)
    return EnvSpec(
        python=_check_python(python_version, path.name),
        requirements=normalize_requirements(sections.requirements),
        constraints=normalize_requirements(sections.constraints),
        options=tuple(sections.options),
        conda_dependencies=tuple(sorted(set(conda_deps))),
        conda_channels=tuple(channels),
        installer=installer,
        source=path.name,
    )
