"""Re-capture the requirements of an existing model (envkit's or MLflow's): ``envkit infer``.

:func:`infer_model_requirements` loads the model in a fresh interpreter exactly as a save does
and compares what it finds with what the model records; :func:`write_inferred` rewrites the
environment files, the provenance record, ``environment_variables.txt``, MLmodel and
``metadata/`` with the result. Requirements the user added (provenance source ``user``) and the
model's constraints are kept.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envkit.deps.capture import Decision, UserRequirements, decide_requirements, has_signature
from envkit.deps.envfiles import (
    CONDA_ENV_FILE,
    CONSTRAINTS_FILE,
    LOCK_FILE,
    PYTHON_ENV_FILE,
    REQUIREMENTS_FILE,
    copy_metadata,
    write_environment_files,
)
from envkit.deps.envvars import ENV_VARS_FILE, read_env_vars_file, write_env_vars_file
from envkit.deps.provenance import PROVENANCE_FILE, SOURCE_USER, read_provenance, write_provenance
from envkit.deps.recorded import read_recorded_environment
from envkit.deps.requirements import requirement_name

__all__ = ["InferenceResult", "RequirementChange", "infer_model_requirements", "write_inferred"]


@dataclass(frozen=True)
class RequirementChange:
    """One difference: ``added``, ``removed`` or ``changed`` (``old`` -> ``new``)."""

    kind: str
    name: str
    old: str | None = None
    new: str | None = None

    def __str__(self) -> str:
        if self.kind == "added":
            return f"+ {self.new}"
        if self.kind == "removed":
            return f"- {self.old}"
        return f"~ {self.old} -> {self.new}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "old": self.old, "new": self.new}


@dataclass
class InferenceResult:
    """What a re-capture found, compared with what the model records."""

    model_dir: Path
    recorded: list[str]
    decision: Decision
    changes: list[RequirementChange] = field(default_factory=list)
    python_recorded: str | None = None
    env_vars_recorded: list[str] = field(default_factory=list)

    @property
    def inferred(self) -> list[str]:
        return self.decision.requirements

    @property
    def python_changed(self) -> bool:
        return bool(self.python_recorded) and self.python_recorded != platform.python_version()

    @property
    def env_vars_changed(self) -> bool:
        return sorted(self.env_vars_recorded) != sorted(self.decision.env_vars)

    @property
    def up_to_date(self) -> bool:
        return not self.changes and not self.python_changed and not self.env_vars_changed

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": str(self.model_dir),
            "up_to_date": self.up_to_date,
            "recorded": self.recorded,
            "inferred": self.inferred,
            "changes": [c.to_dict() for c in self.changes],
            "python": {"recorded": self.python_recorded, "current": platform.python_version()},
            "env_vars": {"recorded": self.env_vars_recorded, "inferred": self.decision.env_vars},
            "capture": self.decision.capture.to_dict(),
            "warnings": list(self.decision.messages),
        }


def _key(line: str) -> str:
    return requirement_name(line) or line


def diff_requirements(old: list[str], new: list[str]) -> list[RequirementChange]:
    """Changes from ``old`` to ``new``, by distribution name (other lines by text)."""
    old_map = {_key(line): line for line in old}
    new_map = {_key(line): line for line in new}
    changes = []
    for key in sorted(set(old_map) | set(new_map)):
        before, after = old_map.get(key), new_map.get(key)
        if before == after:
            continue
        if before is None:
            changes.append(RequirementChange("added", key, new=after))
        elif after is None:
            changes.append(RequirementChange("removed", key, old=before))
        else:
            changes.append(RequirementChange("changed", key, old=before, new=after))
    return changes


def infer_model_requirements(
    model_uri: str | os.PathLike[str],
    *,
    timeout: float | None = None,
    trust_model: bool = False,
    trusted_types: Sequence[str] = (),
) -> InferenceResult:
    """Load the model at ``model_uri`` in a fresh process and infer its requirements again.

    The model's pickles are scanned first (:class:`~envkit.errors.UnsafeModelError` for a
    dangerous one, unless ``trust_model`` or its globals are in ``trusted_types``). Raises
    :class:`~envkit.errors.CaptureError` when the model does not load there.
    """
    from envkit._fs import check_tree_inside
    from envkit._version import __version__
    from envkit.models.model import Model
    from envkit.models.scan import ModelTrust, ensure_safe
    from envkit.models.uri import resolve_model_uri

    model_dir = resolve_model_uri(model_uri)
    check_tree_inside(model_dir)
    ensure_safe(model_dir, ModelTrust.of(trust_model, trusted_types))
    model = Model.load(model_dir)
    # (the lock is rewritten from what this finds: it is not read)
    recorded = read_recorded_environment(model_dir, model, with_lock=False)
    if model.envkit_version is None and model.mlflow_version:
        # A model MLflow wrote keeps MLflow as its framework (its loader_module names MLflow).
        framework = "mlflow"
        defaults = [f"mlflow=={model.mlflow_version}"]
    else:
        framework = "envkit"
        defaults = [f"envkit=={__version__}"]
    provenance = read_provenance(model_dir)
    user_lines = (
        [r.requirement for r in provenance.requirements if r.source == SOURCE_USER]
        if (provenance is not None)
        else []
    )
    constraints = list(recorded.constraints)
    decision = decide_requirements(
        model_dir,
        default_requirements=defaults,
        user_requirements=UserRequirements("extra", user_lines, constraints),
        input_example_info=model.saved_input_example_info,
        strict=True,
        framework=framework,
        timeout=timeout,
        strict_label="",
        has_signature=has_signature(model),
    )
    comparable_old = list(recorded.listed.without_constraint_lines())
    return InferenceResult(
        model_dir=model_dir,
        recorded=list(recorded.lines),
        decision=decision,
        changes=diff_requirements(comparable_old, decision.requirements),
        python_recorded=recorded.python,
        env_vars_recorded=read_env_vars_file(model_dir),
    )


def write_inferred(result: InferenceResult) -> None:
    """Rewrite the model's environment files, provenance, env var names, MLmodel and metadata/.

    The new files are written to a temporary directory first, then moved into the model.
    """
    from envkit._fs import atomic_write_text
    from envkit.models.model import Model

    model_dir = result.model_dir
    model = Model.load(model_dir)
    decision = result.decision
    names = [
        REQUIREMENTS_FILE,
        PYTHON_ENV_FILE,
        CONDA_ENV_FILE,
        CONSTRAINTS_FILE,
        PROVENANCE_FILE,
        ENV_VARS_FILE,
    ]
    with tempfile.TemporaryDirectory(prefix=".envkit-infer-", dir=model_dir.parent) as tmp:
        staging = Path(tmp)
        write_environment_files(staging, decision.requirements, constraints=decision.constraints)
        write_provenance(staging, decision.provenance())
        write_env_vars_file(staging, decision.env_vars)
        model.env_vars = list(decision.env_vars) or None
        conf = model.flavors.get("python_function")
        if conf is not None:
            conf["env"] = {"conda": CONDA_ENV_FILE, "virtualenv": PYTHON_ENV_FILE}
            # The environment files now record this interpreter: MLmodel says the same.
            conf["python_version"] = platform.python_version()
        mlmodel_text = model.to_yaml()
        for name in names:
            source = staging / name
            target = model_dir / name
            if source.is_file():
                os.replace(source, target) if _same_device(source, target) else shutil.copy2(
                    source, target
                )
            elif target.is_file() and name in (ENV_VARS_FILE, CONSTRAINTS_FILE):
                target.unlink()
    atomic_write_text(model_dir / "MLmodel", mlmodel_text)
    lock = model_dir / LOCK_FILE
    if lock.exists():
        lock.unlink()
    if (model_dir / "metadata").is_dir():
        copy_metadata(model_dir)


def _same_device(a: Path, b: Path) -> bool:
    try:
        return os.stat(a.parent).st_dev == os.stat(b.parent).st_dev
    except OSError:
        return False
