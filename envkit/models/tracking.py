"""A small local run store, so ``log_model`` works without a tracking server.

Layout: ``<tracking dir>/<run_id>/run.json`` and ``<tracking dir>/<run_id>/artifacts/<name>/``.
The tracking dir is ``./envkit-runs`` unless ``ENVKIT_TRACKING_DIR`` or
:func:`set_tracking_dir` says otherwise. When MLflow is in use and one of its runs is active,
models are logged into that run's artifacts instead, so MLflow users keep their UI.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Protocol, TypeVar

from envkit._fs import staged_directory
from envkit.errors import ModelExistsError, UsageError


class _HasModelUri(Protocol):
    model_uri: str


InfoT = TypeVar("InfoT", bound=_HasModelUri, covariant=True)
T = TypeVar("T")


class _SavedModel(Protocol[InfoT]):
    def get_model_info(self, local_path: Path | None) -> InfoT: ...


class ModelClass(Protocol[InfoT]):
    """What logging needs of a model class (``envkit.models.Model``): build one, load one."""

    def __call__(self, *, artifact_path: str, run_id: str) -> object: ...

    def load(self, path: Path) -> _SavedModel[InfoT]: ...


_tracking_dir: Path | None = None
_active: list[Run] = []


def set_tracking_dir(path: str | os.PathLike[str] | None) -> None:
    """Use ``path`` as the run store (``None`` restores the default)."""
    global _tracking_dir
    _tracking_dir = Path(path).absolute() if path is not None else None


def get_tracking_dir() -> Path:
    """Where runs are stored: :func:`set_tracking_dir`, ``ENVKIT_TRACKING_DIR``, ./envkit-runs."""
    if _tracking_dir is not None:
        return _tracking_dir
    env = os.environ.get("ENVKIT_TRACKING_DIR")
    return Path(env).absolute() if env else Path.cwd() / "envkit-runs"


@dataclass
class Run:
    """One run in the local store; a context manager that ends the run on exit."""

    run_id: str
    run_name: str | None
    tracking_dir: str
    start_time: float
    end_time: float | None = None
    status: str = "RUNNING"

    @property
    def path(self) -> Path:
        return Path(self.tracking_dir) / self.run_id

    @property
    def artifact_dir(self) -> Path:
        return self.path / "artifacts"

    def _write(self) -> None:
        from envkit._fs import atomic_write_text

        atomic_write_text(self.path / "run.json", json.dumps(asdict(self), indent=2) + "\n")

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        end_run("FAILED" if exc_type is not None else "FINISHED", run=self)


def start_run(
    run_name: str | None = None,
    *,
    tracking_dir: str | os.PathLike[str] | None = None,
    nested: bool = False,
) -> Run:
    """Start a run in the local store; use it as ``with envkit.start_run() as run:``.

    As in MLflow, starting a run while another is active is an error unless ``nested=True``.
    """
    from envkit.errors import UsageError

    if _active and not nested:
        raise UsageError(
            f"run {_active[-1].run_id} is already active; end it first (leave its with-block, "
            "or envkit.end_run()), or pass nested=True to start a run inside it"
        )
    root = Path(tracking_dir).absolute() if tracking_dir is not None else get_tracking_dir()
    run = Run(
        run_id=uuid.uuid4().hex,
        run_name=run_name,
        tracking_dir=str(root),
        start_time=time.time(),
    )
    run.artifact_dir.mkdir(parents=True, exist_ok=False)
    run._write()
    _active.append(run)
    return run


def active_run() -> Run | None:
    """The innermost active envkit run, if any."""
    return _active[-1] if _active else None


def end_run(status: str = "FINISHED", *, run: Run | None = None) -> None:
    """End ``run`` (default: the active one) with ``status``."""
    target = run or active_run()
    if target is None:
        return
    target.status = status
    target.end_time = time.time()
    target._write()
    if target in _active:
        _active.remove(target)


def _active_mlflow_run() -> Any:
    """MLflow's active run when the user is using MLflow tracking (mlflow already imported)."""
    mlflow = sys.modules.get("mlflow")
    if mlflow is None or not hasattr(mlflow, "active_run"):
        return None
    try:
        return mlflow.active_run()
    except Exception:
        return None


def _check_artifact_name(name: str) -> str:
    clean = name.strip("/")
    parts = Path(clean).parts
    if not clean or os.path.isabs(name) or ".." in parts:
        raise UsageError(f"invalid model name {name!r}: use a relative name such as 'model'")
    return clean


def log_model_directory(
    model_cls: ModelClass[InfoT], name: str, flavor: Any, save_kwargs: dict[str, Any]
) -> InfoT:
    """Save a model with ``flavor.save_model`` and put it into the active run's artifacts."""

    def write(local: Path, run_id: str, dest: Path | None) -> InfoT:
        envkit_model = model_cls(artifact_path=name, run_id=run_id)
        flavor.save_model(path=local, envkit_model=envkit_model, **save_kwargs)
        return model_cls.load(local).get_model_info(dest)

    info, uri = log_directory(name, write, what="a model")
    info.model_uri = uri
    return info


def log_directory(
    name: str, write: Callable[[Path, str, Path | None], T], *, what: str = "an artifact"
) -> tuple[T, str]:
    """Put the directory ``write(local, run_id, dest)`` fills into the active run's artifacts
    as ``name`` (MLflow's active run when there is one; else envkit's, started and ended here
    when none is active); returns what ``write`` returned and the directory's URI,
    ``runs:/<run_id>/<name>``. The directory appears whole or not at all; ``what`` names it in
    the error for a name the run already has.
    """
    name = _check_artifact_name(name)
    mlflow_run = _active_mlflow_run()
    if mlflow_run is not None:
        run_id = mlflow_run.info.run_id
        return _log_into_mlflow(name, write, run_id), f"runs:/{run_id}/{name}"
    own_run = None
    run = active_run()
    if run is None:
        run = own_run = start_run()
    try:
        dest = run.artifact_dir / name
        if dest.exists():
            raise ModelExistsError(
                f"run {run.run_id} already has {what} named {name!r}; choose another name"
            )
        with staged_directory(dest) as staging:  # written in place, renamed in when whole
            written = write(staging, run.run_id, dest)
        return written, f"runs:/{run.run_id}/{name}"
    except BaseException:
        if own_run is not None:
            end_run("FAILED", run=own_run)
            own_run = None
        raise
    finally:
        if own_run is not None:
            end_run("FINISHED", run=own_run)


def _log_into_mlflow(name: str, write: Callable[[Path, str, Path | None], T], run_id: str) -> T:
    with tempfile.TemporaryDirectory(prefix="envkit-log-") as tmp:
        local = Path(tmp) / "model"
        written = write(local, run_id, None)
        sys.modules["mlflow"].log_artifacts(str(local), artifact_path=name)
    return written
