"""The ``diviner`` flavor, file-compatible with MLflow 2.x's ``mlflow.diviner``.

    import envkit.diviner

    grouped = GroupedPmdarima(ARIMA(order=(1, 0, 0))).fit(df, group_key_columns=["region"],
                                                          y_col="y", datetime_col="ds")
    envkit.diviner.save_model(grouped, "grouped", input_example=pd.DataFrame({"n_periods": [3]}))
    grouped = envkit.diviner.load_model("grouped")             # the GroupedPmdarima
    envkit.pyfunc.load_model("grouped").predict(pd.DataFrame({"n_periods": [3]}))  # per group

The model is written by diviner's own ``save`` into ``model.div`` (GroupedProphet: JSON, no
pickle; GroupedPmdarima: JSON holding base64 pickles, which envkit scans before loading). The
flavor section has MLflow's keys (``diviner_version``, ``fit_with_spark``, ``model_type``,
``data``, ``code``). A model fit with Spark is refused: envkit saves and loads the pandas
variant only, as MLflow's pyfunc does.

The pyfunc input is MLflow's configuration DataFrame, one row: ``n_periods`` or ``horizon``
(an integer, required; equal when both), ``frequency`` (a pandas frequency, required for a
GroupedProphet), optionally ``groups`` (a list of group keys: only those are forecast),
``predict_col`` and, for GroupedPmdarima, ``alpha``, ``return_conf_int``,
``inverse_transform``, ``on_error``... passed to ``predict``. The output is diviner's forecast
DataFrame: the group key columns, ``ds`` and ``yhat`` (or ``predict_col``) per group.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Union

from envkit.pyfunc.flavor_kit import LibraryRequirements

FLAVOR_NAME = "diviner"
LOADER_MODULE = "envkit.diviner"
_MODEL_BINARY_KEY = "data"
_MODEL_BINARY_FILE_NAME = "model.div"
_MODEL_TYPE_KEY = "model_type"
_SPARK_MODEL_INDICATOR = "fit_with_spark"
# The two model classes of diviner; an MLmodel cannot make envkit load any other.
MODEL_TYPES = ("GroupedProphet", "GroupedPmdarima")

__all__ = [
    "FLAVOR_NAME",
    "MODEL_TYPES",
    "ForecastConfig",
    "get_default_conda_env",
    "get_default_pip_requirements",
    "load_model",
    "log_model",
    "save_model",
]

RequirementsArg = Union[Sequence[str], str, "os.PathLike[str]", None]


def _diviner() -> Any:
    from envkit.pyfunc.flavor_kit import import_library

    return import_library("diviner", flavor=FLAVOR_NAME)


_REQUIREMENTS = LibraryRequirements(("diviner",))


def get_default_pip_requirements() -> list[str]:
    """What the model needs besides envkit, as MLflow's: diviner, pinned to this version."""
    return _REQUIREMENTS.pip()


def get_default_conda_env() -> dict[str, Any]:
    """The ``conda.yaml`` mapping of a model of this flavor: this Python, envkit and
    :func:`get_default_pip_requirements`."""
    return _REQUIREMENTS.conda_env()


def _check_savable(diviner_model: Any) -> str:
    """The model's type name; :class:`~envkit.errors.UsageError` for anything but a
    GroupedProphet or GroupedPmdarima fit on a pandas DataFrame."""
    from envkit.errors import UsageError

    kind = type(diviner_model).__name__
    if kind not in MODEL_TYPES or not type(diviner_model).__module__.startswith("diviner"):
        raise UsageError(f"a diviner model is a GroupedProphet or a GroupedPmdarima, not a {kind}")
    if getattr(diviner_model, "_fit_with_spark", False):
        raise UsageError(
            "this diviner model was fit on a Spark DataFrame; envkit saves diviner models fit "
            "on a pandas DataFrame only (fit it with pandas data)"
        )
    if not getattr(diviner_model, "model", None):
        raise UsageError(f"this {kind} is not fitted: call fit() before saving it")
    return kind


def save_model(
    diviner_model: Any,
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
    """Save a fitted diviner ``GroupedProphet`` or ``GroupedPmdarima`` as an MLflow Model
    directory at ``path`` (diviner's own serialization, in ``model.div``)."""
    diviner = _diviner()
    from envkit.models.model import Model
    from envkit.pyfunc.save import FlavorWriter, save_model_directory

    kind = _check_savable(diviner_model)

    def write(staging: Path, model: Model, code_dir: str | None) -> None:
        diviner_model.save(str(staging / _MODEL_BINARY_FILE_NAME))
        model.add_flavor(
            "python_function",
            loader_module=LOADER_MODULE,
            data=_MODEL_BINARY_FILE_NAME,
            **({"code": code_dir} if code_dir else {}),
        )
        model.add_flavor(
            FLAVOR_NAME,
            diviner_version=diviner.__version__,
            code=code_dir,
            **{
                _SPARK_MODEL_INDICATOR: False,
                _MODEL_TYPE_KEY: kind,
                _MODEL_BINARY_KEY: _MODEL_BINARY_FILE_NAME,
            },
        )

    return save_model_directory(
        path,
        FlavorWriter(
            write=write,
            default_requirements=_REQUIREMENTS.with_envkit,
            pyfunc_impl=lambda staging: _DivinerModelWrapper(diviner_model),
            # The forecast's group key column holds tuples, which have no MLflow type; MLflow
            # 2.x, the one with a diviner flavor, cannot read the catch-all "any" schema.
            infer_outputs=False,
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
    diviner_model: Any,
    artifact_path: str | None = None,
    *,
    name: str | None = None,
    **kwargs: Any,
) -> Any:
    """Save ``diviner_model`` into the active run (see :func:`envkit.start_run`)."""
    from envkit.pyfunc.flavor_kit import log_flavor_model

    return log_flavor_model(__name__, artifact_path, name, diviner_model=diviner_model, **kwargs)


def load_model(
    model_uri: str | os.PathLike[str],
    *,
    trust_model: bool | None = None,
    trusted_types: Sequence[str] | None = None,
) -> Any:
    """Load the ``GroupedProphet`` or ``GroupedPmdarima`` of the model at ``model_uri``.

    A GroupedPmdarima's group models are pickles inside ``model.div``: they are scanned first
    (see :func:`envkit.sklearn.load_model` for ``trust_model`` and ``trusted_types``)."""
    from envkit.pyfunc.flavor_kit import open_flavor

    opened = open_flavor(
        model_uri, FLAVOR_NAME, trust_model=trust_model, trusted_types=trusted_types
    )
    return _load(opened.conf, opened.path)


def _load(conf: dict[str, Any], model_dir: Path) -> Any:
    """The diviner object the flavor section ``conf`` describes (its file inside ``model_dir``)."""
    from envkit._fs import resolve_inside
    from envkit.errors import ModelFormatError

    if conf.get(_SPARK_MODEL_INDICATOR):
        raise ModelFormatError(
            "this diviner model was fit with Spark (fit_with_spark: true); envkit loads diviner "
            "models fit on pandas DataFrames only"
        )
    kind = conf.get(_MODEL_TYPE_KEY)
    if kind not in MODEL_TYPES:
        raise ModelFormatError(
            f"the diviner flavor's model_type is {kind!r}; envkit loads {' or '.join(MODEL_TYPES)}"
        )
    # A GroupedPmdarima's pickles inside the file were scanned with the model's files, before
    # this (open_flavor and pyfunc's load_model scan; embedded_pickles names them).
    target = resolve_inside(model_dir, str(conf.get(_MODEL_BINARY_KEY, _MODEL_BINARY_FILE_NAME)))
    if kind == "GroupedPmdarima":
        _read_grouped_pmdarima(target)  # a format error before diviner's own traceback
    return getattr(_diviner(), kind).load(str(target))


def embedded_pickles(model_dir: Path, conf: dict[str, Any]) -> list[tuple[str, bytes]]:
    """The pickles a GroupedPmdarima's JSON file holds (base64), for ``envkit scan`` and every
    scan of the model (:func:`envkit.models.scan.scan_model` asks each flavor module); none for
    a GroupedProphet. A file that is no JSON object is a ModelFormatError (exit 2)."""
    from envkit._fs import resolve_inside

    if conf.get(_MODEL_TYPE_KEY) != "GroupedPmdarima":
        return []
    target = resolve_inside(model_dir, str(conf.get(_MODEL_BINARY_KEY, _MODEL_BINARY_FILE_NAME)))
    document = _read_grouped_pmdarima(target)
    return list(_pickles_in(document, target.relative_to(model_dir).as_posix()))


def _read_grouped_pmdarima(target: Path) -> dict[str, Any]:
    import json

    from envkit.errors import ModelFormatError

    try:
        document = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"{target.name} is not a diviner GroupedPmdarima file: {exc}")
    if not isinstance(document, dict):
        raise ModelFormatError(f"{target.name} is not a diviner GroupedPmdarima file")
    return document


def _pickles_in(value: Any, where: str) -> Iterator[tuple[str, bytes]]:
    """The base64 strings in the JSON ``value`` that decode to a pickle (keys too: diviner
    pickles the group keys of its per-group dictionaries)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _pickles_in(key, f"{where}:{key}"[:120])
            yield from _pickles_in(item, f"{where}:{key}"[:120])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _pickles_in(item, f"{where}[{index}]")
    elif isinstance(value, str):
        payload = _base64_pickle(value)
        if payload is not None:
            yield where, payload


def _base64_pickle(text: str) -> bytes | None:
    import base64
    import binascii

    if len(text) < 4:
        return None
    try:
        payload = base64.urlsafe_b64decode(text.encode("ascii"))
    except (binascii.Error, ValueError):
        return None
    return payload if payload[:1] == b"\x80" else None


class ForecastConfig:
    """One pyfunc input row of a diviner model (MLflow's configuration DataFrame)."""

    def __init__(self, conf: dict[str, Any], columns: list[str]) -> None:
        self.conf = conf
        self.columns = columns

    @classmethod
    def from_frame(cls, data: Any) -> ForecastConfig:
        """Read MLflow's configuration DataFrame (its row labelled 0, as MLflow reads it);
        :class:`~envkit.errors.SchemaEnforcementError` (exit 1, HTTP 400) when it is not one."""
        from envkit.errors import SchemaEnforcementError

        columns = [str(c) for c in getattr(data, "columns", [])]
        if not hasattr(data, "to_dict") or not columns:
            raise SchemaEnforcementError(
                "a diviner model predicts from a DataFrame of one row with an n_periods (or "
                f"horizon) column; got a {type(data).__name__}"
            )
        conf = data.to_dict(orient="index").get(0)
        if conf is None:
            raise SchemaEnforcementError(
                "The provided prediction configuration pd.DataFrame has no row with index 0."
            )
        return cls({str(k): v for k, v in conf.items()}, columns)

    def n_periods(self) -> int:
        """``n_periods`` or ``horizon``, a positive integer."""
        from envkit.errors import SchemaEnforcementError

        horizon, n_periods = self.conf.get("horizon"), self.conf.get("n_periods")
        if n_periods and horizon and n_periods != horizon:
            raise SchemaEnforcementError(
                "The provided prediction configuration contains both `n_periods` and `horizon` "
                "with different values. Please provide only one of these integer values."
            )
        n_periods = n_periods or horizon
        if not n_periods:
            raise SchemaEnforcementError(
                "The provided prediction configuration Pandas DataFrame does not contain either "
                "the `n_periods` or `horizon` columns. At least one of these must be specified "
                f"with a valid integer value. Configuration schema: {self.columns}."
            )
        if not isinstance(n_periods, int) or isinstance(n_periods, bool):
            raise SchemaEnforcementError(
                "The `n_periods` column contains invalid data. Supplied type must be an "
                f"integer. Type supplied: {type(n_periods)}"
            )
        return n_periods

    def groups(self) -> list[tuple[Any, ...]] | None:
        """The group keys to forecast (JSON's lists made tuples), or None for all."""
        from envkit.errors import SchemaEnforcementError

        groups = self.conf.get("groups")
        if groups is None or (not isinstance(groups, list) and _is_missing(groups)):
            return None
        if not isinstance(groups, list):
            raise SchemaEnforcementError(
                "Specifying a group subset for prediction requires groups to be defined as a "
                f"[List[(Tuple|List)[<group_keys>]]. Submitted group type: {type(groups)}."
            )
        return [tuple(group) for group in groups] or None


def _is_missing(value: Any) -> bool:
    try:
        return bool(value != value) or not value  # NaN, an empty cell
    except (TypeError, ValueError):
        return False


class _DivinerModelWrapper:
    """pyfunc adapter: MLflow's configuration DataFrame in, diviner's forecast DataFrame out."""

    def __init__(self, diviner_model: Any) -> None:
        self.diviner_model = diviner_model

    def get_raw_model(self) -> Any:
        return self.diviner_model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        config = ForecastConfig.from_frame(data)
        n_periods = config.n_periods()
        groups = config.groups()
        if type(self.diviner_model).__name__ == "GroupedProphet":
            return self._prophet(config, n_periods, groups)
        restricted = {"n_periods", "horizon", "frequency", "groups"}
        kwargs = {k: v for k, v in config.conf.items() if k not in restricted}
        if groups is None:
            return self.diviner_model.predict(n_periods=n_periods, **kwargs)
        return self.diviner_model.predict_groups(groups=groups, n_periods=n_periods, **kwargs)

    def _prophet(self, config: ForecastConfig, n_periods: int, groups: list | None) -> Any:
        from envkit.errors import SchemaEnforcementError

        frequency = config.conf.get("frequency")
        if not frequency:
            raise SchemaEnforcementError(
                "Diviner's GroupedProphet model requires a `frequency` value to be submitted "
                "in Pandas date_range format. The submitted configuration Pandas DataFrame "
                f"does not contain a `frequency` column. Configuration schema: {config.columns}."
            )
        if groups is None:
            forecast = self.diviner_model.forecast(horizon=n_periods, frequency=frequency)
        else:
            kwargs = {k: v for k, v in config.conf.items() if k in ("predict_col", "on_error")}
            forecast = self.diviner_model.predict_groups(
                groups=groups, horizon=n_periods, frequency=frequency, **kwargs
            )
        predict_col = config.conf.get("predict_col")
        if predict_col is not None:
            forecast = forecast.rename(columns={"yhat": predict_col})
        return forecast


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> _DivinerModelWrapper:
    """Loader contract (also used for models MLflow 2.x wrote with ``mlflow.diviner``)."""
    from envkit.pyfunc.flavor_kit import pyfunc_flavor_directory

    opened = pyfunc_flavor_directory(path, FLAVOR_NAME)
    return _DivinerModelWrapper(_load(opened.conf, opened.path))
