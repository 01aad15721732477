"""Schema enforcement: check (and safely convert) prediction input and params.

:func:`validate_prediction_input` is what ``PyFuncModel.predict`` calls. It follows MLflow's
rules (input converted to a DataFrame for column schemas, required columns present, extra
columns dropped, safe casts only, tensors checked for dtype and shape, params typed and
defaulted) with two deliberate differences:

* a violation raises :class:`~envkit.errors.SchemaEnforcementError` with one message naming
  the column or param, the expected type and what was given;
* a cast is "safe" when no value changes (so ``int64 -> double`` passes for integers up to
  2**53 and fails above).

Params that the signature does not declare are ignored with one :class:`IgnoredParamsWarning`
naming them, as MLflow 3.x does; in strict mode (``strict_params=True``, or the environment
variable ``ENVKIT_STRICT_PARAMS=1``) they raise :class:`SchemaEnforcementError` instead.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from envkit.errors import SchemaEnforcementError
from envkit.models.coerce import (
    Violation,
    enforce_param_value,
    enforce_series,
    enforce_type,
    type_name,
)
from envkit.models.schema import (
    Array,
    DataType,
    Map,
    Object,
    ParamSchema,
    Schema,
    tensor_type_of,
)

if TYPE_CHECKING:
    import pandas as pd

    from envkit.models.signature import ModelSignature

__all__ = [
    "IgnoredParamsWarning",
    "convert_to_example_format",
    "enforce_params",
    "enforce_schema",
    "to_stream_input",
    "validate_prediction_input",
]

_logger = logging.getLogger(__name__)

# Largest integer magnitude a float type holds exactly (2**mantissa bits).


def validate_prediction_input(
    data: Any,
    params: dict[str, Any] | None,
    signature: ModelSignature | None,
    *,
    type_hint: Any = None,
    input_example: Any = None,
    strict_params: bool | None = None,
) -> tuple[Any, dict[str, Any] | None]:
    """Check ``data`` and ``params`` against ``signature``; return them converted.

    Without a signature both pass through unchanged. For a signature inferred from the
    ``predict`` type hints, the data is checked against ``type_hint`` when one is given (the
    model's own validation otherwise) and only the params are enforced here. For a model whose
    predict is hinted ``TypeFromExample``, pass the saved ``input_example``: the checked
    DataFrame is handed back in the example's form (list, Series...), as MLflow does.
    """
    if signature is None:
        return data, params
    if getattr(signature, "_is_signature_from_type_hint", False):
        if type_hint is not None:
            from envkit.models.type_hints import validate_data_against_type_hint

            data = validate_data_against_type_hint(data, type_hint)
        return data, enforce_params(params, signature.params, strict=strict_params)
    if signature.inputs is not None:
        data = enforce_schema(data, signature.inputs)
        if getattr(signature, "_is_type_hint_from_example", False) and input_example is not None:
            data = convert_to_example_format(data, input_example)
    return data, enforce_params(params, signature.params, strict=strict_params)


def convert_to_example_format(data: Any, input_example: Any) -> Any:
    """An enforced DataFrame back in the form of the input example (for ``TypeFromExample``)."""
    import numpy as np
    import pandas as pd

    if not isinstance(data, pd.DataFrame) or isinstance(input_example, pd.DataFrame):
        return data
    if isinstance(input_example, pd.Series):
        series = data.iloc[:, 0]
        series.name = input_example.name
        return series
    if np.isscalar(input_example):
        return data.iloc[0, 0]
    if isinstance(input_example, dict):
        return data.to_dict(orient="records")[0] if len(data) == 1 else data
    if isinstance(input_example, list):
        if len(data.columns) == 1 and all(np.isscalar(x) for x in input_example):
            return data.iloc[:, 0].tolist()
        return data.to_dict(orient="records")
    return data


def to_stream_input(data: Any) -> Any:
    """The single input ``predict_stream`` takes, from enforced data (as MLflow converts it).

    Enforcement turns a string or dict into a one-row DataFrame; streaming models get the
    value (or the row as a dict) back. More than one row is an error.
    """
    import numpy as np
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        data = data.to_dict("list")[0] if list(data.columns) == [0] else data.to_dict("records")
    data = _plain(data, np)
    if isinstance(data, list):
        if len(data) != 1:
            raise SchemaEnforcementError(
                f"predict_stream takes a single input, got {len(data)} rows"
            )
        return data[0]
    return data


def _plain(value: Any, np: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list):
        return [_plain(v, np) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v, np) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- params ------------------------------------------------------------------------------------


class IgnoredParamsWarning(UserWarning):
    """Params given at predict that the model signature does not declare (ignored)."""


STRICT_PARAMS_ENV = "ENVKIT_STRICT_PARAMS"


def strict_params_mode(strict: bool | None) -> bool:
    """``strict`` if given, else ``ENVKIT_STRICT_PARAMS`` (true/false, 1/0, yes/no)."""
    import os

    if strict is not None:
        return bool(strict)
    return os.environ.get(STRICT_PARAMS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _undeclared(names: list[str], known: list[str], strict: bool) -> None:
    """Refuse (strict) or warn once about params the signature does not declare."""
    import warnings

    given = ", ".join(map(repr, names))
    accepted = ", ".join(map(repr, known)) or "no params"
    if strict:
        raise SchemaEnforcementError(
            f"param {given} is not in the model signature; the model accepts: {accepted}"
        )
    warnings.warn(
        f"params {given} are not in the model signature and are ignored; the model accepts: "
        f"{accepted} (set {STRICT_PARAMS_ENV}=1 to make this an error)",
        IgnoredParamsWarning,
        stacklevel=6,  # _undeclared, enforce_params, validate_prediction_input, _prepare, predict
    )


def enforce_params(
    params: dict[str, Any] | None, schema: ParamSchema | None, *, strict: bool | None = None
) -> dict[str, Any] | None:
    """Params checked against ``schema``: typed, with defaults filled in; params it does not
    declare are ignored with one warning (refused when ``strict``, see the module doc)."""
    strict = strict_params_mode(strict)
    if params is not None and not isinstance(params, Mapping):
        raise SchemaEnforcementError(f"params must be a dictionary, got {type(params).__name__}")
    if schema is None:
        if params:
            _undeclared([str(k) for k in params], [], strict)
        return None if params else params
    params = {str(k): v for k, v in (params or {}).items()}
    known = {spec.name: spec for spec in schema.params}
    unknown = [k for k in params if k not in known]
    if unknown:
        _undeclared(unknown, list(known), strict)
    result: dict[str, Any] = {}
    with _violations("params") as check:
        for name, spec in known.items():
            if name in params:
                with check:
                    result[name] = enforce_param_value(name, params[name], spec.dtype, spec.shape)
            else:
                result[name] = spec.default
    return result


# --- input data ---------------------------------------------------------------------------------


def enforce_schema(data: Any, schema: Schema) -> Any:
    """``data`` checked against the input ``schema`` and converted (see the module docstring)."""
    if _is_pandas(data, "Series"):
        import pandas as pd

        data = pd.DataFrame(data)
    if not schema.is_tensor_spec():
        data = _to_dataframe(data, schema)
    if schema.has_input_names():
        _check_named_inputs(data, schema)
    elif not schema.is_tensor_spec() and len(data.columns) < len(schema.inputs):
        raise SchemaEnforcementError(
            f"the input has {len(data.columns)} column(s) but the model signature declares "
            f"{len(schema.inputs)} unnamed column(s) ({_schema_types(schema)})"
        )
    if schema.is_tensor_spec():
        return _enforce_tensor_schema(data, schema)
    if schema.has_input_names():
        return _enforce_named_columns(data, schema)
    return _enforce_unnamed_columns(data, schema)


def _is_scalar(x: Any) -> bool:
    import numpy as np

    return bool(np.isscalar(x)) or x is None


def _to_dataframe(data: Any, schema: Schema) -> pd.DataFrame:
    import datetime as dt

    import numpy as np
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    try:
        if _is_scalar(data) or isinstance(data, (dt.date, dt.datetime)):
            return pd.DataFrame([data])
        if isinstance(data, dict):
            nested = any(isinstance(c.type, (Array, Object, Map)) for c in schema.inputs)
            one_row = all(
                _is_scalar(v) or (isinstance(v, list) and all(isinstance(i, str) for i in v))
                for v in data.values()
            )
            if nested or one_row:
                return pd.DataFrame([data])
            if all(
                isinstance(v, np.ndarray) and v.dtype.type == np.str_ and v.shape == ()
                for v in data.values()
            ):
                return pd.DataFrame([data])
            return pd.DataFrame(
                {
                    k: v.tolist() if isinstance(v, np.ndarray) and v.ndim > 1 else v
                    for k, v in data.items()
                }
            )
        if isinstance(data, (list, np.ndarray)):
            return pd.DataFrame(data)
    except SchemaEnforcementError:
        raise
    except Exception as exc:
        raise SchemaEnforcementError(
            "the model has a column-based signature, so the input must be convertible to a "
            f"DataFrame; converting {type(data).__name__} failed: {exc}"
        ) from exc
    raise SchemaEnforcementError(
        "the model has a column-based signature and expects a DataFrame (or a dict, list or "
        f"scalar that converts to one), got {type(data).__name__}"
    )


def _is_pandas(data: Any, kind: str) -> bool:
    """``data`` is a pandas ``kind`` (``DataFrame``, ``Series``). pandas is not imported to
    answer (none of its objects exists before it is): an array for a tensor signature is
    checked without importing it."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(data, getattr(pandas, kind))


def _check_named_inputs(data: Any, schema: Schema) -> None:
    if _is_pandas(data, "DataFrame"):
        actual = list(data.columns)
    elif isinstance(data, dict):
        actual = list(data)
    else:
        return  # the tensor checks below say what is wrong
    specs: dict[Any, Any] = schema.input_dict()
    missing = [n for n in schema.required_input_names() if n not in actual]
    if missing:
        tensors = schema.is_tensor_spec()

        def described(name: Any) -> str:
            spec = specs[name]
            if tensors:  # a TensorSpec: its numpy dtype and shape
                return f"{name!r} ({spec.type.name} tensor of shape {tuple(spec.shape)})"
            return f"{name!r} ({type_name(spec.type)})"

        parts = [described(n) for n in missing]
        listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        noun = "tensor" if tensors else "column"
        verb = f"{noun} {{}} is" if len(parts) == 1 else f"{noun}s {{}} are"
        given = ", ".join(map(repr, actual)) if actual else "none"
        raise SchemaEnforcementError(
            f"required input {verb.format(listed)} missing; the input has "
            f"{'tensors' if tensors else 'columns'}: {given}"
        )
    extra = [c for c in actual if c not in specs]
    if extra:
        _logger.warning(
            "ignoring input columns that are not in the model signature: %s",
            ", ".join(map(repr, extra)),
        )


def _enforce_named_columns(df: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    import pandas as pd

    out = {}
    with _violations("columns") as check:
        for spec in schema.inputs:
            if spec.name not in df.columns:
                continue  # optional and absent
            with check:
                out[spec.name] = _enforce_column(spec.name, df[spec.name], spec.type, spec.required)
    return pd.DataFrame(out, index=df.index)


def _enforce_unnamed_columns(df: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    import pandas as pd

    out = {}
    with _violations("columns") as check:
        for i, (col, spec) in enumerate(zip(df.columns[: len(schema.inputs)], schema.inputs)):
            label = f"#{i}" if col == i else repr(col)
            with check:
                out[col] = _enforce_column(label, df[col], spec.type, spec.required, quoted=True)
    return pd.DataFrame(out, index=df.index)


class _Collector:
    """Collects the SchemaEnforcementError of each ``with collector:`` block."""

    def __init__(self) -> None:
        self.errors: list[SchemaEnforcementError] = []

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        if isinstance(exc, SchemaEnforcementError):
            self.errors.append(exc)
            return True
        return False


@contextlib.contextmanager
def _violations(what: str) -> Iterator[_Collector]:
    """Check several columns (params) and report every violation in one message."""
    collector = _Collector()
    yield collector
    errors = collector.errors
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise SchemaEnforcementError(
            f"{len(errors)} {what} do not match the model signature: "
            + "; ".join(e.message for e in errors)
        )


def _enforce_column(
    name: Any, values: pd.Series, t: Any, required: bool, *, quoted: bool = False
) -> pd.Series:
    import pandas as pd

    label = f"column {name}" if quoted else f"column {name!r}"
    try:
        if isinstance(t, DataType):
            return enforce_series(values, t)
        return pd.Series(
            [enforce_type(v, t, required) for v in values], index=values.index, name=values.name
        )
    except Violation as exc:
        raise SchemaEnforcementError(f"{label}: expected {type_name(t)}, {exc}") from None


# --- tensors -----------------------------------------------------------------------------------


def _enforce_tensor_spec(values: Any, spec: Any, label: str) -> Any:
    import numpy as np

    expected_shape, expected_type = spec.shape, spec.type
    actual_shape = values.shape
    actual_type = values.dtype if isinstance(values, np.ndarray) else values.data.dtype
    expected = f"{expected_type.name} tensor of shape {_shape(expected_shape)}"
    if len(expected_shape) == 1 and expected_shape[0] == -1 and expected_type == np.dtype("O"):
        return values
    if (
        len(expected_shape) > 1
        and -1 in expected_shape[1:]
        and len(actual_shape) == 1
        and actual_type == np.dtype("O")
    ):
        return values  # a ragged array
    if len(expected_shape) != len(actual_shape) or any(
        e != -1 and e != a for e, a in zip(expected_shape, actual_shape)
    ):
        raise SchemaEnforcementError(
            f"{label}: expected {expected}, got shape {_shape(actual_shape)}"
        )
    if tensor_type_of(actual_type) != expected_type:
        raise SchemaEnforcementError(f"{label}: expected {expected}, got dtype {actual_type}")
    return values


def _reshape_column(name: str | None, series: pd.Series, spec: Any) -> Any:
    import numpy as np

    label = f"tensor {name!r}" if name else "the tensor input"
    if spec.shape[0] != -1 or -1 in spec.shape[1:]:
        raise SchemaEnforcementError(
            f"{label}: a DataFrame column can only feed a tensor whose first dimension is "
            f"variable and the others fixed, but the signature says {_shape(spec.shape)}"
        )
    first = series.iloc[0]
    if np.isscalar(first):
        if spec.shape in ((-1,), (-1, 1)):
            try:
                arr = np.array(series, dtype=spec.type).reshape(spec.shape)
            except (ValueError, TypeError) as exc:
                raise SchemaEnforcementError(
                    f"{label}: expected {spec.type.name} values, got {exc}"
                ) from None
            return _enforce_tensor_spec(arr, spec, label)
        raise SchemaEnforcementError(
            f"{label}: expected shape {_shape(spec.shape)}, got a column of scalars "
            "(which fits (-1,) or (-1, 1) only)"
        )
    if isinstance(first, (list, np.ndarray)):
        try:
            arr = np.vstack(series.tolist()).reshape(spec.shape)
            if isinstance(first, list):
                arr = arr.astype(spec.type)
        except (ValueError, TypeError):
            raise SchemaEnforcementError(
                f"{label}: the column values cannot be reshaped to {_shape(spec.shape)} "
                f"with dtype {spec.type.name}; make every row the same length"
            ) from None
        if len(arr) != len(series):
            raise SchemaEnforcementError(
                f"{label}: the column values cannot be reshaped to {_shape(spec.shape)}"
            )
        return _enforce_tensor_spec(arr, spec, label)
    raise SchemaEnforcementError(
        f"{label}: DataFrame values for a tensor input must be scalars, lists or arrays, "
        f"got {type(first).__name__}"
    )


def _enforce_tensor_schema(data: Any, schema: Schema) -> Any:
    import numpy as np

    if schema.has_input_names():
        if isinstance(data, dict):
            out = {}
            for spec in schema.inputs:
                value = _tensor_as_array(data.get(spec.name), f"tensor {spec.name!r}")
                if not isinstance(value, np.ndarray):
                    raise SchemaEnforcementError(
                        f"tensor {spec.name!r}: expected a numpy array "
                        f"({spec.type.name}, shape {_shape(spec.shape)}), got "
                        f"{type(value).__name__}"
                    )
                out[spec.name] = _enforce_tensor_spec(value, spec, f"tensor {spec.name!r}")
            return out
        if _is_pandas(data, "DataFrame"):
            return {
                spec.name: _reshape_column(spec.name, data[spec.name], spec)
                for spec in schema.inputs
            }
        raise SchemaEnforcementError(
            "the model has named tensor inputs "
            f"({', '.join(repr(s.name) for s in schema.inputs)}) and expects a dict of numpy "
            f"arrays or a DataFrame, got {type(data).__name__}"
        )
    spec = schema.inputs[0]
    if _is_pandas(data, "DataFrame"):
        if data.empty:
            raise SchemaEnforcementError("the input DataFrame is empty")
        if len(data.columns) == 1:
            return _reshape_column(None, data[data.columns[0]], spec)
        if spec.shape != (-1, len(data.columns)):
            raise SchemaEnforcementError(
                f"the tensor input: expected shape {_shape(spec.shape)}, got a DataFrame with "
                f"{len(data.columns)} columns (which fits (-1, {len(data.columns)}))"
            )
        return _enforce_tensor_spec(data.to_numpy(), spec, "the tensor input")
    data = _tensor_as_array(data, "the tensor input")
    if isinstance(data, np.ndarray) or _is_sparse(data):
        return _enforce_tensor_spec(data, spec, "the tensor input")
    raise SchemaEnforcementError(
        f"the tensor input: expected a numpy array ({spec.type.name}, shape "
        f"{_shape(spec.shape)}), got {type(data).__name__}"
    )


def _tensor_as_array(value: Any, label: str) -> Any:
    """A framework's tensor (torch, TensorFlow, JAX: anything with numpy's array protocol, not
    a list) as a numpy array, so a tensor signature checks it as MLflow checks arrays; anything
    else as it is."""
    import numpy as np

    if isinstance(value, np.ndarray) or _is_sparse(value) or not hasattr(value, "__array__"):
        return value
    try:
        return np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as exc:  # e.g. a torch tensor needing grad
        raise SchemaEnforcementError(
            f"{label}: the {type(value).__name__} cannot be read as a numpy array ({exc})"
        ) from None


def _is_sparse(x: Any) -> bool:
    module = type(x).__module__
    if not module.startswith("scipy."):
        return False
    from scipy.sparse import csc_matrix, csr_matrix

    return isinstance(x, (csc_matrix, csr_matrix))


# --- messages ----------------------------------------------------------------------------------


def _schema_types(schema: Schema) -> str:
    return ", ".join(type_name(t) for t in schema.input_types())


def _shape(shape: Any) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
