"""MLflow's scoring protocol: parse a request payload into model input, and validate it.

JSON payloads are an object with exactly one data key and optional ``params``::

    {"dataframe_split": {"columns": [...], "data": [[...], ...]}}
    {"dataframe_records": [{"a": 1, "b": "x"}, ...]}
    {"instances": [...]}          # rows (TF serving style)
    {"inputs": ...}               # columns, a tensor, or any JSON (TF serving style)
    ... , "params": {"temperature": 0.2}

Unified LLM payloads (a top-level ``messages``, ``prompt`` or ``input`` key) are passed
through as a dict, with keys the params schema names split off as params. ``text/csv``
payloads are read as a DataFrame. With a schema, values are converted as MLflow's scoring
server converts them (base64 for binary, ISO strings for datetimes, numpy arrays for tensors).

:func:`parse_serving_input` is what the scoring server and ``envkit validate --input`` use;
``envkit.models.validate_serving_input``, which loads a model, parses a payload for it and
predicts, needs the pyfunc loader: it lives in :mod:`envkit.pyfunc.serving_input`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import defaultdict
from copy import deepcopy
from typing import TYPE_CHECKING, Any

from envkit._lazy import optional_module
from envkit.errors import MalformedPayloadError, SchemaEnforcementError, ServingInputError
from envkit.models.schema import AnyType, Array, ColSpec, DataType, Map, Object, Schema, TensorSpec

if TYPE_CHECKING:
    import pandas as pd

    from envkit.models.schema import ParamSchema

__all__ = [
    "CONTENT_TYPE_CSV",
    "CONTENT_TYPE_JSON",
    "SUPPORTED_FORMATS",
    "check_content_type",
    "dataframe_from_parsed_json",
    "decode_json_payload",
    "parse_inputs_data",
    "parse_serving_input",
]

CONTENT_TYPE_CSV = "text/csv"
CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_PARQUET = "application/vnd.apache.parquet"

DF_RECORDS = "dataframe_records"
DF_SPLIT = "dataframe_split"
INSTANCES = "instances"
INPUTS = "inputs"
PARAMS = "params"
SUPPORTED_FORMATS = (DF_SPLIT, DF_RECORDS, INSTANCES, INPUTS)
LLM_KEYS = ("messages", "prompt", "input")

_FORMAT_HELP = (
    "a scoring payload is a JSON object with exactly one of "
    + ", ".join(repr(k) for k in SUPPORTED_FORMATS)
    + " (and optionally 'params'), e.g. "
    + '{"dataframe_split": {"columns": ["a"], "data": [[1]]}} or {"inputs": [[1, 2]]}'
)
_SHORT_CONTENT_TYPES = {"json": CONTENT_TYPE_JSON, "csv": CONTENT_TYPE_CSV}


def parse_serving_input(
    payload: str | bytes | dict[str, Any],
    content_type: str = CONTENT_TYPE_JSON,
    schema: Schema | None = None,
    *,
    params_schema: ParamSchema | None = None,
    signature_from_type_hint: bool = False,
) -> tuple[Any, dict[str, Any] | None]:
    """Parse a scoring request into ``(data, params)`` ready for ``PyFuncModel.predict``.

    ``schema`` is the model's input schema (values are converted to it while parsing);
    ``params_schema`` tells which top-level keys of a unified LLM payload are params. For a
    model whose signature comes from its type hints (``signature_from_type_hint``) the
    ``inputs`` value is passed through as JSON. A malformed payload raises
    :class:`~envkit.errors.ServingInputError`; values that do not fit the schema raise
    :class:`~envkit.errors.SchemaEnforcementError`; a payload nested too deeply to convert
    raises :class:`~envkit.errors.MalformedPayloadError` (MLflow's MALFORMED_REQUEST).
    """
    try:
        return _parse_serving_input(
            payload,
            content_type,
            schema,
            params_schema=params_schema,
            signature_from_type_hint=signature_from_type_hint,
        )
    except RecursionError:
        raise MalformedPayloadError(_TOO_DEEP) from None


_TOO_DEEP = (
    "the payload is not valid JSON for envkit: it nests arrays or objects too deeply to be read"
)


def _parse_serving_input(
    payload: str | bytes | dict[str, Any],
    content_type: str,
    schema: Schema | None,
    *,
    params_schema: ParamSchema | None,
    signature_from_type_hint: bool,
) -> tuple[Any, dict[str, Any] | None]:
    mime = check_content_type(content_type)
    if mime == CONTENT_TYPE_CSV:
        _require_pandas("a text/csv payload")
        return parse_csv_input(_as_text(payload, "CSV"), schema), None
    if mime == CONTENT_TYPE_PARQUET:
        return _parse_parquet(payload), None
    decoded = decode_json_payload(payload)
    if any(key in decoded for key in LLM_KEYS) and not any(
        key in decoded for key in SUPPORTED_FORMATS
    ):
        names = {p.name for p in params_schema.params} if params_schema is not None else set()
        data = {k: v for k, v in decoded.items() if k not in names}
        llm_params = {k: v for k, v in decoded.items() if k in names}
        return data, llm_params
    params = decoded.get(PARAMS)
    if params is not None and not isinstance(params, dict):
        raise ServingInputError(f"'params' must be a JSON object, got {_json_kind(params)}")
    formats = [k for k in decoded if k in SUPPORTED_FORMATS]
    unknown = [k for k in decoded if k not in SUPPORTED_FORMATS and k != PARAMS]
    if len(formats) != 1 or unknown:
        got = ", ".join(repr(k) for k in decoded) or "no keys"
        hint = ""
        if len(formats) > 1:
            hint = f" (it has {len(formats)} of them)"
        elif unknown and formats:
            hint = f" (unknown key {', '.join(map(repr, unknown))})"
        raise ServingInputError(f"{_FORMAT_HELP}; got {got}{hint}")
    key = formats[0]
    if signature_from_type_hint:
        if key != INPUTS:
            raise ServingInputError(
                "this model's signature comes from its predict type hints, so the payload "
                f"must use 'inputs'; got {key!r}"
            )
        return decoded[INPUTS], params
    if key in (INSTANCES, INPUTS):
        if schema is None and not installed("numpy"):
            # The model records no numpy (no signature, no input example): its JSON arrives as
            # Python data, in `envkit serve`, `predict` and `validate` alike.
            return decoded[key], params
        return parse_tf_serving_input({key: decoded[key]}, schema), params
    _require_pandas(f"a {key!r} payload")
    orient = "split" if key == DF_SPLIT else "records"
    return dataframe_from_parsed_json(decoded[key], orient, schema), params


def installed(module: str) -> bool:
    """Whether ``module`` can be imported in this environment (without importing it)."""
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _require_pandas(what: str) -> None:
    """Refuse a payload that is a DataFrame where the model's environment has no pandas."""
    if not installed("pandas"):
        raise ServingInputError(
            f"{what} is a pandas DataFrame, and this model's environment has no pandas (its "
            'requirements do not include it): send JSON {"inputs": ...} instead, or add '
            "pandas to the model's requirements"
        )


def check_content_type(content_type: str) -> str:
    """The MIME type of ``content_type`` (``json``/``csv`` short forms allowed), refusing
    (:class:`~envkit.errors.ServingInputError`) a charset other than UTF-8, other parameters
    and types the protocol does not know."""
    parts = [p.strip() for p in (content_type or CONTENT_TYPE_JSON).split(";")]
    mime = _SHORT_CONTENT_TYPES.get(parts[0].lower(), parts[0].lower())
    extra = {}
    for part in parts[1:]:
        key, _, value = part.partition("=")
        extra[key.strip().lower()] = value.strip().strip('"')
    charset = extra.pop("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise ServingInputError(f"only UTF-8 payloads are supported, got charset={charset}")
    if extra:
        raise ServingInputError(
            f"unsupported content type parameter(s): {', '.join(sorted(extra))}"
        )
    if mime not in (CONTENT_TYPE_JSON, CONTENT_TYPE_CSV, CONTENT_TYPE_PARQUET):
        raise ServingInputError(
            f"unsupported content type {content_type!r}; use {CONTENT_TYPE_JSON!r} or "
            f"{CONTENT_TYPE_CSV!r}"
        )
    return mime


def _as_text(payload: Any, what: str) -> str:
    if isinstance(payload, (bytes, bytearray)):
        try:
            return bytes(payload).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ServingInputError(f"the {what} payload is not valid UTF-8: {exc}") from None
    if isinstance(payload, str):
        return payload
    raise ServingInputError(f"a {what} payload must be text, got {type(payload).__name__}")


def decode_json_payload(payload: Any) -> dict[str, Any]:
    """A JSON payload (text or bytes) as a dict (a dict is returned as is); a malformed one, or
    one that is not an object, raises :class:`~envkit.errors.ServingInputError`."""
    if isinstance(payload, dict):
        return payload
    decoded = _orjson_loads(payload)
    if decoded is not None:
        if not isinstance(decoded, dict):
            raise ServingInputError(f"{_FORMAT_HELP}; got {_json_kind(decoded)}")
        return decoded
    text = _as_text(payload, "JSON")
    try:
        decoded = json.loads(text)
    except ValueError as exc:
        snippet = text if len(text) <= 80 else text[:77] + "..."
        raise MalformedPayloadError(f"the payload is not valid JSON ({exc}): {snippet!r}") from None
    except RecursionError:
        raise MalformedPayloadError(_TOO_DEEP) from None
    if not isinstance(decoded, dict):
        raise ServingInputError(f"{_FORMAT_HELP}; got {_json_kind(decoded)}")
    return decoded


def _orjson_loads(payload: Any) -> Any:
    """The payload parsed by orjson when it is installed (optional) and accepts it; None
    otherwise, and the stdlib parser decides (it also reads NaN, big integers and deep nesting,
    and words the error)."""
    if not isinstance(payload, (bytes, bytearray, str)):
        return None
    orjson = optional_module("orjson")
    if orjson is None:
        return None
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None


def _json_kind(value: Any) -> str:
    names = {list: "a JSON list", str: "a JSON string", bool: "a JSON boolean", dict: "an object"}
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a JSON number"
    return names.get(type(value), type(value).__name__)


# --- dataframes ------------------------------------------------------------------------------


def dataframe_from_parsed_json(
    decoded: Any, pandas_orient: str, schema: Schema | None = None
) -> pd.DataFrame:
    """A DataFrame from parsed ``split`` or ``records`` JSON, converted to ``schema``."""
    import numpy as np
    import pandas as pd

    # With a schema, JSON values stay Python objects until each column is cast to its type
    # (so that, e.g., a large integer next to a null does not go through float64).
    dtype = object if schema is not None and not schema.is_tensor_spec() else None
    if pandas_orient == "records":
        if not isinstance(decoded, list):
            raise ServingInputError(
                f"'dataframe_records' must be a list of row objects, got {_json_kind(decoded)}"
            )
        try:
            df = pd.DataFrame(data=decoded, dtype=dtype)
        except Exception as exc:
            raise ServingInputError(f"'dataframe_records' is not a valid table: {exc}") from None
    elif pandas_orient == "split":
        if not isinstance(decoded, dict):
            raise ServingInputError(
                "'dataframe_split' must be an object with 'columns' and 'data', got "
                f"{_json_kind(decoded)}"
            )
        extra = sorted(set(decoded) - {"columns", "data", "index"})
        if "data" not in decoded or extra:
            raise ServingInputError(
                "'dataframe_split' needs a 'data' key and may have 'columns' and 'index'; got "
                f"keys {sorted(decoded)}"
            )
        try:
            df = pd.DataFrame(
                index=decoded.get("index"),
                columns=decoded.get("columns"),
                data=decoded["data"],
                dtype=dtype,
            )
        except Exception as exc:
            raise ServingInputError(f"'dataframe_split' is not a valid table: {exc}") from None
    else:
        raise ServingInputError(f"unsupported pandas orient {pandas_orient!r}")
    if schema is not None:
        df = cast_dataframe(df, schema)
        # Columns the schema does not describe get the types pandas would have inferred.
        described = set(schema.input_names()) if schema.has_input_names() else set()
        for col in df.columns:
            if col not in described and df[col].dtype == np.dtype("O"):
                df[col] = df[col].infer_objects()
    return df


def cast_dataframe(df: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Convert parsed JSON/CSV columns to the schema's types (base64 binary, ISO datetimes)."""
    from envkit.models import coerce

    actual = list(df.columns)
    if schema.has_input_names():
        pairs = [(s.name, s) for s in schema.inputs]
    elif schema.is_tensor_spec() and len(schema.inputs) == 1:
        pairs = [(c, schema.inputs[0]) for c in actual]
    else:
        pairs = list(zip(actual, schema.inputs))
    for name, spec in pairs:
        if name not in actual:
            continue
        column = df[name]
        try:
            df[name] = _cast_column(column, spec)
        except coerce.Violation as exc:
            raise SchemaEnforcementError(
                f"column {name!r}: expected {_spec_type_name(spec)}, {exc}"
            ) from None
        except (ValueError, TypeError, OverflowError, binascii.Error) as exc:
            raise SchemaEnforcementError(
                f"column {name!r}: expected {_spec_type_name(spec)}, got values that cannot be "
                f"converted ({type(exc).__name__}: {exc})"
            ) from None
    return df


def _spec_type_name(spec: Any) -> str:
    from envkit.models.coerce import type_name

    if spec is None:  # no schema: the input becomes one numpy array
        return "an array"
    if isinstance(spec, TensorSpec):
        return f"{spec.type.name} tensor"
    return type_name(spec.type)


def _cast_column(column: pd.Series, spec: Any) -> Any:
    import numpy as np
    import pandas as pd

    from envkit.models import coerce

    t = spec.type
    required = spec.required
    if isinstance(spec, TensorSpec):
        if t == np.dtype(bytes):
            return column.map(lambda x: bytes(x, "utf8") if isinstance(x, str) else x)
        if len(column) and isinstance(column.iloc[0], list):
            return column  # reshaped (and cast) by schema enforcement
        return column.astype(t)
    if isinstance(t, AnyType):
        return column
    if isinstance(t, Array):
        return column.map(lambda x: coerce.enforce_array(x, t, required))
    if isinstance(t, Object):
        return column.map(lambda x: coerce.enforce_object(x, t, required))
    if isinstance(t, Map):
        return column.map(lambda x: coerce.enforce_map(x, t, required))
    if t is DataType.binary:
        return column.map(
            lambda x: base64.decodebytes(bytes(x, "utf8")) if isinstance(x, str) else x
        )
    if t is DataType.datetime:
        return coerce.to_datetime(column)
    if t is DataType.string:
        if isinstance(column.dtype, pd.StringDtype):
            return column
        if column.dtype == object:
            return column.infer_objects()  # pandas' own string dtype, as pd.DataFrame infers
        return column.astype(object)
    has_missing = bool(column.isna().any())
    if has_missing and t in (DataType.boolean, DataType.integer, DataType.long):
        return column.astype(coerce.NULLABLE[t])
    return column.astype(t.to_numpy())


def parse_csv_input(text: str, schema: Schema | None = None) -> pd.DataFrame:
    """A DataFrame from CSV text (as written by ``DataFrame.to_csv(index=False)``)."""
    import io

    import pandas as pd

    dtypes: dict[Any, Any] = {}
    if schema is not None and schema.has_input_names() and not schema.is_tensor_spec():
        dtypes = {
            s.name: object for s in schema.inputs if s.type in (DataType.string, DataType.binary)
        }
    try:
        df = pd.read_csv(io.StringIO(text), dtype=dtypes or None)
    except Exception as exc:
        raise ServingInputError(
            f"the CSV payload cannot be read as a table ({type(exc).__name__}: {exc}); send "
            "what DataFrame.to_csv(index=False) writes"
        ) from None
    if schema is not None:
        df = cast_dataframe(df, schema)
    return df


def _parse_parquet(payload: Any) -> Any:
    import io

    import pandas as pd

    if not isinstance(payload, (bytes, bytearray)):
        raise ServingInputError("a Parquet payload must be bytes")
    try:
        return pd.read_parquet(io.BytesIO(bytes(payload)))
    except Exception as exc:
        raise ServingInputError(f"the Parquet payload cannot be read: {exc}") from None


# --- tensors and TF-serving style ---------------------------------------------------------------


def parse_tf_serving_input(inp: dict[str, Any], schema: Schema | None = None) -> Any:
    """Data from ``{"instances": ...}`` (rows) or ``{"inputs": ...}`` (columns or a tensor)."""
    if "signature_name" in inp:
        raise ServingInputError("'signature_name' is not supported")
    if list(inp) not in ([INSTANCES], [INPUTS]):
        raise ServingInputError(f"use exactly one of 'instances' and 'inputs', got {list(inp)}")
    if INSTANCES in inp:
        return parse_instances_data(inp[INSTANCES], schema)
    return parse_inputs_data(inp[INPUTS], schema)


def parse_inputs_data(data: Any, schema: Schema | None = None) -> Any:
    """``inputs`` JSON converted to ``schema`` (numpy arrays for tensors and typed columns)."""
    import numpy as np

    data = deepcopy(data)
    named: dict[Any, Any] = (
        schema.input_dict() if schema is not None and schema.has_input_names() else {}
    )
    if schema is not None:
        if (
            len(named) == 1
            and isinstance(data, list)
            and not any(isinstance(x, dict) for x in data)
        ):
            data = {next(iter(named)): data}
        elif not schema.has_input_names() and not (isinstance(data, list) or np.isscalar(data)):
            raise SchemaEnforcementError(
                "the model signature has one unnamed input, so 'inputs' must be a list (an "
                f"n-dimensional array) or a single value, got {_json_kind(data)}"
            )
    if isinstance(data, dict):
        return {col: _convert(v, named.get(col), col) for col, v in data.items()}
    if isinstance(data, list) and data and all(isinstance(x, dict) for x in data):
        return [{col: _convert(v, named.get(col), col) for col, v in row.items()} for row in data]
    spec = schema.inputs[0] if schema is not None else None
    return _convert(data, spec, None)


def parse_instances_data(data: Any, schema: Schema | None = None) -> Any:
    """``instances`` JSON (a list of rows) converted to ``schema``."""
    import numpy as np

    named: dict[Any, Any] = (
        schema.input_dict() if schema is not None and schema.has_input_names() else {}
    )
    if isinstance(data, list) and data and isinstance(data[0], dict):
        columns: dict[str, list[Any]] = defaultdict(list)
        for row in data:
            if not isinstance(row, dict):
                raise ServingInputError("every item of 'instances' must be an object")
            for col, value in row.items():
                columns[col].append(_convert(value, named.get(col), col))
        data = {col: np.array(values) for col, values in columns.items()}
    else:
        data = parse_inputs_data(data, schema)
    if isinstance(data, dict):
        lists = {k: v for k, v in data.items() if isinstance(v, (list, np.ndarray))}
        if schema is not None and schema.has_input_names():
            checked = [
                c
                for c in schema.required_input_names()
                if c in lists and not isinstance(named[c].type, Array)
            ]
        else:
            checked = list(lists)
        lengths = {len(lists[c]) for c in checked}
        if len(lengths) > 1:
            raise ServingInputError(
                "every input in 'instances' must have the same number of values, got lengths "
                + ", ".join(f"{c!r}: {len(lists[c])}" for c in checked)
            )
    return data


def _convert(data: Any, spec: Any, name: str | None) -> Any:
    """One JSON value converted to a ColSpec/TensorSpec (numpy arrays, like MLflow)."""
    import numpy as np

    from envkit.models import coerce

    label = f"input {name!r}" if name is not None else "the input"
    try:
        if spec is None:
            return np.array(data)
        if isinstance(spec, TensorSpec):
            return np.array(data, dtype=spec.type)
        if isinstance(spec, ColSpec):
            t = spec.type
            if isinstance(t, DataType):
                if isinstance(data, (list, np.ndarray)):
                    return np.array(data, dtype=t.to_numpy())
                return np.array([data], dtype=t.to_numpy())[0]
            if isinstance(t, Array):
                return np.array(coerce.enforce_array(data, t, spec.required))
            if isinstance(t, Object):
                return coerce.enforce_object(data, t, spec.required)
            if isinstance(t, Map):
                return coerce.enforce_map(data, t, spec.required)
            return data
    except coerce.Violation as exc:
        raise SchemaEnforcementError(f"{label}: expected {_spec_type_name(spec)}, {exc}") from None
    except (ValueError, TypeError, OverflowError) as exc:
        raise SchemaEnforcementError(
            f"{label}: expected {_spec_type_name(spec)}, got {coerce.describe_value(data)} ({exc})"
        ) from None
    raise ServingInputError(f"{label}: unsupported schema entry {spec!r}")
