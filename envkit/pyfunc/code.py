"""Models from code: a ``.py`` file that defines a model and calls :func:`set_model`.

The file is executed (never unpickled) at save time, to check it defines a model, and again at
load time. ``model_config`` is visible to the file through :func:`get_model_config` while it runs.
The file calls them as ``envkit.models.set_model`` and ``envkit.models.get_model_config``
(MLflow's names); they live with the pyfunc flavor, which runs the file and wraps its model.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from envkit.errors import ModelFailedError, UsageError

_state = threading.local()


def set_model(model: Any) -> None:
    """Declare the model defined by a models-from-code file (a ``PythonModel`` or a callable)."""
    if isinstance(model, (str, os.PathLike)):
        raise UsageError(
            "set_model() takes the model object itself (a PythonModel instance or a callable), "
            "not a path"
        )
    # A PythonModel (or any object with a predict method, as MLflow accepts) or a callable.
    if not (callable(getattr(model, "predict", None)) or callable(model)):
        raise UsageError(
            f"set_model() takes a PythonModel instance or a callable, got {type(model).__name__}"
        )
    _state.model = model


def get_model_config() -> dict[str, Any]:
    """The ``model_config`` the running models-from-code file is being loaded with."""
    return dict(getattr(_state, "config", None) or {})


@contextlib.contextmanager
def _loading(config: dict[str, Any] | None) -> Iterator[None]:
    previous = getattr(_state, "model", None), getattr(_state, "config", None)
    _state.model, _state.config = None, config
    try:
        yield
    finally:
        _state.model, _state.config = previous


def code_directory(model_dir: str | os.PathLike[str], code: Any) -> Path | None:
    """The directory a model's ``code`` flavor key names (its ``code_paths`` copy), which a load
    puts first on ``sys.path``; None when the model has none. The one place both load and the
    save-time example check take it from, so that both import the model's code the same way."""
    if not code:
        return None
    from envkit._fs import resolve_inside

    return resolve_inside(Path(model_dir), str(code))


@contextlib.contextmanager
def model_code_on_path(model_dir: str | os.PathLike[str], code: Any) -> Iterator[None]:
    """``sys.path`` as a load of the model at ``model_dir`` gives it, for the duration.

    For the saving process: the staged model's code directory goes first on ``sys.path``, as
    :func:`envkit.pyfunc.load_model` puts it, while the model is built and its input example
    checked. Afterwards it is removed again, and so are the modules imported from the staged
    model (the staging directory is renamed when the save completes: a later import of the same
    name must find the loaded model's copy, not a stale one).
    """
    directory = code_directory(model_dir, code)
    if directory is None:
        yield
        return
    entry = str(directory)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)
        _forget_modules_under(Path(model_dir))


def _forget_modules_under(root: Path) -> None:
    prefix = os.path.join(os.path.abspath(root), "")
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and os.path.abspath(file).startswith(prefix):
            sys.modules.pop(name, None)


def load_model_from_code(code_path: str | os.PathLike[str], config: dict[str, Any] | None) -> Any:
    """Execute ``code_path`` and return the object it passed to :func:`set_model`."""
    path = Path(code_path)
    if not path.is_file():
        raise UsageError(f"model code file {path} does not exist")
    module_name = f"envkit_code_model_{uuid.uuid4().hex}"
    with _loading(config):
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise UsageError(f"cannot import {path} as Python code")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(module_name, None)
            raise ModelFailedError(
                f"running the model code {path.name} failed: {type(exc).__name__}: {exc}"
            ) from exc
        model = _state.model
    if model is None:
        raise UsageError(
            f"{path.name} does not define a model: call envkit.models.set_model(model) in it"
        )
    return model
