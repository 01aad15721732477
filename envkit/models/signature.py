"""Model signatures: :class:`ModelSignature`, :func:`infer_signature` and signatures from hints.

A signature is the model's contract: the schema of its input, of its output, and of the
params it takes at inference. In ``MLmodel`` it is stored as three JSON strings, exactly as
MLflow stores them.
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from copy import deepcopy
from dataclasses import is_dataclass
from typing import Any

from envkit.errors import SignatureError
from envkit.models.schema import (
    AnyType,
    Array,
    ColSpec,
    DataType,
    Map,
    Object,
    ParamSchema,
    ParamSpec,
    Property,
    Schema,
    TensorSpec,
    convert_dataclass_to_schema,
    tensor_type_of,
)

__all__ = [
    "ModelSignature",
    "infer_signature",
    "infer_signature_from_type_hints",
]

_logger = logging.getLogger(__name__)


class ModelSignature:
    """The schema of a model's inputs and outputs, and of its inference params."""

    def __init__(
        self,
        inputs: Schema | Any = None,
        outputs: Schema | Any = None,
        params: ParamSchema | None = None,
    ) -> None:
        for what, value in (("inputs", inputs), ("outputs", outputs)):
            if value is not None and not isinstance(value, Schema) and not is_dataclass(value):
                raise SignatureError(
                    f"{what} must be None, a Schema or a dataclass, got {type(value).__name__}"
                )
        if params is not None and not isinstance(params, ParamSchema):
            raise SignatureError(
                f"params must be None or a ParamSchema, got {type(params).__name__}"
            )
        if inputs is None and outputs is None and params is None:
            raise SignatureError("a signature needs at least one of inputs, outputs or params")
        self.inputs: Schema | None = (
            convert_dataclass_to_schema(inputs) if is_dataclass(inputs) else inputs
        )
        self.outputs: Schema | None = (
            convert_dataclass_to_schema(outputs) if is_dataclass(outputs) else outputs
        )
        self.params: ParamSchema | None = params
        self._is_signature_from_type_hint = False
        self._is_type_hint_from_example = False

    def to_dict(self) -> dict[str, Any]:
        """``{"inputs": json, "outputs": json, "params": json}`` (None where absent)."""
        return {
            "inputs": self.inputs.to_json() if self.inputs else None,
            "outputs": self.outputs.to_json() if self.outputs else None,
            "params": self.params.to_json() if self.params else None,
        }

    @classmethod
    def from_dict(cls, signature_dict: dict[str, Any]) -> ModelSignature:
        """Parse the ``signature`` section of an MLmodel file."""
        inputs = signature_dict.get("inputs")
        outputs = signature_dict.get("outputs")
        params = signature_dict.get("params")
        return cls(
            Schema.from_json(inputs) if inputs else None,
            Schema.from_json(outputs) if outputs else None,
            ParamSchema.from_json(params) if params else None,
        )

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ModelSignature)
            and self.inputs == other.inputs
            and self.outputs == other.outputs
            and self.params == other.params
        )

    def __hash__(self) -> int:
        return hash((self.inputs, self.outputs, self.params))

    def __repr__(self) -> str:
        return (
            f"inputs: \n  {self.inputs!r}\noutputs: \n  {self.outputs!r}\n"
            f"params: \n  {self.params!r}\n"
        )


# --- inference from data -----------------------------------------------------------------------


def infer_signature(
    model_input: Any = None, model_output: Any = None, params: dict[str, Any] | None = None
) -> ModelSignature:
    """Infer a signature from example input, output and inference params.

    ``model_input``/``model_output`` may be a pandas DataFrame or Series, a numpy array, a dict
    of numpy arrays (named tensors), a dict or list of dicts of JSON-like values, a list of
    scalars, a scalar, a scipy sparse matrix or a dataclass. Data whose schema cannot be
    inferred gets the catch-all ``[{"type": "any"}]`` schema, with a warning.
    """
    schemas: dict[str, Schema | None] = {"inputs": None, "outputs": None}
    for key, data in (("inputs", model_input), ("outputs", model_output)):
        if data is None:
            continue
        if is_dataclass(data):
            schemas[key] = convert_dataclass_to_schema(data)
            continue
        try:
            schemas[key] = infer_schema(data)
        except _NotInferable:
            raise
        except Exception as exc:
            warnings.warn(
                f"cannot infer the {key} schema ({exc}); using the catch-all 'any' schema, "
                "which does no validation. Pass a signature to describe the data precisely.",
                UserWarning,
                stacklevel=2,
            )
            schemas[key] = Schema([ColSpec(AnyType())])
    return ModelSignature(
        schemas["inputs"], schemas["outputs"], infer_param_schema(params) if params else None
    )


class _NotInferable(SignatureError):
    """Data that can never give a signature (e.g. pydantic instances)."""


def infer_schema(data: Any) -> Schema:
    """The :class:`Schema` of one dataset (see :func:`infer_signature` for what is accepted)."""
    import numpy as np
    import pandas as pd

    if isinstance(data, list) and data == []:
        return Schema([ColSpec(DataType.string)])  # MLflow's backward-compatible choice
    if isinstance(data, list) and all(isinstance(v, dict) for v in data):
        columns: dict[Any, list[Any]] = defaultdict(list)
        for row in data:
            for key, value in row.items():
                columns[key].append(value)
        return Schema(
            [
                ColSpec(
                    _infer_colspec_type(values).dtype,
                    name=name,
                    required=all(row.get(name) is not None for row in data),
                )
                for name, values in columns.items()
            ]
        )
    if isinstance(data, dict):
        if data and all(isinstance(v, np.ndarray) for v in data.values()):
            return Schema(
                [
                    TensorSpec(tensor_type_of(arr.dtype), _tensor_shape(arr), name=name)
                    for name, arr in data.items()
                ]
            )
        if any(not isinstance(k, str) for k in data):
            raise SignatureError("dictionary keys must all be strings")
        return Schema(
            [
                ColSpec(_infer_colspec_type(v), name=k, required=_required(v))
                for k, v in data.items()
            ]
        )
    if isinstance(data, pd.Series):
        return Schema(
            [ColSpec(_infer_pandas_column(data), name=data.name, required=_required(data))]
        )
    if isinstance(data, pd.DataFrame):
        return Schema(
            [
                ColSpec(_infer_pandas_column(data[col]), name=col, required=_required(data[col]))
                for col in data.columns
            ]
        )
    if isinstance(data, np.ndarray):
        return Schema([TensorSpec(tensor_type_of(data.dtype), _tensor_shape(data))])
    if _is_sparse(data):
        return Schema([TensorSpec(tensor_type_of(data.data.dtype), _tensor_shape(data))])
    if isinstance(data, list):
        return Schema([ColSpec(_infer_colspec_type(data).dtype)])
    try:
        return Schema([ColSpec(_infer_colspec_type(data))])
    except _NotInferable:
        raise
    except SignatureError as exc:
        raise SignatureError(
            "cannot infer a schema from "
            f"{type(data).__name__}: {exc}. Supported: pandas DataFrame or Series, numpy "
            "array, dict of numpy arrays, scipy sparse matrix, a scalar, a list of scalars, "
            "a dict or a list of dicts of JSON-like values"
        ) from exc


def _is_sparse(x: Any) -> bool:
    if not type(x).__module__.startswith("scipy."):
        return False
    from scipy.sparse import csc_matrix, csr_matrix

    return isinstance(x, (csc_matrix, csr_matrix))


def _tensor_shape(data: Any) -> tuple[int, ...]:
    shape = list(data.shape)
    if shape:
        shape[0] = -1
    return tuple(shape)


def _is_none_or_nan(x: Any) -> bool:
    import math

    import pandas as pd

    if isinstance(x, float):
        return math.isnan(x)
    return x is None or x is pd.NA or x is pd.NaT


def _required(col: Any) -> bool:
    import pandas as pd

    if isinstance(col, (list, pd.Series)):
        return not any(_is_none_or_nan(x) for x in col)
    return not _is_none_or_nan(col)


def _infer_colspec_type(data: Any) -> Any:
    dtype = _infer_datatype(data)
    if dtype is None:
        raise SignatureError(f"a numpy array must hold at least one item, got {data!r}")
    return dtype


def _infer_datatype(data: Any) -> Any:
    """The schema type of a value: dict -> Object, list/array -> Array, scalar -> DataType.

    None, NaN and empty lists/dicts are AnyType; an empty numpy array is undetermined (None).
    """
    import numpy as np

    if _is_pydantic_instance(data):
        raise _NotInferable(
            "cannot infer a signature from pydantic objects; give the PythonModel's predict a "
            "pydantic type hint (e.g. model_input: list[MyModel]) and the signature is "
            "inferred from it"
        )
    if _is_none_or_nan(data) or (isinstance(data, (list, dict)) and not data):
        return AnyType()
    if isinstance(data, dict):
        props = []
        for key, value in data.items():
            dtype = _infer_datatype(value)
            if dtype is None:
                raise SignatureError("dictionary values must not be empty numpy arrays")
            props.append(Property(key, dtype, required=not isinstance(dtype, AnyType)))
        return Object(props)
    if isinstance(data, (list, np.ndarray)):
        return _infer_array_datatype(data)
    return _infer_scalar_datatype(data)


_MIXED_TYPES = (
    "all values in a list must have one type; for mixed lists, write the signature by hand "
    "with Array(AnyType())"
)


def _infer_array_datatype(data: Any) -> Array | None:
    result: Array | None = None
    for item in data:
        dtype = _infer_datatype(item)
        if dtype is None:
            continue
        if result is None:
            result = Array(dtype)
        elif isinstance(result.dtype, (Array, Object, Map, AnyType)):
            try:
                result = Array(result.dtype._merge(dtype))
            except SignatureError:
                raise SignatureError(_MIXED_TYPES) from None
        elif not isinstance(dtype, AnyType) and dtype != result.dtype:
            raise SignatureError(_MIXED_TYPES)
    return result


def _infer_scalar_datatype(data: Any) -> DataType:
    import datetime as dt

    import numpy as np
    import pandas as pd

    kind = type(data)
    if kind is bool:
        return DataType.boolean
    if kind is int:
        return DataType.long
    if kind is float:
        return DataType.double
    if kind is str:
        return DataType.string
    if kind in (bytes, bytearray):
        return DataType.binary
    if isinstance(data, (dt.date, np.datetime64, pd.Timestamp)):
        return DataType.datetime
    if isinstance(data, np.generic):
        try:
            return _infer_numpy_dtype(np.dtype(kind))
        except SignatureError:
            pass
    raise SignatureError(f"{kind.__name__} value {data!r} has no schema type")


def _infer_numpy_dtype(dtype: Any) -> DataType:
    kind, size = dtype.kind, dtype.itemsize
    if kind == "b":
        return DataType.boolean
    if kind in ("i", "u"):
        if size < 4 or (kind == "i" and size == 4):
            return DataType.integer
        if size < 8 or (kind == "i" and size == 8):
            return DataType.long
    elif kind == "f":
        if size <= 4:
            return DataType.float
        if size <= 8:
            return DataType.double
    elif kind == "U":
        return DataType.string
    elif kind == "S":
        return DataType.binary
    elif kind == "M":
        return DataType.datetime
    raise SignatureError(f"unsupported numpy dtype {dtype}")


def _infer_pandas_column(col: Any) -> Any:
    import pandas as pd

    if col.ndim > 1:
        raise SignatureError(f"expected a 1-d column, got shape {col.shape}")
    if col.dtype.kind == "O":
        col = col.infer_objects()
    if col.dtype.kind == "O":
        try:
            return _infer_colspec_type(col.to_list()).dtype
        except _NotInferable:
            raise
        except Exception as exc:
            if pd.api.types.is_string_dtype(col):
                return DataType.string
            raise SignatureError(f"cannot infer the type of column {col.name!r}: {exc}") from exc
    return _infer_numpy_dtype(col.dtype)


def _is_pydantic_instance(x: Any) -> bool:
    import sys

    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(x, pydantic.BaseModel)


# --- params -------------------------------------------------------------------------------------


def _array_depth(value: Any) -> int:
    import numpy as np

    if isinstance(value, np.ndarray):
        return int(value.ndim)
    if isinstance(value, list):
        return max((_array_depth(v) for v in value), default=0) + 1
    return 0


def _param_type_and_shape(value: Any) -> tuple[Any, tuple[int, ...] | None]:
    import datetime as dt

    import numpy as np

    def is_datetime(v: Any) -> bool:
        return DataType.check_type(DataType.datetime, v) or isinstance(v, dt.date)

    if isinstance(value, (list, np.ndarray)):
        depth = _array_depth(value)
        if depth != 1:
            raise SignatureError(f"expected a scalar or a 1-d list, got a {depth}-d list")
        # An empty list is typed datetime here: MLflow does the same (``all([])`` is true).
        if all(is_datetime(v) for v in value):
            return DataType.datetime, (-1,)
        return _infer_numpy_dtype(np.array(value).dtype), (-1,)
    if is_datetime(value):
        return DataType.datetime, None
    if np.isscalar(value):
        return _infer_numpy_dtype(np.array(value).dtype), None
    if isinstance(value, dict):
        return infer_schema({"value": value}).inputs[0].type, None
    raise SignatureError(f"expected a scalar, a 1-d list or a dict, got {type(value).__name__}")


def infer_param_schema(params: dict[str, Any]) -> ParamSchema:
    """A :class:`ParamSchema` whose defaults are the given values."""
    if not isinstance(params, dict):
        raise SignatureError(f"params must be a dict, got {type(params).__name__}")
    specs, problems = [], []
    for name, value in params.items():
        try:
            dtype, shape = _param_type_and_shape(value)
            specs.append(ParamSpec(name, dtype, deepcopy(value), shape))
        except SignatureError as exc:
            problems.append(f"{name!r} ({exc})")
    if problems:
        raise SignatureError(f"cannot infer the type of param {', '.join(problems)}")
    return ParamSchema(specs)


# --- inference from predict type hints --------------------------------------------------------


def infer_signature_from_type_hints(
    python_model: Any, input_example: Any = None
) -> ModelSignature | None:
    """The signature given by the type hints of ``python_model.predict``, or None.

    ``list[str]``, ``list[dict[str, float]]``, ``list[MyPydanticModel]``... give the input
    schema; the return hint gives the output schema (``any`` when absent or unsupported). None
    when predict has no input hint, or one that says nothing about the data (DataFrame,
    ndarray, TypeFromExample). A hint that is malformed (``list`` with no element type, dict
    keys other than str) is an error; a hint envkit does not support gives a warning and None.
    Params come from ``input_example`` when it is a ``(data, params)`` tuple.
    """
    from envkit.models import type_hints as th

    hints = th.predict_type_hints(python_model)
    if hints.input is None or th._says_nothing(hints.input) or th.is_type_from_example(hints.input):
        return None
    try:
        input_schema = th.schema_from_type_hint(hints.input)
    except th._UnsupportedHint as exc:
        warnings.warn(f"no signature from the predict type hint: {exc}", UserWarning, stacklevel=2)
        return None
    output_schema = Schema([ColSpec(AnyType())])
    if hints.output is not None and not th._says_nothing(hints.output):
        try:
            output_schema = th.schema_from_type_hint(
                hints.output, as_list=th._is_list_hint(hints.output)
            )
        except (th._UnsupportedHint, SignatureError) as exc:
            _logger.info("output schema from the return type hint failed (%s); using 'any'", exc)
    params = None
    if _is_example_with_params(input_example):
        params = infer_param_schema(input_example[1])
    signature = ModelSignature(input_schema, output_schema, params)
    signature._is_signature_from_type_hint = True
    return signature


def _is_example_with_params(example: Any) -> bool:
    return isinstance(example, tuple) and len(example) == 2 and isinstance(example[1], dict)
