"""The ``xgboost`` flavor, file-compatible with ``mlflow.xgboost``.

    import envkit.xgboost

    envkit.xgboost.save_model(booster, "churn_model", input_example=X.head(3))
    booster = envkit.xgboost.load_model("churn_model")     # the xgboost object
    pyfunc = envkit.pyfunc.load_model("churn_model")       # the generic interface

Native models (``xgboost.Booster``) and the scikit-learn API (``XGBClassifier``,
``XGBRegressor``...) are saved with xgboost's own ``save_model`` (no pickle) in the
``model_format`` chosen (``ubj``, MLflow's default, ``json`` or ``xgb``). The flavor section
uses MLflow's keys (``xgb_version``, ``data``, ``model_class``, ``model_format``, ``code``), so
``mlflow.xgboost.load_model`` reads envkit models and envkit reads models MLflow wrote.

The pyfunc ``predict`` is MLflow's: a Booster predicts on ``xgboost.DMatrix(data)``, a
scikit-learn API model on the data itself, both with ``validate_features=True``; ``params``
are passed to xgboost's ``predict`` (those it does not accept are ignored with a warning).
"""

from __future__ import annotations

import inspect
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

FLAVOR_NAME = "xgboost"
LOADER_MODULE = "envkit.xgboost"

# MLflow's values of ``model_format`` (the file is ``model.<format>``).
MODEL_FORMAT_UBJ = "ubj"
MODEL_FORMAT_JSON = "json"
MODEL_FORMAT_XGB = "xgb"
SUPPORTED_MODEL_FORMATS = (MODEL_FORMAT_UBJ, MODEL_FORMAT_JSON, MODEL_FORMAT_XGB)
BOOSTER_CLASS = "xgboost.core.Booster"

__all__ = [
    "FLAVOR_NAME",
    "SUPPORTED_MODEL_FORMATS",
    "load_model",
    "log_model",
    "save_model",
]

RequirementsArg = Union[Sequence[str], str, "os.PathLike[str]", None]
_logger = logging.getLogger(__name__)


def _xgboost() -> Any:
    from envkit.pyfunc.flavor_kit import import_library

    return import_library("xgboost", flavor=FLAVOR_NAME)


def _class_name(model: Any) -> str:
    return f"{type(model).__module__}.{type(model).__name__}"


def save_model(
    xgb_model: Any,
    path: str | os.PathLike[str],
    *,
    model_format: str = MODEL_FORMAT_UBJ,
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
    """Save an XGBoost model (a ``Booster`` or a scikit-learn API model) as an MLflow Model
    directory at ``path``.

    ``model_format`` is the file format (``"ubj"``, default, ``"json"`` or ``"xgb"``); other
    ``kwargs`` go to the model's ``save_model``. Requirements: xgboost (the distribution
    installed here that provides it, ``xgboost-cpu`` included) and, for the scikit-learn API,
    scikit-learn.
    """
    xgb = _xgboost()
    from envkit._version import __version__
    from envkit.deps.envfiles import pin_installed
    from envkit.errors import UsageError
    from envkit.models.model import Model
    from envkit.pyfunc.flavor_kit import pin_library
    from envkit.pyfunc.save import FlavorWriter, save_model_directory

    if model_format not in SUPPORTED_MODEL_FORMATS:
        raise UsageError(
            f"model_format must be one of {', '.join(SUPPORTED_MODEL_FORMATS)}, "
            f"not {model_format!r}"
        )
    native = isinstance(xgb_model, xgb.Booster)
    if not native and not isinstance(xgb_model, xgb.XGBModel):
        raise UsageError(
            f"xgb_model must be an xgboost.Booster or a scikit-learn API model (XGBClassifier, "
            f"XGBRegressor...), not {type(xgb_model).__name__}"
        )
    file_name = f"model.{model_format}"

    def write(staging: Path, model: Model, code_dir: str | None) -> None:
        xgb_model.save_model(str(staging / file_name), **kwargs)
        pyfunc_conf: dict[str, Any] = {"loader_module": LOADER_MODULE, "data": file_name}
        if code_dir:
            pyfunc_conf["code"] = code_dir
        model.add_flavor("python_function", **pyfunc_conf)
        model.add_flavor(
            FLAVOR_NAME,
            xgb_version=xgb.__version__,
            data=file_name,
            model_class=_class_name(xgb_model),
            model_format=model_format,
            code=code_dir,
        )

    def default_requirements() -> list[str]:
        reqs = [f"envkit=={__version__}", pin_library("xgboost", "xgboost")]
        if not native:
            reqs.append(pin_installed("scikit-learn"))
        return reqs

    return save_model_directory(
        path,
        FlavorWriter(
            write=write,
            default_requirements=default_requirements,
            pyfunc_impl=lambda staging: _XGBModelWrapper(xgb_model),
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
    xgb_model: Any,
    artifact_path: str | None = None,
    *,
    name: str | None = None,
    **kwargs: Any,
) -> Any:
    """Save ``xgb_model`` into the active run (see :func:`envkit.start_run`); returns ModelInfo."""
    from envkit.pyfunc.flavor_kit import log_flavor_model

    return log_flavor_model(__name__, artifact_path, name, xgb_model=xgb_model, **kwargs)


def load_model(model_uri: str | os.PathLike[str]) -> Any:
    """Load the XGBoost object of the model at ``model_uri``: a ``Booster`` or the scikit-learn
    API class it was saved from (the flavor's ``model_class``)."""
    from envkit.pyfunc.flavor_kit import open_flavor

    opened = open_flavor(model_uri, FLAVOR_NAME)
    return _load(opened.file("data"), opened.conf, opened.path)


_QUALIFIED_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


def _model_class(name: str, code_dir: Path | None) -> Any:
    """The class ``model_class`` names: an xgboost class, or one of the model's own code (a
    subclass of one), never another module an MLmodel could name."""
    import importlib

    from envkit.errors import ModelFormatError

    xgb = _xgboost()
    module_name, _, class_name = name.rpartition(".")
    top = module_name.split(".", 1)[0]
    own = (
        code_dir is not None
        and top.isidentifier()
        and any((code_dir / f"{top}{suffix}").exists() for suffix in ("", ".py"))
    )
    if not _QUALIFIED_NAME.fullmatch(name) or (top != "xgboost" and not own):
        raise ModelFormatError(
            f"the xgboost flavor's model_class {name!r} is not an xgboost class nor one of the "
            "model's code"
        )
    try:
        cls = getattr(importlib.import_module(module_name), class_name, None)
    except ImportError as exc:
        raise ModelFormatError(
            f"the xgboost flavor's model_class {name!r} cannot be imported ({exc})"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, (xgb.Booster, xgb.XGBModel))):
        raise ModelFormatError(
            f"the xgboost flavor's model_class {name!r} is not an xgboost model class"
        )
    return cls


def _load(data: Path, conf: dict[str, Any], model_dir: Path) -> Any:
    code = conf.get("code")
    code_dir = model_dir / str(code) if code else None
    model = _model_class(str(conf.get("model_class") or BOOSTER_CLASS), code_dir)()
    model.load_model(str(data))
    return model


def _recognized(method: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The ``params`` that ``method`` accepts (all of them when it takes ``**kwargs``)."""
    accepted = inspect.signature(method).parameters
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in accepted.values()):
        return params
    ignored = sorted(set(params) - set(accepted))
    if ignored:
        _logger.warning("params %s are not accepted by the xgboost model; ignored", ignored)
    return {k: v for k, v in params.items() if k in accepted}


class _XGBModelWrapper:
    """pyfunc adapter (MLflow's): a Booster predicts on a DMatrix of the input, a scikit-learn
    API model on the input itself (its ``predict_proba``: ``get_raw_model().predict_proba``)."""

    def __init__(self, xgb_model: Any) -> None:
        self.xgb_model = xgb_model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        xgb = _xgboost()
        model = self.xgb_model
        kwargs = _recognized(model.predict, dict(params or {}))
        if isinstance(model, (xgb.Booster, xgb.XGBModel)):
            kwargs.setdefault("validate_features", True)
        if isinstance(model, xgb.Booster):
            return model.predict(xgb.DMatrix(data), **kwargs)
        return model.predict(data, **kwargs)

    def get_raw_model(self) -> Any:
        return self.xgb_model


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> _XGBModelWrapper:
    """Loader contract (also used for models MLflow wrote with ``mlflow.xgboost``): ``path`` is
    the model directory or its ``data`` file."""
    from envkit.pyfunc.flavor_kit import pyfunc_flavor_directory

    opened = pyfunc_flavor_directory(path, FLAVOR_NAME)
    target = Path(path)
    data = target if target.is_file() else opened.file("data")
    return _XGBModelWrapper(_load(data, opened.conf, opened.path))
