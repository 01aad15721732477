"""Flavor registry and the ``loader_module`` contract.

Library flavors register through the ``envkit.flavors`` entry point group (name -> module). A
module named by ``python_function.loader_module`` must define ``_load_pyfunc(path,
model_config=None)`` (MLflow's contract). MLflow's own loader modules for flavors envkit knows
(``mlflow.sklearn``, ``mlflow.pyfunc.model``...) are mapped to envkit's, so models MLflow wrote
load without MLflow installed.
"""

from __future__ import annotations

import functools
import importlib
import re
import sys
from importlib import metadata as importlib_metadata
from types import ModuleType
from typing import Any

from envkit.errors import LoaderImportError, ModelFormatError

FLAVOR_ENTRY_POINT_GROUP = "envkit.flavors"

# Always available, even when envkit runs from a source tree without entry points.
_BUILTIN_FLAVORS = {
    "python_function": "envkit.pyfunc",
    "sklearn": "envkit.sklearn",
    "xgboost": "envkit.xgboost",
    "lightgbm": "envkit.lightgbm",
    "catboost": "envkit.catboost",
    "statsmodels": "envkit.statsmodels",
    "spacy": "envkit.spacy",
    "prophet": "envkit.prophet",
    "pmdarima": "envkit.pmdarima",
    "diviner": "envkit.diviner",
    "onnx": "envkit.onnx",
    "spark": "envkit.spark",
    "h2o": "envkit.h2o",
    "transformers": "envkit.transformers",
    "sentence_transformers": "envkit.sentence_transformers",
    "pytorch": "envkit.pytorch",
    "keras": "envkit.keras",
    "tensorflow": "envkit.tensorflow",
}

# MLflow loader modules envkit can stand in for, and envkit's replacement.
MLFLOW_LOADER_MODULES = {
    "mlflow.pyfunc.model": "envkit.pyfunc.mlflow_compat",
    "mlflow.pyfunc.loaders.code_model": "envkit.pyfunc.mlflow_compat",
}


def entry_points(group: str) -> list[Any]:
    """Entry points of ``group`` (Python 3.9's API differs from 3.10's)."""
    eps: Any = importlib_metadata.entry_points()
    if hasattr(eps, "select"):
        return list(eps.select(group=group))
    return list(eps.get(group, []))


@functools.cache
def registered_flavors() -> dict[str, str]:
    """Flavor name -> module name, from the built-ins and the ``envkit.flavors`` entry points."""
    flavors = dict(_BUILTIN_FLAVORS)
    for ep in entry_points(FLAVOR_ENTRY_POINT_GROUP):
        flavors.setdefault(ep.name, ep.value.split(":", 1)[0])
    return flavors


def envkit_loader_for(loader_module: str) -> str:
    """The module envkit uses for ``loader_module`` (MLflow's are mapped to envkit's)."""
    if loader_module in MLFLOW_LOADER_MODULES:
        return MLFLOW_LOADER_MODULES[loader_module]
    if loader_module.startswith("mlflow."):
        flavor = loader_module[len("mlflow.") :]
        mapped = registered_flavors().get(flavor)
        if mapped is not None:
            return mapped
    return loader_module


def import_loader(loader_module: str) -> ModuleType:
    """Import the module envkit uses to load a model whose loader is ``loader_module``.

    Raises :class:`~envkit.errors.ModelFormatError` for a name that is not an absolute module
    name or a module that is no loader (exit 2), :class:`~envkit.errors.LoaderImportError` when
    the module, or one it imports, is not installed (exit 1: the model's requirements miss it).
    """
    name = envkit_loader_for(loader_module)
    check_loader_name(name)
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise _loader_import_error(name, exc) from exc
    if not hasattr(module, "_load_pyfunc"):
        raise ModelFormatError(
            f"the model's loader module {name!r} has no _load_pyfunc(path, model_config=None)"
        )
    return module


def check_loader_name(name: str) -> None:
    """Raise :class:`~envkit.errors.ModelFormatError` unless ``name`` is an absolute module
    name (a relative ``.sklearn`` cannot be imported from an MLmodel)."""
    if not _MODULE_NAME.fullmatch(name):
        raise ModelFormatError(
            f"the model's loader_module {name!r} is not an absolute module name "
            "(like 'envkit.sklearn'); fix python_function.loader_module in its MLmodel"
        )


_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _loader_import_error(name: str, exc: ImportError) -> LoaderImportError:
    """The loader ``name`` (or what it imports) is missing: which module, and what to add."""
    missing = exc.name if isinstance(exc, ModuleNotFoundError) and exc.name else None
    if name.startswith("mlflow"):
        hint = "add mlflow to the requirements (pip install mlflow) to load it"
    else:
        hint = "add it to the requirements"
    if missing is not None and (name == missing or name.startswith(missing + ".")):
        message = f"the loader module {name!r} is not installed in the model's environment: {hint}"
    elif missing is not None:
        message = (
            f"the loader module {name!r} imports {missing!r}, which is not installed in the "
            "model's environment: add it to the requirements"
        )
    else:
        message = f"the loader module {name!r} cannot be imported ({exc}); {hint}"
    return LoaderImportError(message, module=missing or name)


def mlflow_if_importable() -> ModuleType | None:
    """MLflow, when it is installed (imported only when a model needs it); ``None`` when it is
    not. An MLflow that is installed but cannot be imported (one of its own imports is missing,
    such as ``pkg_resources`` under setuptools 81 for MLflow 2.x) is a
    :class:`~envkit.errors.LoaderImportError` naming that module, not "MLflow is not installed"."""
    if "mlflow" in sys.modules:
        return sys.modules["mlflow"]
    try:
        import mlflow
    except ModuleNotFoundError as exc:
        if exc.name in (None, "mlflow"):
            return None
        raise LoaderImportError(
            f"MLflow is installed but cannot be imported: it imports {exc.name!r}, which is not "
            "installed in this environment",
            module=exc.name,
        ) from exc
    return mlflow
