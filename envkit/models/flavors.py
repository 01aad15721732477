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
import sys
from importlib import metadata as importlib_metadata
from types import ModuleType
from typing import Any

from envkit.errors import LoaderImportError

FLAVOR_ENTRY_POINT_GROUP = "envkit.flavors"

# Always available, even when envkit runs from a source tree without entry points.
_BUILTIN_FLAVORS = {
    "python_function": "envkit.pyfunc",
    "sklearn": "envkit.sklearn",
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
    """Import the module envkit uses to load a model whose loader is ``loader_module``."""
    name = envkit_loader_for(loader_module)
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        hint = (
            "install MLflow (pip install mlflow) to load it"
            if name.startswith("mlflow")
            else "install the package that provides it"
        )
        raise LoaderImportError(
            f"the model's loader module {name!r} cannot be imported ({exc}); {hint}"
        ) from exc
    if not hasattr(module, "_load_pyfunc"):
        raise LoaderImportError(
            f"the model's loader module {name!r} has no _load_pyfunc(path, model_config=None)"
        )
    return module


def mlflow_if_importable() -> ModuleType | None:
    """MLflow, when it is installed (imported only when a model needs it)."""
    if "mlflow" in sys.modules:
        return sys.modules["mlflow"]
    try:
        import mlflow
    except ImportError:
        return None
    return mlflow
