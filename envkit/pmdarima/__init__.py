"""The ``pmdarima`` flavor, file-compatible with ``mlflow.pmdarima``.

    import envkit.pmdarima

    arima = pmdarima.auto_arima(series)                          # or an ARIMA, or a Pipeline
    envkit.pmdarima.save_model(arima, "arima", input_example=pd.DataFrame({"n_periods": [3]}))
    arima = envkit.pmdarima.load_model("arima")                  # the pmdarima object
    envkit.pyfunc.load_model("arima").predict(pd.DataFrame({"n_periods": [3]}))  # column yhat

The model is pickled into ``model.pmd``; the flavor section has MLflow's keys
(``pmdarima_version``, ``model_type``, ``data``, ``code``). The pyfunc input is MLflow's
configuration DataFrame: one row with ``n_periods`` (an integer, required) and optionally ``X``
(exogenous regressors), ``return_conf_int`` and ``alpha`` (default 0.05). The output is a
DataFrame with ``yhat``, plus ``yhat_lower`` and ``yhat_upper`` when ``return_conf_int``.
"""

from __future__ import annotations

import numbers
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from envkit.pyfunc.flavor_kit import LibraryRequirements

FLAVOR_NAME = "pmdarima"
LOADER_MODULE = "envkit.pmdarima"
_MODEL_BINARY_KEY = "data"
_MODEL_BINARY_FILE_NAME = "model.pmd"
_MODEL_TYPE_KEY = "model_type"

__all__ = [
    "FLAVOR_NAME",
    "ForecastRequest",
    "get_default_conda_env",
    "get_default_pip_requirements",
    "load_model",
    "log_model",
    "save_model",
]

RequirementsArg = Union[Sequence[str], str, "os.PathLike[str]", None]


def _pmdarima() -> Any:
    from envkit.pyfunc.flavor_kit import import_library

    return import_library("pmdarima", flavor=FLAVOR_NAME)


_REQUIREMENTS = LibraryRequirements(("pmdarima",))


def get_default_pip_requirements() -> list[str]:
    """What the model needs besides envkit, as MLflow's: pmdarima, pinned to this version."""
    return _REQUIREMENTS.pip()


def get_default_conda_env() -> dict[str, Any]:
    """The ``conda.yaml`` mapping of a model of this flavor: this Python, envkit and
    :func:`get_default_pip_requirements`."""
    return _REQUIREMENTS.conda_env()


def save_model(
    pmdarima_model: Any,
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
) -> Any:
    """Save a fitted pmdarima ``ARIMA``, ``AutoARIMA`` or ``Pipeline`` as an MLflow Model
    directory at ``path``."""
    pmdarima = _pmdarima()
    from envkit.errors import UsageError
    from envkit.models.model import Model
    from envkit.pyfunc.save import FlavorWriter, save_model_directory

    if not callable(getattr(pmdarima_model, "predict", None)):
        raise UsageError(
            f"a pmdarima model is a fitted ARIMA or Pipeline, not a {type(pmdarima_model).__name__}"
        )

    def write(staging: Path, model: Model, code_dir: str | None) -> None:
        with open(staging / _MODEL_BINARY_FILE_NAME, "wb") as handle:
            pickle.dump(pmdarima_model, handle)
        model.add_flavor(
            "python_function",
            loader_module=LOADER_MODULE,
            data=_MODEL_BINARY_FILE_NAME,
            **({"code": code_dir} if code_dir else {}),
        )
        model.add_flavor(
            FLAVOR_NAME,
            pmdarima_version=pmdarima.__version__,
            code=code_dir,
            **{
                _MODEL_TYPE_KEY: type(pmdarima_model).__name__,
                _MODEL_BINARY_KEY: _MODEL_BINARY_FILE_NAME,
            },
        )

    return save_model_directory(
        path,
        FlavorWriter(
            write=write,
            default_requirements=_REQUIREMENTS.with_envkit,
            pyfunc_impl=lambda staging: _PmdarimaModelWrapper(pmdarima_model),
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
    pmdarima_model: Any,
    artifact_path: str | None = None,
    *,
    name: str | None = None,
    **kwargs: Any,
) -> Any:
    """Save ``pmdarima_model`` into the active run (see :func:`envkit.start_run`)."""
    from envkit.pyfunc.flavor_kit import log_flavor_model

    return log_flavor_model(__name__, artifact_path, name, pmdarima_model=pmdarima_model, **kwargs)


def load_model(
    model_uri: str | os.PathLike[str],
    *,
    trust_model: bool | None = None,
    trusted_types: Sequence[str] | None = None,
) -> Any:
    """Load the pmdarima object of the model at ``model_uri``.

    Its pickle is scanned first (see :func:`envkit.sklearn.load_model` for ``trust_model`` and
    ``trusted_types``)."""
    from envkit.pyfunc.flavor_kit import open_flavor

    opened = open_flavor(
        model_uri, FLAVOR_NAME, trust_model=trust_model, trusted_types=trusted_types
    )
    return _load_file(opened.file(_MODEL_BINARY_KEY, _MODEL_BINARY_FILE_NAME))


def _load_file(path: Path) -> Any:
    _pmdarima()
    from envkit.models.serialization import load_model_file

    return load_model_file(path, pickle.load)


@dataclass(frozen=True)
class ForecastRequest:
    """One pyfunc input row of a pmdarima model (MLflow's configuration DataFrame)."""

    n_periods: int
    X: Any = None
    return_conf_int: bool = False
    alpha: float = 0.05

    @classmethod
    def from_frame(cls, data: Any) -> ForecastRequest:
        """Read MLflow's configuration DataFrame: one row, ``n_periods`` a positive integer;
        :class:`~envkit.errors.SchemaEnforcementError` (exit 1, HTTP 400) otherwise."""
        from envkit.errors import SchemaEnforcementError

        columns = [str(c) for c in getattr(data, "columns", [])]
        if not hasattr(data, "to_dict") or not columns:
            raise SchemaEnforcementError(
                "a pmdarima model predicts from a DataFrame of one row with an n_periods column "
                f"(and optionally X, return_conf_int, alpha); got a {type(data).__name__}"
            )
        if len(data) != 1:
            raise SchemaEnforcementError(
                f"The provided prediction pd.DataFrame contains {len(data)} rows. "
                "Only 1 row should be supplied."
            )
        attrs = {str(k): v for k, v in data.to_dict(orient="records")[0].items()}
        n_periods = attrs.get("n_periods")
        if not n_periods:
            raise SchemaEnforcementError(
                f"The provided prediction configuration pd.DataFrame columns ({columns}) do not "
                "contain the required column `n_periods` for specifying future prediction "
                "periods to generate."
            )
        if isinstance(n_periods, bool) or not isinstance(n_periods, numbers.Integral):
            raise SchemaEnforcementError(
                f"The provided `n_periods` value {n_periods!r} must be an integer "
                f"(provided type: {type(n_periods).__name__})"
            )
        return cls(
            n_periods=int(n_periods),
            X=attrs.get("X"),
            return_conf_int=bool(attrs.get("return_conf_int", False)),
            alpha=attrs.get("alpha", 0.05),
        )


class _PmdarimaModelWrapper:
    """pyfunc adapter: MLflow's configuration DataFrame in, a ``yhat`` DataFrame out."""

    def __init__(self, pmdarima_model: Any) -> None:
        self.pmdarima_model = pmdarima_model

    def get_raw_model(self) -> Any:
        return self.pmdarima_model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        import pandas as pd

        request = ForecastRequest.from_frame(data)
        raw = self.pmdarima_model.predict(
            n_periods=request.n_periods,
            X=request.X,
            return_conf_int=request.return_conf_int,
            alpha=request.alpha,
        )
        if not request.return_conf_int:
            return pd.DataFrame({"yhat": raw})
        low, high = list(zip(*raw[1])) if len(raw[1]) else ((), ())
        return pd.DataFrame({"yhat": raw[0], "yhat_lower": low, "yhat_upper": high})


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> _PmdarimaModelWrapper:
    """Loader contract (also used for models MLflow wrote with ``mlflow.pmdarima``)."""
    from envkit.pyfunc.flavor_kit import pyfunc_flavor_directory

    target = Path(path)
    if not target.is_file():
        opened = pyfunc_flavor_directory(path, FLAVOR_NAME)
        target = opened.file(_MODEL_BINARY_KEY, _MODEL_BINARY_FILE_NAME)
    return _PmdarimaModelWrapper(_load_file(target))
