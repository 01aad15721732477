"""The ``statsmodels`` flavor, file-compatible with ``mlflow.statsmodels``.

    import envkit.statsmodels

    results = sm.OLS(y, X).fit()
    envkit.statsmodels.save_model(results, "ols_model", input_example=X.head(3))
    results = envkit.statsmodels.load_model("ols_model")    # the statsmodels results object
    pyfunc = envkit.pyfunc.load_model("ols_model")          # predict(DataFrame or ndarray)

The model is a fitted results object (``statsmodels.base.model.Results``), pickled by its own
``save`` into ``model.statsmodels``; the flavor section has MLflow's keys (``statsmodels_version``,
``data``, ``code``). As MLflow's, the pyfunc ``predict`` passes the input to the results'
``predict``, except for a time-series model (ARIMA, SARIMAX, exponential smoothing...), whose
input is one row with the columns ``start`` and ``end`` (dates or positions) of the forecast.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

from envkit.pyfunc.flavor_kit import LibraryRequirements

FLAVOR_NAME = "statsmodels"
STATSMODELS_DATA_SUBPATH = "model.statsmodels"
LOADER_MODULE = "envkit.statsmodels"

__all__ = [
    "FLAVOR_NAME",
    "STATSMODELS_DATA_SUBPATH",
    "get_default_conda_env",
    "get_default_pip_requirements",
    "load_model",
    "log_model",
    "save_model",
]

RequirementsArg = Union[Sequence[str], str, "os.PathLike[str]", None]


def _statsmodels() -> Any:
    from envkit.pyfunc.flavor_kit import import_library

    return import_library("statsmodels", flavor=FLAVOR_NAME)


_REQUIREMENTS = LibraryRequirements(("statsmodels",))


def get_default_pip_requirements() -> list[str]:
    """What the model needs besides envkit, as MLflow's: statsmodels, pinned to this version."""
    return _REQUIREMENTS.pip()


def get_default_conda_env() -> dict[str, Any]:
    """The ``conda.yaml`` mapping of a model of this flavor: this Python, envkit and
    :func:`get_default_pip_requirements`."""
    return _REQUIREMENTS.conda_env()


def save_model(
    statsmodels_model: Any,
    path: str | os.PathLike[str],
    *,
    remove_data: bool = False,
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
    """Save a fitted statsmodels results object as an MLflow Model directory at ``path``.

    ``remove_data=True`` drops the arrays of length nobs before pickling (statsmodels'
    ``remove_data``), as in MLflow.
    """
    statsmodels = _statsmodels()
    from envkit.errors import UsageError
    from envkit.models.model import Model
    from envkit.pyfunc.save import FlavorWriter, save_model_directory

    if not callable(getattr(statsmodels_model, "save", None)) or not hasattr(
        statsmodels_model, "predict"
    ):
        raise UsageError(
            f"a statsmodels model is a fitted results object (model.fit()), not a "
            f"{type(statsmodels_model).__name__}"
        )

    def write(staging: Path, model: Model, code_dir: str | None) -> None:
        statsmodels_model.save(str(staging / STATSMODELS_DATA_SUBPATH), remove_data)
        model.add_flavor(
            "python_function",
            loader_module=LOADER_MODULE,
            data=STATSMODELS_DATA_SUBPATH,
            **({"code": code_dir} if code_dir else {}),
        )
        model.add_flavor(
            FLAVOR_NAME,
            statsmodels_version=statsmodels.__version__,
            data=STATSMODELS_DATA_SUBPATH,
            code=code_dir,
        )

    return save_model_directory(
        path,
        FlavorWriter(
            write=write,
            default_requirements=_REQUIREMENTS.with_envkit,
            pyfunc_impl=lambda staging: _StatsmodelsModelWrapper(statsmodels_model),
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
    statsmodels_model: Any,
    artifact_path: str | None = None,
    *,
    name: str | None = None,
    **kwargs: Any,
) -> Any:
    """Save ``statsmodels_model`` into the active run (see :func:`envkit.start_run`)."""
    from envkit.pyfunc.flavor_kit import log_flavor_model

    return log_flavor_model(
        __name__, artifact_path, name, statsmodels_model=statsmodels_model, **kwargs
    )


def load_model(
    model_uri: str | os.PathLike[str],
    *,
    trust_model: bool | None = None,
    trusted_types: Sequence[str] | None = None,
) -> Any:
    """Load the statsmodels results object of the model at ``model_uri``.

    Its pickle is scanned first (see :func:`envkit.sklearn.load_model` for ``trust_model`` and
    ``trusted_types``)."""
    from envkit.pyfunc.flavor_kit import open_flavor

    opened = open_flavor(
        model_uri, FLAVOR_NAME, trust_model=trust_model, trusted_types=trusted_types
    )
    return _load_file(opened.file("data", STATSMODELS_DATA_SUBPATH))


def _load_file(path: Path) -> Any:
    _statsmodels()
    from envkit.models.serialization import load_model_file

    # What statsmodels.iolib.smpickle.load_pickle does, with envkit's errors.
    return load_model_file(path, pickle.load)


class _StatsmodelsModelWrapper:
    """pyfunc adapter with MLflow's rules: a time-series model forecasts from ``start`` to
    ``end`` (one row); any other model predicts on the input as given."""

    def __init__(self, statsmodels_model: Any) -> None:
        self.statsmodels_model = statsmodels_model

    def get_raw_model(self) -> Any:
        return self.statsmodels_model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        from statsmodels.tsa.base.tsa_model import TimeSeriesModel

        if isinstance(getattr(self.statsmodels_model, "model", None), TimeSeriesModel):
            start, end = forecast_range(data)
            return self.statsmodels_model.predict(start=start, end=end)
        return self.statsmodels_model.predict(data)


def forecast_range(data: Any) -> tuple[Any, Any]:
    """``(start, end)`` of a time-series model's pyfunc input: one row with the columns
    ``start`` and ``end`` (a :class:`~envkit.errors.SchemaEnforcementError` otherwise)."""
    from envkit.errors import SchemaEnforcementError

    columns = list(getattr(data, "columns", []))
    if getattr(data, "shape", (0,))[0] != 1 or "start" not in columns or "end" not in columns:
        raise SchemaEnforcementError(
            "prediction dataframes for a TimeSeriesModel must have exactly one row and include "
            f"columns called start and end (got {_describe(data)})"
        )
    return data["start"].iloc[0], data["end"].iloc[0]


def _describe(data: Any) -> str:
    if hasattr(data, "columns"):
        return f"{data.shape[0]} row(s) with columns {list(data.columns)}"
    return f"a {type(data).__name__}"


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> _StatsmodelsModelWrapper:
    """Loader contract (also used for models MLflow wrote with ``mlflow.statsmodels``)."""
    from envkit.pyfunc.flavor_kit import pyfunc_flavor_directory

    target = Path(path)
    if not target.is_file():
        opened = pyfunc_flavor_directory(path, FLAVOR_NAME)
        target = opened.file("data", STATSMODELS_DATA_SUBPATH)
    return _StatsmodelsModelWrapper(_load_file(target))
