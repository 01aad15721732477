"""Loader for MLflow's own ``python_function`` custom models (``mlflow.pyfunc.model``).

A cloudpickled ``mlflow.pyfunc.PythonModel`` subclass (or an MLflow models-from-code file that
calls ``mlflow.models.set_model``) can only be rebuilt with MLflow's classes. When MLflow is
importable, envkit delegates to MLflow's loader; otherwise the error says what to install.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from envkit.errors import LoaderImportError
from envkit.models.flavors import mlflow_if_importable


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> Any:
    from envkit.models.model import Model

    model = Model.load(Path(path))
    conf = model.get_flavor("python_function")
    loader = str(conf.get("loader_module"))
    if mlflow_if_importable() is None:
        version = model.mlflow_version or "<the version that saved it>"
        kind = (
            "a models-from-code MLflow model"
            if loader.endswith("code_model")
            else "a cloudpickled mlflow.pyfunc.PythonModel"
        )
        raise LoaderImportError(
            f"this model is {kind}: it can only be loaded with MLflow's classes, and MLflow is "
            f"not installed. Install it (pip install mlflow=={version}) and envkit will delegate "
            "to MLflow's loader",
            module="mlflow",
        )
    module = importlib.import_module(loader)
    if model_config:
        return module._load_pyfunc(path, model_config)
    return module._load_pyfunc(path)
