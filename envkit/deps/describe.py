"""A summary of a model directory: what ``envkit info`` shows (the CLI renders it).

It lives in the deps layer because it summarizes the recorded environment
(:func:`envkit.deps.recorded.read_recorded_environment`); ``envkit.models.get_model_info`` reads
the MLmodel only and stays in :mod:`envkit.models`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from envkit._fs import check_tree_inside
from envkit.models.model import MLMODEL_FILE_NAME, Model, check_recorded_paths


def describe_model(model_uri: str | os.PathLike[str]) -> dict[str, Any]:
    """Flavors, signature, input example, environment summary and files (with sizes)."""
    from envkit.models.uri import resolve_model_uri

    local = resolve_model_uri(model_uri)
    check_tree_inside(local)
    model = Model._read(local / MLMODEL_FILE_NAME)
    # (what it shows must not point outside the model, even where a file is missing)
    check_recorded_paths(local, model, need_files=False, need_input_example=False)
    signature = model.signature
    files = []
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        files.append({"path": path.relative_to(local).as_posix(), "size": path.stat().st_size})
    environment = _environment(local, model)
    return {
        "path": str(local),
        # As the file says, or None: never the time of this call or a fresh uuid.
        "model_uuid": None if "model_uuid" in model.invented_fields else model.model_uuid,
        "utc_time_created": (
            None if "utc_time_created" in model.invented_fields else model.utc_time_created
        ),
        "time_created": _str_or_none(model.extra.get("time_created")),
        "run_id": model.run_id,
        "artifact_path": model.artifact_path,
        "envkit_version": model.envkit_version,
        "mlflow_version": model.mlflow_version,
        "flavors": model.flavors,
        "flavor_modules": flavor_modules(model.flavors),
        "signature": signature.to_dict() if signature is not None else None,
        "saved_input_example_info": model.saved_input_example_info,
        "model_size_bytes": model.model_size_bytes,
        "environment": environment,
        "env_vars": model.env_vars,
        "wheels": wheels_summary(local, model),
        "files": files,
        "total_size": sum(f["size"] for f in files),
    }


def flavor_modules(flavors: Iterable[str]) -> dict[str, str | None]:
    """Each library flavor of the model -> the module that implements it here (a built-in
    envkit flavor, or one a package registers in the ``envkit.flavors`` entry point group),
    None when none is installed."""
    from envkit.models.flavors import registered_flavors

    known = registered_flavors()
    return {name: known.get(name) for name in flavors if name != "python_function"}


def _environment(model_dir: Path, model: Model) -> dict[str, Any]:
    """The recorded Python version and requirement lines ({} when nothing is recorded)."""
    from envkit.deps.recorded import read_recorded_environment
    from envkit.errors import NoRecordedEnvironmentError

    try:
        recorded = read_recorded_environment(model_dir, model, with_lock=False)
    except NoRecordedEnvironmentError:
        return {}
    environment: dict[str, Any] = {}
    if recorded.python is not None:
        environment["python"] = recorded.python
    environment["requirements"] = list(recorded.lines)
    environment["payloads"] = payload_rule(recorded.lines)
    return environment


def payload_rule(lines: Iterable[str]) -> str:
    """Which scoring payloads the model's environment reads, from what it records: DataFrame
    formats need pandas and arrays need numpy, and envkit installs neither for a model."""
    from envkit.deps.requirements import requirement_name

    names = {requirement_name(line) for line in lines}
    if "pandas" in names and "numpy" in names:
        return "every scoring format (dataframe_split, dataframe_records, instances, inputs, CSV)"
    arrays = "as numpy arrays" if "numpy" in names else "as Python data (no numpy recorded)"
    return (
        f"JSON instances and inputs, {arrays}; dataframe_split, dataframe_records and CSV "
        "need pandas, which the model does not record"
    )


def _str_or_none(value: object) -> str | None:
    """A recorded time as text (YAML reads an unquoted ISO 8601 time as a datetime)."""
    if value is None:
        return None
    isoformat = getattr(value, "isoformat", None)
    return isoformat() if callable(isoformat) else str(value)


def wheels_summary(model_dir: Path, model: Model) -> dict[str, Any] | None:
    """A wheeled model's wheels (``wheels/``, MLmodel ``wheels``): files, total size, the
    platform it was made for and the wheels this interpreter cannot install; None otherwise."""
    recorded = model.extra.get("wheels")
    directory = model_dir / "wheels"
    if recorded is None or not directory.is_dir():
        return None
    files = sorted(directory.glob("*.whl"))
    return {
        "platform": recorded.get("platform") if isinstance(recorded, dict) else None,
        "files": [p.name for p in files],
        "total_bytes": sum(p.stat().st_size for p in files),
        "not_for_this_platform": unsupported_wheels(files),
    }


def unsupported_wheels(files: list[Path]) -> list[str]:
    """The wheels among ``files`` whose tags this interpreter and platform do not support."""
    from packaging.tags import sys_tags
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    supported = set(sys_tags())
    bad = []
    for path in files:
        try:
            tags = parse_wheel_filename(path.name)[3]
        except InvalidWheelFilename:
            bad.append(path.name)
            continue
        if not tags & supported:
            bad.append(path.name)
    return bad
