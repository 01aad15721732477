"""Resolve a model URI (a local path, ``file://``, ``runs:/<run_id>/<name>``) to a directory."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from envkit.errors import ModelUriError


def resolve_model_uri(uri: str | os.PathLike[str]) -> Path:
    """The local directory of the model at ``uri``.

    ``runs:/`` URIs are looked up in envkit's run store first; a run that MLflow tracks (its
    artifacts) is downloaded through MLflow when MLflow is installed.
    """
    text = os.fspath(uri)
    parsed = urlparse(text)
    if parsed.scheme == "runs":
        return _resolve_run_uri(text)
    if parsed.scheme == "file":
        text = unquote(parsed.path)
    elif parsed.scheme and len(parsed.scheme) > 1:
        return _download_with_mlflow(text, why=f"envkit cannot read {parsed.scheme}:// URIs itself")
    path = Path(text).expanduser()
    if not path.exists():
        raise ModelUriError(f"no model at {text}: the path does not exist")
    if not path.is_dir():
        if path.name == "MLmodel":
            return path.parent.absolute()
        raise ModelUriError(f"{text} is a file; a model is a directory that holds an MLmodel file")
    return path.absolute()


def _resolve_run_uri(uri: str) -> Path:
    from envkit.models.tracking import get_tracking_dir

    rest = uri[len("runs:/") :].lstrip("/")
    run_id, _, artifact = rest.partition("/")
    if not run_id or not artifact:
        raise ModelUriError(f"{uri!r} is not a valid runs URI; expected runs:/<run_id>/<name>")
    parts = artifact.split("/")
    if run_id in (".", "..") or any(part in (".", "..") for part in parts):
        raise ModelUriError(
            f"{uri!r} is not a valid runs URI: the run id and model name cannot contain '.' or "
            "'..' segments (a runs URI never leaves the run's artifacts)"
        )
    run_dir = get_tracking_dir() / run_id
    if run_dir.is_dir():
        from envkit._fs import resolve_inside

        local = resolve_inside(run_dir / "artifacts", artifact.rstrip("/"))
        if not local.is_dir():
            raise ModelUriError(f"run {run_id} has no model named {artifact!r} ({local})")
        return local
    return _download_with_mlflow(
        uri, why=f"run {run_id} is not in envkit's run store ({get_tracking_dir()})"
    )


def _download_with_mlflow(uri: str, *, why: str) -> Path:
    from envkit.models.flavors import mlflow_if_importable

    mlflow = mlflow_if_importable()
    if mlflow is None:
        raise ModelUriError(f"cannot resolve {uri}: {why}, and MLflow is not installed")
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except Exception as exc:
        raise ModelUriError(f"cannot resolve {uri}: {why}; MLflow says: {exc}") from exc
