"""Schema types of a model signature, in MLflow's JSON format.

A :class:`Schema` is a list of :class:`ColSpec` (columns, possibly unnamed) or a list of
:class:`TensorSpec` (numpy tensors). Column types are a :class:`DataType` or one of the nested
types :class:`Array`, :class:`Object` (with :class:`Property` fields), :class:`Map` and
:class:`AnyType`. A :class:`ParamSchema` lists the inference parameters (:class:`ParamSpec`).

The JSON written by ``to_json``/``to_dict`` is byte-identical to what MLflow 3 writes, and
everything MLflow writes is read back to equal objects. numpy is imported only when a tensor
spec or a numpy conversion needs it, so importing this module stays cheap.
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
import string
from typing import TYPE_CHECKING, Any

from envkit.errors import SignatureError
from envkit.models.coerce import enforce_param_value
from envkit.models.types import (
    OBJECT_TYPE,
    TENSOR_TYPE,
    AnyType,
    Array,
    DataType,
    Map,
    Object,
    Property,
    SparkMLVector,
    duplicated_names,
    is_union,
    to_datatype,
    type_from_dict,
    type_to_dict,
)

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "AnyType",
    "Array",
    "ColSpec",
    "DataType",
    "Map",
    "Object",
    "ParamSchema",
    "ParamSpec",
    "Property",
    "Schema",
    "SparkMLVector",
    "TensorSpec",
]


def _parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SignatureError(f"{what} is not valid JSON: {exc}") from exc


class ColSpec:
    """A column: its type, optional name, and whether it is required."""

    def __init__(self, type: Any, name: str | None = None, required: bool = True) -> None:
        self._type = to_datatype(type, "column type")
        self._name = name
        self._required = True if required is None else bool(required)

    @property
    def type(self) -> Any:
        return self._type

    @property
    def name(self) -> str | None:
        return self._name

    @name.setter
    def name(self, value: str | None) -> None:
        self._name = value

    @property
    def required(self) -> bool:
        return self._required

    def to_dict(self) -> dict[str, Any]:
        d = type_to_dict(self.type)
        if self.name is not None:
            d["name"] = self.name
        d["required"] = self.required
        return d

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ColSpec)
            and self.name == other.name
            and self.type == other.type
            and self.required == other.required
        )

    def __hash__(self) -> int:
        return hash((self.name, repr(self.type), self.required))

    def __repr__(self) -> str:
        req = "required" if self.required else "optional"
        if self.name is None:
            return f"{self.type!r} ({req})"
        return f"{self.name!r}: {self.type!r} ({req})"

    @classmethod
    def from_json_dict(cls, **kwargs: Any) -> ColSpec:
        if "type" not in kwargs:
            raise SignatureError(f"a column spec needs a 'type', got {kwargs!r}")
        spec = dict(kwargs)
        name = spec.pop("name", None)
        required = spec.pop("required", None)
        if "optional" in spec:  # MLflow 2.5-2.9 wrote 'optional'
            optional = spec.pop("optional")
            required = not optional if required is None else required
        dtype = type_from_dict(spec, f"column {name!r}" if name is not None else "column")
        return cls(type=dtype, name=name, required=True if required is None else required)


class TensorSpec:
    """A tensor input or output: numpy dtype, shape (``-1`` for variable) and optional name."""

    def __init__(self, type: Any, shape: tuple[int, ...] | list[int], name: str | None = None):
        import numpy as np

        if not isinstance(type, np.dtype):
            raise SignatureError(f"a tensor dtype must be a numpy.dtype, got {type!r}")
        if type.char in ("U", "S") and not type.name.isalpha():
            raise SignatureError(
                "size information in flexible numpy dtypes is not supported; use "
                f'np.dtype("{type.name.rstrip(string.digits)}") instead'
            )
        if not isinstance(shape, (tuple, list)):
            raise SignatureError(f"a tensor shape must be a tuple or list, got {shape!r}")
        self._dtype = type
        self._shape = tuple(shape)
        self._name = name

    @property
    def type(self) -> np.dtype[Any]:
        return self._dtype

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def required(self) -> bool:
        return True

    def to_dict(self) -> dict[str, Any]:
        spec = {"dtype": self._dtype.name, "shape": list(self._shape)}
        if self.name is None:
            return {"type": TENSOR_TYPE, "tensor-spec": spec}
        return {"name": self.name, "type": TENSOR_TYPE, "tensor-spec": spec}

    @classmethod
    def from_json_dict(cls, **kwargs: Any) -> TensorSpec:
        import numpy as np

        if kwargs.get("type") != TENSOR_TYPE or not isinstance(kwargs.get("tensor-spec"), dict):
            raise SignatureError("a tensor spec needs 'type': 'tensor' and 'tensor-spec'")
        spec = kwargs["tensor-spec"]
        if "dtype" not in spec or "shape" not in spec:
            raise SignatureError("'tensor-spec' needs 'dtype' and 'shape'")
        try:
            dtype = np.dtype(spec["dtype"])
        except TypeError:
            raise SignatureError(f"unknown tensor dtype {spec['dtype']!r}") from None
        return cls(dtype, tuple(spec["shape"]), kwargs.get("name"))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TensorSpec)
            and self.name == other.name
            and self.type == other.type
            and self.shape == other.shape
        )

    def __hash__(self) -> int:
        return hash((self.name, self._dtype.name, self._shape))

    def __repr__(self) -> str:
        info = f"Tensor({self._dtype.name!r}, {self._shape!r})"
        return info if self.name is None else f"{self.name!r}: {info}"


def tensor_type_of(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """The numpy dtype a :class:`TensorSpec` records for an array of ``dtype``: string and
    bytes dtypes lose their size (``<U5`` is ``str``), as MLflow records them."""
    import numpy as np

    if dtype.char == "U":
        return np.dtype("str")
    if dtype.char == "S":
        return np.dtype("bytes")
    return dtype


class Schema:
    """The columns or tensors of a model's input or output.

    All entries are ColSpec or all are TensorSpec; all are named or none is.
    """

    def __init__(self, inputs: list[ColSpec] | list[TensorSpec] | list[Any]) -> None:
        if not isinstance(inputs, list):
            raise SignatureError(f"Schema takes a list, got {type(inputs).__name__}")
        if not inputs:
            raise SignatureError("a Schema needs at least one column or tensor")
        if not all(isinstance(x, (ColSpec, TensorSpec)) for x in inputs):
            raise SignatureError("Schema entries must be ColSpec or TensorSpec")
        named = [x.name is not None for x in inputs]
        if any(named) and not all(named):
            raise SignatureError(
                "a Schema cannot mix named and unnamed entries, got names "
                f"{[x.name for x in inputs]}"
            )
        tensors = [isinstance(x, TensorSpec) for x in inputs]
        if any(tensors) and not all(tensors):
            raise SignatureError("a Schema cannot mix ColSpec and TensorSpec entries")
        if all(tensors) and len(inputs) > 1 and not all(named):
            raise SignatureError("a Schema with several tensors must name each of them")
        if not any(named) and any(not x.required for x in inputs):
            raise SignatureError("unnamed columns cannot be optional; name them or require them")
        duplicates = duplicated_names([x.name for x in inputs if x.name is not None])
        if duplicates:
            raise SignatureError(f"duplicated column names in Schema: {duplicates}")
        self._inputs: list[Any] = inputs

    def __len__(self) -> int:
        return len(self._inputs)

    def __iter__(self) -> Any:
        return iter(self._inputs)

    @property
    def inputs(self) -> list[Any]:
        return self._inputs

    def is_tensor_spec(self) -> bool:
        return isinstance(self._inputs[0], TensorSpec)

    def has_input_names(self) -> bool:
        return self._inputs[0].name is not None

    def input_names(self) -> list[str | int]:
        return [x.name if x.name is not None else i for i, x in enumerate(self._inputs)]

    def required_input_names(self) -> list[str | int]:
        return [n for n, x in zip(self.input_names(), self._inputs) if x.required]

    def optional_input_names(self) -> list[str | int]:
        return [n for n, x in zip(self.input_names(), self._inputs) if not x.required]

    def input_types(self) -> list[Any]:
        return [x.type for x in self._inputs]

    def input_types_dict(self) -> dict[str, Any]:
        if not self.has_input_names():
            raise SignatureError("this schema has no names")
        return {x.name: x.type for x in self._inputs}

    def input_dict(self) -> dict[str, Any]:
        if not self.has_input_names():
            raise SignatureError("this schema has no names")
        return {x.name: x for x in self._inputs}

    def numpy_types(self) -> list[Any]:
        if self.is_tensor_spec():
            return [x.type for x in self._inputs]
        if all(isinstance(x.type, DataType) for x in self._inputs):
            return [x.type.to_numpy() for x in self._inputs]
        raise SignatureError("some column types have no numpy equivalent")

    def pandas_types(self) -> list[Any]:
        if self.is_tensor_spec():
            raise SignatureError("a tensor schema has numpy types only")
        if all(isinstance(x.type, DataType) for x in self._inputs):
            return [x.type.to_pandas() for x in self._inputs]
        raise SignatureError("some column types have no pandas equivalent")

    def to_dict(self) -> list[dict[str, Any]]:
        return [x.to_dict() for x in self._inputs]

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, entries: list[dict[str, Any]]) -> Schema:
        if not isinstance(entries, list):
            raise SignatureError(f"a schema must be a JSON list, got {type(entries).__name__}")
        specs: list[Any] = []
        for entry in entries:
            if not isinstance(entry, dict):
                raise SignatureError(f"a schema entry must be a JSON object, got {entry!r}")
            if entry.get("type") == TENSOR_TYPE:
                specs.append(TensorSpec.from_json_dict(**entry))
            else:
                specs.append(ColSpec.from_json_dict(**entry))
        return cls(specs)

    @classmethod
    def from_json(cls, json_str: str) -> Schema:
        return cls.from_dict(_parse_json(json_str, "a schema"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schema) and self._inputs == other._inputs

    def __hash__(self) -> int:
        return hash(tuple(self._inputs))

    def __repr__(self) -> str:
        return repr(self._inputs)


class ParamSpec:
    """An inference parameter: name, type, default and shape (None, or ``(-1,)`` for a list)."""

    def __init__(
        self,
        name: str,
        dtype: Any,
        default: Any,
        shape: tuple[int, ...] | list[int] | None = None,
    ) -> None:
        self._name = str(name)
        self._shape = tuple(shape) if shape is not None else None
        if isinstance(dtype, str):
            try:
                dtype = DataType[dtype]
            except KeyError:
                raise SignatureError(
                    f"unsupported type {dtype!r} for param {self._name!r}; expected one of "
                    f"{[t.name for t in DataType if t is not DataType.binary]} or an Object"
                ) from None
        if not isinstance(dtype, (DataType, Object)):
            raise SignatureError(
                f"param {self._name!r}: dtype must be a DataType, Object or type name, "
                f"got {dtype!r}"
            )
        if dtype is DataType.binary:
            raise SignatureError(f"param {self._name!r}: binary params are not supported")
        self._dtype = dtype
        self._default = default
        self._default = enforce_param_value(self._name, default, dtype, self._shape, default=True)

    @property
    def name(self) -> str:
        return self._name

    @property
    def dtype(self) -> Any:
        return self._dtype

    @property
    def default(self) -> Any:
        return self._default

    @property
    def shape(self) -> tuple[int, ...] | None:
        return self._shape

    def to_dict(self) -> dict[str, Any]:
        default = self.default
        if self.dtype is DataType.datetime and default is not None:
            default = [v.isoformat() for v in default] if self.shape else default.isoformat()
        result: dict[str, Any] = {
            "name": self.name,
            "default": default,
            "shape": list(self.shape) if self.shape is not None else None,
        }
        result.update(type_to_dict(self.dtype))
        return result

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ParamSpec)
            and self.name == other.name
            and self.dtype == other.dtype
            and self.default == other.default
            and self.shape == other.shape
        )

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        shape = f" (shape: {self.shape})" if self.shape is not None else ""
        return f"{self.name!r}: {self.dtype!r} (default: {self.default}){shape}"

    @classmethod
    def from_json_dict(cls, **kwargs: Any) -> ParamSpec:
        kind = kwargs.get("type", kwargs.get("dtype"))
        if "name" not in kwargs or kind is None or "default" not in kwargs:
            raise SignatureError(
                f"a param spec needs 'name', 'type' and 'default', got keys {sorted(kwargs)}"
            )
        dtype = Object.from_json_dict(**{**kwargs, "type": kind}) if kind == OBJECT_TYPE else kind
        return cls(str(kwargs["name"]), dtype, kwargs["default"], kwargs.get("shape"))


class ParamSchema:
    """The inference parameters a model accepts."""

    def __init__(self, params: list[ParamSpec]) -> None:
        if not isinstance(params, list) or not all(isinstance(p, ParamSpec) for p in params):
            raise SignatureError("ParamSchema takes a list of ParamSpec")
        duplicates = duplicated_names([p.name for p in params])
        if duplicates:
            raise SignatureError(f"duplicated params in schema: {duplicates}")
        self._params = params

    def __len__(self) -> int:
        return len(self._params)

    def __iter__(self) -> Any:
        return iter(self._params)

    @property
    def params(self) -> list[ParamSpec]:
        return self._params

    def to_dict(self) -> list[dict[str, Any]]:
        return [p.to_dict() for p in self._params]

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, entries: list[dict[str, Any]]) -> ParamSchema:
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise SignatureError("a params schema must be a JSON list of objects")
        return cls([ParamSpec.from_json_dict(**e) for e in entries])

    @classmethod
    def from_json(cls, json_str: str) -> ParamSchema:
        return cls.from_dict(_parse_json(json_str, "a params schema"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ParamSchema) and self._params == other._params

    def __hash__(self) -> int:
        return hash(tuple(p.name for p in self._params))

    def __repr__(self) -> str:
        return repr(self._params)


# --- dataclasses -----------------------------------------------------------------------------

_FIELD_TYPES: dict[Any, str] = {
    bool: "boolean",
    int: "long",
    builtins.float: "float",
    str: "string",
    bytes: "binary",
    dt.date: "datetime",
    dt.datetime: "datetime",
}


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    """(effective type, is_optional) for ``Optional[X]``; other unions are refused."""
    from typing import get_args

    if is_union(hint):
        args = get_args(hint)
        if type(None) in args and len(args) == 2:
            return next(a for a in args if a is not type(None)), True
        raise SignatureError("only Optional[...] unions are supported in dataclass fields")
    return hint, False


def _dataclass_field_type(hint: Any, where: str) -> Any:
    from dataclasses import is_dataclass
    from typing import get_args, get_origin

    if get_origin(hint) is list:
        (item,) = get_args(hint) or (None,)
        if is_dataclass(item):
            return Array(_dataclass_to_object(item))
        if item in _FIELD_TYPES:
            return Array(_FIELD_TYPES[item])
        raise SignatureError(f"unsupported list item type {item!r} in {where}")
    if is_dataclass(hint):
        return _dataclass_to_object(hint)
    if hint in _FIELD_TYPES:
        return DataType[_FIELD_TYPES[hint]]
    raise SignatureError(f"unsupported field type {hint!r} in {where}")


def _dataclass_hints(cls: Any) -> dict[str, Any]:
    import typing

    klass = cls if isinstance(cls, type) else type(cls)
    return typing.get_type_hints(klass)


def _dataclass_to_object(cls: Any) -> Object:
    props = []
    for name, hint in _dataclass_hints(cls).items():
        effective, optional = _unwrap_optional(hint)
        props.append(
            Property(name, _dataclass_field_type(effective, cls.__name__), required=not optional)
        )
    return Object(props)


def convert_dataclass_to_schema(dataclass: Any) -> Schema:
    """A named-column :class:`Schema` from a dataclass (class or instance) with typed fields."""
    name = getattr(dataclass, "__name__", type(dataclass).__name__)
    cols = []
    for field_name, hint in _dataclass_hints(dataclass).items():
        effective, optional = _unwrap_optional(hint)
        cols.append(
            ColSpec(_dataclass_field_type(effective, name), name=field_name, required=not optional)
        )
    return Schema(cols)
