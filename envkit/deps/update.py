"""Add or remove requirements of a saved model: :func:`update_model_requirements`.

Every file that records the requirements changes together: ``requirements.txt``, the pip
section of ``conda.yaml``, ``requirements.provenance.json`` and the copies in ``metadata/``.
A ``requirements.lock`` no longer matches and is removed (with a warning to re-run
``envkit lock``). All new contents are computed before the first file is replaced.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from envkit.deps.envfiles import (
    CONDA_ENV_FILE,
    LOCK_FILE,
    REQUIREMENTS_FILE,
    copy_metadata,
    format_requirements,
)
from envkit.deps.provenance import (
    PROVENANCE_FILE,
    SOURCE_USER,
    RequirementProvenance,
    read_provenance,
)
from envkit.deps.requirements import (
    parse_requirement_line,
    read_requirements_file,
    requirement_name,
)
from envkit.errors import InvalidRequirementError, ModelFormatError, UsageError

__all__ = ["update_model_requirements"]


def _apply(
    lines: list[str],
    operation: str,
    changes: list[tuple[str | None, str]],
    missing: list[str] | None = None,
) -> list[str]:
    """``lines`` with ``changes`` applied; lines to remove that are not there go to ``missing``."""
    result = list(lines)
    for name, line in changes:
        positions = [i for i, old in enumerate(result) if (name and requirement_name(old) == name)]
        if operation == "add":
            if positions:
                result[positions[0]] = line
                for i in reversed(positions[1:]):
                    del result[i]
            elif line not in result:
                # Keep option lines (-c constraints.txt) last, as they were.
                tail = len(result)
                while tail > 0 and result[tail - 1].startswith("-"):
                    tail -= 1
                result.insert(tail, line)
        else:
            if not positions and line in result:
                positions = [result.index(line)]
            if not positions and missing is not None:
                missing.append(name or line)
            for i in reversed(positions):
                del result[i]
    return result


def _unsatisfied_here(changes: list[tuple[str | None, str]]) -> list[str]:
    """Added requirements the installed distribution does not satisfy: ``'x==1' (installed 2)``."""
    from envkit.deps.capture import _satisfied_by
    from envkit.deps.envfiles import installed_version

    found = []
    for name, line in changes:
        if name is None or name == "envkit":
            continue
        installed = installed_version(name)
        if installed is not None and not _satisfied_by(line, installed):
            found.append(f"{line!r} (installed: {name} {installed})")
    return found


def update_model_requirements(
    model_uri: str | os.PathLike[str],
    operation: str,
    requirement_list: Sequence[str],
) -> None:
    """Add (or overwrite) or remove requirements of the model at ``model_uri``.

    ``"add"`` replaces a requirement on the same distribution, or appends; ``"remove"`` ignores
    version specifiers and drops every named distribution. Warns
    (:class:`~envkit.deps.capture.RequirementWarning`) about names to remove that are not there,
    and about added requirements the installed version does not satisfy, as MLflow does. Raises
    :class:`~envkit.errors.InvalidRequirementError` for an invalid line, before anything changes.
    """
    from envkit.models.uri import resolve_model_uri

    if operation not in ("add", "remove"):
        raise UsageError(f"operation must be 'add' or 'remove', not {operation!r}")
    changes = _requested_changes(requirement_list)
    model_dir = resolve_model_uri(model_uri)
    missing: list[str] = []
    new_files = _updated_files(model_dir, operation, changes, missing)
    for name, content in new_files.items():
        _replace(model_dir / name, content)
    _warn_about_changes(operation, changes, missing)
    _remove_stale_lock(model_dir)
    if (model_dir / "metadata").is_dir():
        copy_metadata(model_dir)


def _requested_changes(requirement_list: Sequence[str]) -> list[tuple[str | None, str]]:
    """(distribution name, requirement line) for each requested requirement, validated."""
    if isinstance(requirement_list, (str, bytes)) or not isinstance(requirement_list, Sequence):
        raise UsageError("requirement_list must be a list of requirement strings")
    changes: list[tuple[str | None, str]] = []
    for position, item in enumerate(requirement_list):
        if not isinstance(item, str):
            raise InvalidRequirementError(
                f"requirement_list[{position}] must be a string, not {type(item).__name__}"
            )
        parsed = parse_requirement_line(item, source=f"requirement requirement_list[{position}]")
        if parsed is None:
            raise InvalidRequirementError(f"requirement_list[{position}] is empty")
        if parsed.startswith("-"):
            raise InvalidRequirementError(
                f"requirement_list[{position}] {parsed!r}: options cannot be added or removed "
                "here; give requirements"
            )
        changes.append((requirement_name(parsed), parsed))
    return changes


def _updated_files(
    model_dir: Path,
    operation: str,
    changes: list[tuple[str | None, str]],
    missing: list[str],
) -> dict[str, str]:
    """File name -> new content of every file that records the requirements (none written)."""
    req_path = model_dir / REQUIREMENTS_FILE
    conda_path = model_dir / CONDA_ENV_FILE
    if not req_path.is_file() and not conda_path.is_file():
        raise ModelFormatError(
            f"the model at {model_dir} has neither {REQUIREMENTS_FILE} nor {CONDA_ENV_FILE}"
        )
    new_files: dict[str, str] = {}
    if req_path.is_file():
        raw = [line for line in _raw_lines(req_path)]
        new_files[REQUIREMENTS_FILE] = format_requirements(_apply(raw, operation, changes, missing))
    if conda_path.is_file():
        new_files[CONDA_ENV_FILE] = _updated_conda(
            conda_path, operation, changes, None if req_path.is_file() else missing
        )
    provenance = read_provenance(model_dir)
    if provenance is not None:
        provenance.requirements = _updated_provenance(provenance.requirements, operation, changes)
        new_files[PROVENANCE_FILE] = provenance.to_json()
    return new_files


def _updated_provenance(
    requirements: list[RequirementProvenance],
    operation: str,
    changes: list[tuple[str | None, str]],
) -> list[RequirementProvenance]:
    """The provenance records after the change: kept records as they were, new ones by the user."""
    from envkit.deps.envfiles import installed_version

    updated = _apply([r.requirement for r in requirements], operation, changes)
    by_line = {r.requirement: r for r in requirements}
    records = []
    for line in updated:
        record = by_line.get(line)
        if record is None:
            record = RequirementProvenance(
                requirement=line,
                name=requirement_name(line),
                source=SOURCE_USER,
                note="added by update_model_requirements",
            )
            if record.name:
                record.installed_version = installed_version(record.name)
        records.append(record)
    return records


def _warn_about_changes(
    operation: str, changes: list[tuple[str | None, str]], missing: list[str]
) -> None:
    """Warn about names to remove that were not there, and additions this env does not satisfy."""
    from envkit.deps.capture import RequirementWarning

    # _warn_about_changes <- update_model_requirements <- the caller
    if missing:
        warnings.warn(
            f"{', '.join(missing)}: not among the model's requirements; nothing was removed for "
            f"{'it' if len(missing) == 1 else 'them'}",
            RequirementWarning,
            stacklevel=3,
        )
    if operation == "add":
        unsatisfied = _unsatisfied_here(changes)
        if unsatisfied:
            warnings.warn(
                f"this environment does not satisfy the added {', '.join(unsatisfied)}: loading "
                "the model here will report a mismatch, and where it is deployed it will run with "
                "a different version than here",
                RequirementWarning,
                stacklevel=3,
            )


def _remove_stale_lock(model_dir: Path) -> None:
    lock = model_dir / LOCK_FILE
    if lock.exists():
        lock.unlink()
        # _remove_stale_lock <- update_model_requirements <- the caller
        warnings.warn(
            f"{LOCK_FILE} no longer matched the model's requirements and was removed; run "
            f"`envkit lock {model_dir}` to write a new one",
            UserWarning,
            stacklevel=3,
        )


def _raw_lines(path: Path) -> list[str]:
    """The lines of a model's requirements.txt as written (validated, includes kept as lines)."""
    read_requirements_file(path)  # validates every line, naming the bad one
    text = path.read_text(encoding="utf-8")
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        parsed = parse_requirement_line(line, source=f"requirement in {path.name}:{number}")
        if parsed is not None:
            lines.append(parsed)
    return lines


def _updated_conda(
    path: Path,
    operation: str,
    changes: list[tuple[str | None, str]],
    missing: list[str] | None = None,
) -> str:
    from envkit._parsing import load_yaml
    from envkit.deps.envfiles import yaml_problem

    try:
        data: Any = load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}")
    except yaml.YAMLError as exc:
        raise ModelFormatError(f"{path} is not valid YAML{yaml_problem(exc)}") from exc
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path} must be a YAML mapping")
    deps = list(data.get("dependencies") or [])
    pip_index = next((i for i, d in enumerate(deps) if isinstance(d, dict) and "pip" in d), None)
    pip_reqs = [str(r) for r in deps[pip_index]["pip"] or []] if pip_index is not None else []
    updated = _apply(pip_reqs, operation, changes, missing)
    if pip_index is not None:
        deps[pip_index] = {**deps[pip_index], "pip": updated}
    elif updated:
        deps.append({"pip": updated})
    data["dependencies"] = deps
    return yaml.safe_dump(data, default_flow_style=False)


def _replace(path: Path, content: str) -> None:
    from envkit._fs import atomic_write_text

    atomic_write_text(path, content)
