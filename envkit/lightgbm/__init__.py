"""The ``lightgbm`` flavor, file-compatible with ``mlflow.lightgbm``.

    import envkit.lightgbm

    envkit.lightgbm.save_model(booster, "ranker_model", input_example=X.head(3))
    booster = envkit.lightgbm.load_model("ranker_model")   # the lightgbm object
    pyfunc = envkit.pyfunc.load_model("ranker_model")      # the generic interface

A native ``lightgbm.Booster`` is saved with its own ``save_model`` (text, ``model.lgb``); a
scikit-learn API model (``LGBMClassifier``, ``LGBMRegressor``, ``LGBMRanker``) is serialized as
``envkit.sklearn`` does, in ``serialization_format`` ``"skops"`` (MLflow 3's default:
``model.skops``, no pickle), ``"cloudpickle"`` or ``"pickle"`` (``model.pkl``). The flavor
section uses MLflow's keys (``lgb_version``, ``data``, ``model_class``, ``serialization_format``,
``skops_trusted_types``, ``code``), so ``mlflow.lightgbm.load_model`` reads envkit models and
envkit reads models MLflow wrote. The pyfunc ``predict`` is the model's ``predict(data)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

FLAVOR_NAME = "lightgbm"
LOADER_MODULE = "envkit.lightgbm"

BOOSTER_CLASS = "lightgbm.basic.Booster"
BOOSTER_FILE = "model.lgb"
SERIALIZATION_FORMAT_PICKLE = "pickle"
SERIALIZATION_FORMAT_CLOUDPICKLE = "cloudpickle"
SERIALIZATION_FORMAT_SKOPS = "skops"
SUPPORTED_SERIALIZATION_FORMATS = (
    SERIALIZATION_FORMAT_PICKLE,
    SERIALIZATION_FORMAT_CLOUDPICKLE,
    SERIALIZATION_FORMAT_SKOPS,
)
# What MLflow trusts when skops restores a scikit-learn API model (added to the user's list).
SKOPS_TRUSTED_TYPES = (
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "lightgbm.sklearn.LGBMRegressor",
)

__all__ = [
    "FLAVOR_NAME",
    "SERIALIZATION_FORMAT_CLOUDPICKLE",
    "SERIALIZATION_FORMAT_PICKLE",
    "SERIALIZATION_FORMAT_SKOPS",
    "SUPPORTED_SERIALIZATION_FORMATS",
    "load_model",
    "log_model",
    "save_model",
]

RequirementsArg = Union[Sequence[str], str, "os.PathLike[str]", None]


def _lightgbm() -> Any:
    from envkit.pyfunc.flavor_kit import import_library

    return import_library("lightgbm", flavor=FLAVOR_NAME)


def _file_and_trust(
    native: bool, serialization_format: str, skops_trusted_types: Sequence[str] | None
) -> tuple[str, list[str] | None]:
    """The model's file name, and the flavor's ``skops_trusted_types`` (MLflow's added for
    skops, even for a Booster, as MLflow writes them)."""
    trusted = list(skops_trusted_types) if skops_trusted_types is not None else None
    if serialization_format == SERIALIZATION_FORMAT_SKOPS:
        trusted = sorted(set(SKOPS_TRUSTED_TYPES) | set(trusted or ()))
    if native:
        return BOOSTER_FILE, trusted
    if serialization_format == SERIALIZATION_FORMAT_SKOPS:
        return "model.skops", trusted
    return "model.pkl", trusted


def save_model(
    lgb_model: Any,
    path: str | os.PathLike[str],
    *,
    serialization_format: str = SERIALIZATION_FORMAT_SKOPS,
    skops_trusted_types: Sequence[str] | None = None,
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
) -> Any:
    """Save a LightGBM model (a ``Booster`` or a scikit-learn API model) as an MLflow Model
    directory at ``path``.

    ``serialization_format`` (``"skops"``, default as in MLflow 3, ``"cloudpickle"`` or
    ``"pickle"``) applies to scikit-learn API models; a Booster is always saved as LightGBM
    text. ``skops_trusted_types`` adds to the types MLflow trusts for LightGBM.
    """
    lgb = _lightgbm()
    from envkit._version import __version__
    from envkit.deps.envfiles import pin_installed
    from envkit.errors import UsageError
    from envkit.models.model import Model
    from envkit.pyfunc.flavor_kit import pin_library
    from envkit.pyfunc.save import FlavorWriter, save_model_directory

    if serialization_format not in SUPPORTED_SERIALIZATION_FORMATS:
        raise UsageError(
            f"serialization_format must be one of {', '.join(SUPPORTED_SERIALIZATION_FORMATS)}, "
            f"not {serialization_format!r}"
        )
    native = isinstance(lgb_model, lgb.Booster)
    if not native and not isinstance(lgb_model, lgb.LGBMModel):
        raise UsageError(
            f"lgb_model must be a lightgbm.Booster or a scikit-learn API model (LGBMClassifier, "
            f"LGBMRegressor...), not {type(lgb_model).__name__}"
        )
    file_name, trusted = _file_and_trust(native, serialization_format, skops_trusted_types)

    def write(staging: Path, model: Model, code_dir: str | None) -> None:
        if native:
            lgb_model.save_model(str(staging / file_name))
        else:
            from envkit.sklearn import _dump

            _dump(lgb_model, staging / file_name, serialization_format, trusted)
        pyfunc_conf: dict[str, Any] = {"loader_module": LOADER_MODULE, "data": file_name}
        if code_dir:
            pyfunc_conf["code"] = code_dir
        model.add_flavor("python_function", **pyfunc_conf)
        model.add_flavor(
            FLAVOR_NAME,
            lgb_version=lgb.__version__,
            data=file_name,
            model_class=f"{type(lgb_model).__module__}.{type(lgb_model).__name__}",
            code=code_dir,
            serialization_format=serialization_format,
            skops_trusted_types=trusted,
        )

    def default_requirements() -> list[str]:
        reqs = [f"envkit=={__version__}", pin_library("lightgbm", "lightgbm")]
        if not native:
            reqs.append(pin_installed("scikit-learn"))
            if serialization_format != SERIALIZATION_FORMAT_PICKLE:
                reqs.append(pin_installed(serialization_format))
        return reqs

    return save_model_directory(
        path,
        FlavorWriter(
            write=write,
            default_requirements=default_requirements,
            pyfunc_impl=lambda staging: _LGBModelWrapper(lgb_model),
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
    lgb_model: Any,
    artifact_path: str | None = None,
    *,
    name: str | None = None,
    **kwargs: Any,
) -> Any:
    """Save ``lgb_model`` into the active run (see :func:`envkit.start_run`); returns ModelInfo."""
    from envkit.pyfunc.flavor_kit import log_flavor_model

    return log_flavor_model(__name__, artifact_path, name, lgb_model=lgb_model, **kwargs)


def load_model(
    model_uri: str | os.PathLike[str],
    *,
    trust_model: bool | None = None,
    trusted_types: Sequence[str] | None = None,
) -> Any:
    """Load the LightGBM object of the model at ``model_uri``: a ``Booster`` or the scikit-learn
    API model. Pickled models are scanned first (see :func:`envkit.sklearn.load_model`)."""
    from envkit.pyfunc.flavor_kit import open_flavor

    opened = open_flavor(
        model_uri, FLAVOR_NAME, trust_model=trust_model, trusted_types=trusted_types
    )
    return _load(opened.file("data"), opened.conf)


def _load(data: Path, conf: dict[str, Any]) -> Any:
    if str(conf.get("model_class") or BOOSTER_CLASS) == BOOSTER_CLASS:
        return _lightgbm().Booster(model_file=str(data))
    _lightgbm()  # a clear error naming lightgbm before unpickling needs it
    from envkit.sklearn import _load_file

    return _load_file(
        data,
        str(conf.get("serialization_format") or SERIALIZATION_FORMAT_CLOUDPICKLE),
        conf.get("skops_trusted_types"),
    )


class _LGBModelWrapper:
    """pyfunc adapter (MLflow's): ``predict(data)`` of the model (a classifier's
    ``predict_proba``: ``get_raw_model().predict_proba``)."""

    def __init__(self, lgb_model: Any) -> None:
        self.lgb_model = lgb_model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        return self.lgb_model.predict(data)

    def get_raw_model(self) -> Any:
        return self.lgb_model


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> _LGBModelWrapper:
    """Loader contract (also used for models MLflow wrote with ``mlflow.lightgbm``): ``path`` is
    the model directory or its ``data`` file."""
    from envkit.pyfunc.flavor_kit import pyfunc_flavor_directory

    opened = pyfunc_flavor_directory(path, FLAVOR_NAME)
    target = Path(path)
    data = target if target.is_file() else opened.file("data")
    return _LGBModelWrapper(_load(data, opened.conf))
