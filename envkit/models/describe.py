"""A summary of a model directory: what ``envkit info`` shows."""

from __future__ import annotations

import os
from typing import Any

from envkit._fs import check_tree_inside
from envkit.models.model import MLMODEL_FILE_NAME, Model, check_recorded_paths


def describe_model(model_uri: str | os.PathLike[str]) -> dict[str, Any]:
    """Flavors, signature, input example, environment summary and files (with sizes)."""
    from envkit.deps.envfiles import (
        PYTHON_ENV_FILE,
        REQUIREMENTS_FILE,
        PythonEnv,
        read_requirements_file,
    )
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
    environment: dict[str, Any] = {}
    if (local / PYTHON_ENV_FILE).is_file():
        environment["python"] = PythonEnv.from_yaml(local / PYTHON_ENV_FILE).python
    if (local / REQUIREMENTS_FILE).is_file():
        environment["requirements"] = read_requirements_file(local / REQUIREMENTS_FILE)
    return {
        "path": str(local),
        "model_uuid": model.model_uuid,
        "utc_time_created": model.utc_time_created,
        "run_id": model.run_id,
        "artifact_path": model.artifact_path,
        "envkit_version": model.envkit_version,
        "mlflow_version": model.mlflow_version,
        "flavors": model.flavors,
        "signature": signature.to_dict() if signature is not None else None,
        "saved_input_example_info": model.saved_input_example_info,
        "model_size_bytes": model.model_size_bytes,
        "environment": environment,
        "env_vars": model.env_vars,
        "files": files,
        "total_size": sum(f["size"] for f in files),
    }


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def render_text(info: dict[str, Any]) -> str:
    """``describe_model`` output as readable text."""
    lines = [f"model: {info['path']}"]
    made_by = [f"envkit {info['envkit_version']}"] if info.get("envkit_version") else []
    if info.get("mlflow_version"):
        made_by.append(f"MLflow {info['mlflow_version']}")
    lines.append(f"  created: {info['utc_time_created']} UTC by {', '.join(made_by) or 'unknown'}")
    lines.append(f"  uuid: {info['model_uuid']}")
    if info.get("run_id"):
        lines.append(f"  run: runs:/{info['run_id']}/{info['artifact_path']}")
    lines.append("flavors:")
    for name, conf in info["flavors"].items():
        keys = ("loader_module", "predict_fn", "serialization_format", "sklearn_version")
        details = ", ".join(f"{k}={conf[k]}" for k in keys if conf.get(k))
        lines.append(f"  {name}" + (f" ({details})" if details else ""))
    signature = info.get("signature")
    lines.append("signature:" + ("" if signature else " none"))
    if signature:
        for part in ("inputs", "outputs", "params"):
            if signature.get(part):
                lines.append(f"  {part}: {signature[part]}")
    example = info.get("saved_input_example_info")
    if example:
        lines.append(f"input example: {example.get('artifact_path')} ({example.get('type')})")
    env = info.get("environment") or {}
    if env:
        lines.append(f"environment: python {env.get('python', '?')}")
        for req in env.get("requirements", []):
            lines.append(f"  {req}")
    if info.get("env_vars"):
        lines.append("environment variables read: " + ", ".join(info["env_vars"]))
    lines.append(f"files ({human_size(info['total_size'])}):")
    for entry in info["files"]:
        lines.append(f"  {human_size(entry['size']):>9}  {entry['path']}")
    return "\n".join(lines)
