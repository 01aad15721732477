"""The ``catboost`` flavor, file-compatible with ``mlflow.catboost``.

    import envkit.catboost

    envkit.catboost.save_model(classifier, "fraud_model", input_example=X.head(3))
    classifier = envkit.catboost.load_model("fraud_model")  # the CatBoost object
    pyfunc = envkit.pyfunc.load_model("fraud_model")        # the generic interface

``CatBoost``, ``CatBoostClassifier``, ``CatBoostRegressor`` and ``CatBoostRanker`` models are
saved with CatBoost's own ``save_model`` (no pickle) to ``model.cb``, in the ``format`` given as
a keyword (``cbm``, CatBoost's default). The flavor section uses MLflow's keys
(``catboost_version``, ``model_type``, ``save_format``, ``data``, ``code``), so
``mlflow.catboost.load_model`` reads envkit models and envkit reads models MLflow wrote. The
pyfunc ``predict`` is the model's ``predict(data)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

FLAVOR_NAME = "catboost"
LOADER_MODULE = "envkit.catboost"

# MLflow's keys and file name.
_MODEL_TYPE_KEY = "model_type"
_SAVE_FORMAT_KEY = "save_format"
_MODEL_BINARY_KEY = "data"
_MODEL_BINARY_FILE_NAME = "model.cb"
DEFAULT_SAVE_FORMAT = "cbm"
MODEL_TYPES = ("CatBoost", "CatBoostClassifier", "CatBoostRegressor", "CatBoostRanker")

__all__ = [
    "FLAVOR_NAME",
    "load_model",
    "log_model",
    "save_model",
]

RequirementsArg = Union[Sequence[str], str, "os.PathLike[str]", None]


def _catboost() -> Any:
    import sys

    from envkit.pyfunc.flavor_kit import import_library

    limit = sys.getrecursionlimit()
    try:
        return import_library("catboost", flavor=FLAVOR_NAME)
    finally:
        # catboost imports IPython when it is installed (its optional widget), and IPython's
        # jedi raises the interpreter's recursion limit to 3000, which would let the scoring
        # server read payloads nested far deeper than the limit it relies on.
        sys.setrecursionlimit(limit)


def save_model(
    cb_model: Any,
    path: str | os.PathLike[str],
    *,
    code_paths: Sequence[str | os.PathLike[str]] | None = None,
    input_example: Any = None,
    signature: Any = None,
    pip_requirements: RequirementsArg = None,
    extra_pip_requirements: RequirementsArg = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    strict: bool | None = None,
    conda_env: dict[str, Any] | str | os.PathLike[str] | None = None,
    envkit_model: Any = None,
    **kwargs: Any,
) -> Any:
    """Save a CatBoost model as an MLflow Model directory at ``path``.

    ``kwargs`` go to the model's ``save_model`` (``format="json"``...; the flavor's
    ``save_format`` records it).
    """
    cb = _catboost()
    from envkit._version import __version__
    from envkit.errors import UsageError
    from envkit.models.model import Model
    from envkit.pyfunc.flavor_kit import pin_library
    from envkit.pyfunc.save import FlavorWriter, save_model_directory

    if not isinstance(cb_model, cb.CatBoost) or type(cb_model).__name__ not in MODEL_TYPES:
        raise UsageError(
            f"cb_model must be a CatBoost model ({', '.join(MODEL_TYPES)}), "
            f"not {type(cb_model).__name__}"
        )

    def write(staging: Path, model: Model, code_dir: str | None) -> None:
        cb_model.save_model(str(staging / _MODEL_BINARY_FILE_NAME), **kwargs)
        pyfunc_conf: dict[str, Any] = {
            "loader_module": LOADER_MODULE,
            _MODEL_BINARY_KEY: _MODEL_BINARY_FILE_NAME,
        }
        if code_dir:
            pyfunc_conf["code"] = code_dir
        model.add_flavor("python_function", **pyfunc_conf)
        model.add_flavor(
            FLAVOR_NAME,
            catboost_version=cb.__version__,
            code=code_dir,
            **{
                _MODEL_TYPE_KEY: type(cb_model).__name__,
                _SAVE_FORMAT_KEY: kwargs.get("format", DEFAULT_SAVE_FORMAT),
                _MODEL_BINARY_KEY: _MODEL_BINARY_FILE_NAME,
            },
        )

    def default_requirements() -> list[str]:
        return [f"envkit=={__version__}", pin_library("catboost", "catboost")]

    return save_model_directory(
        path,
        FlavorWriter(
            write=write,
            default_requirements=default_requirements,
            pyfunc_impl=lambda staging: _CatboostModelWrapper(cb_model),
        ),
        envkit_model=envkit_model,
        code_paths=code_paths,
        input_example=input_example,
        signature=signature,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
        overwrite=overwrite,
        strict=strict,
        conda_env=conda_env,
    )


def log_model(
    cb_model: Any,
    artifact_path: str | None = None,
    *,
    name: str | None = None,
    **kwargs: Any,
) -> Any:
    """Save ``cb_model`` into the active run (see :func:`envkit.start_run`); returns ModelInfo."""
    from envkit.pyfunc.flavor_kit import log_flavor_model

    return log_flavor_model(__name__, artifact_path, name, cb_model=cb_model, **kwargs)


def load_model(model_uri: str | os.PathLike[str]) -> Any:
    """Load the CatBoost object of the model at ``model_uri`` (its class is the flavor's
    ``model_type``)."""
    from envkit.pyfunc.flavor_kit import open_flavor

    opened = open_flavor(model_uri, FLAVOR_NAME)
    return _load(opened.file(_MODEL_BINARY_KEY, _MODEL_BINARY_FILE_NAME), opened.conf)


def _load(data: Path, conf: dict[str, Any]) -> Any:
    from envkit.errors import ModelFormatError

    cb = _catboost()
    model_type = str(conf.get(_MODEL_TYPE_KEY))
    cls = getattr(cb, model_type, None) if model_type in MODEL_TYPES else None
    if cls is None:
        raise ModelFormatError(
            f"the catboost flavor's model_type {model_type!r} is not one of "
            + ", ".join(t for t in MODEL_TYPES if hasattr(cb, t))
        )
    model = cls()
    model.load_model(str(data), str(conf.get(_SAVE_FORMAT_KEY) or DEFAULT_SAVE_FORMAT))
    return model


class _CatboostModelWrapper:
    """pyfunc adapter (MLflow's): ``predict(data)`` of the model (a classifier's
    ``predict_proba``: ``get_raw_model().predict_proba``)."""

    def __init__(self, cb_model: Any) -> None:
        self.cb_model = cb_model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        return self.cb_model.predict(data)

    def get_raw_model(self) -> Any:
        return self.cb_model


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> _CatboostModelWrapper:
    """Loader contract (also used for models MLflow wrote with ``mlflow.catboost``): ``path`` is
    the model directory or its ``data`` file."""
    from envkit.pyfunc.flavor_kit import pyfunc_flavor_directory

    opened = pyfunc_flavor_directory(path, FLAVOR_NAME)
    target = Path(path)
    data = target if target.is_file() else opened.file(_MODEL_BINARY_KEY, _MODEL_BINARY_FILE_NAME)
    return _CatboostModelWrapper(_load(data, opened.conf))
