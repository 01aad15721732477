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
from copy import deepcopy
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar, Union

from envkit.errors import SignatureError

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

ARRAY_TYPE = "array"
OBJECT_TYPE = "object"
MAP_TYPE = "map"
ANY_TYPE = "any"
SPARKML_VECTOR_TYPE = "sparkml_vector"
TENSOR_TYPE = "tensor"


class DataType(Enum):
    """Scalar column types (the names are what MLflow writes in JSON)."""

    boolean = 1
    """Logical data (True, False)."""
    integer = 2
    """32-bit signed integers."""
    long = 3
    """64-bit signed integers."""
    float = 4
    """32-bit floating point numbers."""
    double = 5
    """64-bit floating point numbers."""
    string = 6
    """Text."""
    binary = 7
    """Raw bytes."""
    datetime = 8
    """Timestamps (nanosecond precision in pandas)."""

    def __repr__(self) -> str:
        return self.name

    def to_numpy(self) -> np.dtype[Any]:
        """The equivalent numpy dtype."""
        import numpy as np

        return np.dtype(_NUMPY_NAMES[self.name])

    def to_pandas(self) -> Any:
        """The equivalent pandas dtype (``object`` for string and binary)."""
        if self.name in ("string", "binary"):
            return object
        return self.to_numpy()

    def to_python(self) -> type:
        """The equivalent Python type."""
        return _PYTHON_TYPES[self.name]

    @classmethod
    def check_type(cls, data_type: DataType, value: Any) -> bool:
        """Whether ``value`` is exactly of ``data_type`` (no conversion)."""
        import numpy as np

        types: list[Any] = [data_type.to_numpy().type, data_type.to_python()]
        if data_type is DataType.datetime:
            types.extend([np.datetime64, dt.datetime])
        if data_type is DataType.binary:
            types.extend([bytearray, np.bytes_])
        if data_type is DataType.string:
            types.append(np.str_)
        return type(value) in types

    @classmethod
    def all_types(cls) -> list[DataType]:
        return list(cls.__members__.values())

    @classmethod
    def from_numpy_type(cls, np_type: Any) -> DataType | None:
        return next((t for t in cls.__members__.values() if t.to_numpy() == np_type), None)


_NUMPY_NAMES = {
    "boolean": "bool",
    "integer": "int32",
    "long": "int64",
    "float": "float32",
    "double": "float64",
    "string": "str",
    "binary": "bytes",
    "datetime": "datetime64[ns]",
}
_PYTHON_TYPES: dict[str, type] = {
    "boolean": bool,
    "integer": int,
    "long": int,
    "float": builtins.float,
    "double": builtins.float,
    "string": str,
    "binary": bytes,
    "datetime": dt.date,
}


def _to_datatype(value: Any, what: str) -> Any:
    """``value`` as a DataType/Array/Object/Map/AnyType (a string names a DataType)."""
    if isinstance(value, str):
        try:
            return DataType[value]
        except KeyError:
            raise SignatureError(
                f"unsupported {what} {value!r}; expected one of "
                f"{[t.name for t in DataType]} or an Array, Object, Map or AnyType"
            ) from None
    if not isinstance(value, (DataType, Array, Object, Map, AnyType)):
        raise SignatureError(
            f"{what} must be a DataType, Array, Object, Map, AnyType or a type name, got {value!r}"
        )
    return value


def _type_to_dict(t: Any) -> dict[str, Any]:
    return {"type": t.name} if isinstance(t, DataType) else t.to_dict()


def _type_from_dict(d: Any, what: str) -> Any:
    """Parse ``{"type": ...}`` JSON (of an array item, map value, property or column)."""
    if not isinstance(d, dict) or "type" not in d:
        raise SignatureError(f"{what} must be a JSON object with a 'type' key, got {d!r}")
    kind = d["type"]
    if kind == ARRAY_TYPE:
        return Array.from_json_dict(**d)
    if kind == OBJECT_TYPE:
        return Object.from_json_dict(**d)
    if kind == MAP_TYPE:
        return Map.from_json_dict(**d)
    if kind == ANY_TYPE:
        return AnyType()
    if kind == SPARKML_VECTOR_TYPE:
        return SparkMLVector()
    return _to_datatype(kind, what)


def _duplicated(names: list[str]) -> list[str]:
    """The names that occur more than once, sorted."""
    return sorted({n for n in names if names.count(n) > 1})


def _parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SignatureError(f"{what} is not valid JSON: {exc}") from exc


class BaseType:
    """Common base of the nested types (Array, Object, Map, AnyType)."""

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _merge(self, other: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class Property(BaseType):
    """A named field of an :class:`Object`."""

    def __init__(self, name: str, dtype: Any, required: bool = True) -> None:
        if not isinstance(name, str):
            raise SignatureError(f"a property name must be a string, got {type(name).__name__}")
        self._name = name
        self._dtype = _to_datatype(dtype, f"type of property {name!r}")
        self._required = bool(required)

    @property
    def name(self) -> str:
        return self._name

    @property
    def dtype(self) -> Any:
        return self._dtype

    @property
    def required(self) -> bool:
        return self._required

    @required.setter
    def required(self, value: bool) -> None:
        self._required = value

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Property)
            and self.name == other.name
            and self.dtype == other.dtype
            and self.required == other.required
        )

    def __hash__(self) -> int:
        return hash(self.name)

    def __lt__(self, other: Property) -> bool:
        return self.name < other.name

    def __repr__(self) -> str:
        return f"{self.name}: {self.dtype!r} ({'required' if self.required else 'optional'})"

    def to_dict(self) -> dict[str, Any]:
        d = _type_to_dict(self.dtype)
        d["required"] = self.required
        return {self.name: d}

    @classmethod
    def from_json_dict(cls, **kwargs: Any) -> Property:
        """Parse ``{"name": {"type": ..., "required": ...}}``."""
        if len(kwargs) != 1:
            raise SignatureError(f"a property must have exactly one name, got {list(kwargs)}")
        name, spec = next(iter(kwargs.items()))
        if not isinstance(spec, dict) or "type" not in spec:
            raise SignatureError(f"property {name!r} must have a 'type'")
        spec = dict(spec)
        required = spec.pop("required", True)
        return cls(name=name, dtype=_type_from_dict(spec, f"property {name!r}"), required=required)

    def _merge(self, other: Any) -> Property:
        if isinstance(other, AnyType):
            return Property(self.name, self.dtype, required=False)
        if not isinstance(other, Property):
            raise SignatureError(f"cannot merge a property with {type(other).__name__}")
        if self.name != other.name:
            raise SignatureError("cannot merge properties with different names")
        required = self.required and other.required
        if isinstance(self.dtype, DataType):
            if self.dtype == other.dtype or isinstance(other.dtype, AnyType):
                return Property(self.name, self.dtype, required=required)
            raise SignatureError(
                f"property {self.name!r} has incompatible types {self.dtype!r} and {other.dtype!r}"
            )
        return Property(self.name, self.dtype._merge(other.dtype), required=required)


class Object(BaseType):
    """A JSON object with named, typed properties (kept sorted by name, as MLflow does)."""

    def __init__(self, properties: list[Property]) -> None:
        self._check_properties(properties)
        self._properties = sorted(properties)

    @staticmethod
    def _check_properties(properties: Any) -> None:
        if not isinstance(properties, list):
            raise SignatureError(f"properties must be a list, got {type(properties).__name__}")
        if not properties:
            raise SignatureError("an Object needs at least one property")
        if any(not isinstance(p, Property) for p in properties):
            raise SignatureError("Object properties must be Property instances")
        duplicates = _duplicated([p.name for p in properties])
        if duplicates:
            raise SignatureError(f"duplicated property names: {', '.join(duplicates)}")

    @property
    def properties(self) -> list[Property]:
        return self._properties

    @properties.setter
    def properties(self, value: list[Property]) -> None:
        self._check_properties(value)
        self._properties = sorted(value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Object) and self.properties == other.properties

    def __hash__(self) -> int:
        return hash(tuple(p.name for p in self.properties))

    def __repr__(self) -> str:
        return "{" + ", ".join(map(repr, self.properties)) + "}"

    def to_dict(self) -> dict[str, Any]:
        props: dict[str, Any] = {}
        for prop in self.properties:
            props.update(prop.to_dict())
        return {"type": OBJECT_TYPE, "properties": props}

    @classmethod
    def from_json_dict(cls, **kwargs: Any) -> Object:
        if kwargs.get("type") != OBJECT_TYPE or "properties" not in kwargs:
            raise SignatureError("an object type needs 'type': 'object' and 'properties'")
        props = kwargs["properties"]
        if not isinstance(props, dict) or any(not isinstance(p, dict) for p in props.values()):
            raise SignatureError("'properties' must map each property name to its type")
        return cls([Property.from_json_dict(**{name: spec}) for name, spec in props.items()])

    def _merge(self, other: Any) -> Object:
        if isinstance(other, AnyType):
            return Object([Property(p.name, p.dtype, required=False) for p in self.properties])
        if not isinstance(other, Object):
            raise SignatureError(f"cannot merge an object with {type(other).__name__}")
        if self == other:
            return deepcopy(self)
        mine = {p.name: p for p in self.properties}
        theirs = {p.name: p for p in other.properties}
        merged = [Property(k, mine[k].dtype, required=False) for k in mine.keys() - theirs.keys()]
        merged += [mine[k]._merge(theirs[k]) for k in mine.keys() & theirs.keys()]
        merged += [
            Property(k, theirs[k].dtype, required=False) for k in theirs.keys() - mine.keys()
        ]
        return Object(merged)


class _OneTypeContainer(BaseType):
    """What :class:`Array` and :class:`Map` share: a JSON container whose elements all have
    one type. Each subclass names the element type (``dtype``, ``value_type``) and its JSON."""

    _KIND: str  # the JSON type name ("array")
    _ELEMENTS: str  # the JSON key of the element type ("items")
    _A_KIND: str  # how messages name a value of this kind ("an array")

    def __init__(self, element_type: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def _element_type(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        # Of exactly the same kind: a SparkMLVector is an Array but never equals one.
        return (
            isinstance(other, _OneTypeContainer)
            and type(other) is type(self)
            and self._element_type == other._element_type
        )

    def __hash__(self) -> int:
        return hash((self._KIND, repr(self._element_type)))

    def to_dict(self) -> dict[str, Any]:
        return {"type": self._KIND, self._ELEMENTS: _type_to_dict(self._element_type)}

    @classmethod
    def from_json_dict(cls: type[_Container], **kwargs: Any) -> _Container:
        kind, elements = cls._KIND, cls._ELEMENTS
        if kwargs.get("type") != kind or elements not in kwargs:
            raise SignatureError(f"{cls._A_KIND} type needs 'type': '{kind}' and '{elements}'")
        return cls(_type_from_dict(kwargs[elements], f"{kind} {elements}"))

    def _merge(self: _Container, other: Any) -> _Container:
        if isinstance(other, AnyType) or self == other:
            return deepcopy(self)
        if not isinstance(other, type(self)):
            raise SignatureError(f"cannot merge {self._A_KIND} with {type(other).__name__}")
        if isinstance(self._element_type, DataType):
            if isinstance(other._element_type, AnyType):
                return type(self)(self._element_type)
            raise SignatureError(f"incompatible {self._KIND} types {self!r} and {other!r}")
        return type(self)(self._element_type._merge(other._element_type))


_Container = TypeVar("_Container", bound=_OneTypeContainer)


class Array(_OneTypeContainer):
    """A JSON array whose items all have one type."""

    _KIND, _ELEMENTS, _A_KIND = ARRAY_TYPE, "items", "an array"

    def __init__(self, dtype: Any) -> None:
        self._dtype = _to_datatype(dtype, "array item type")

    @property
    def dtype(self) -> Any:
        return self._dtype

    _element_type = dtype

    def __repr__(self) -> str:
        return f"Array({self.dtype!r})"


class SparkMLVector(Array):
    """Spark ML vector (read and written back for compatibility; envkit never infers it)."""

    def __init__(self) -> None:
        super().__init__(DataType.double)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SparkMLVector)

    def __hash__(self) -> int:
        return hash(SPARKML_VECTOR_TYPE)

    def __repr__(self) -> str:
        return "SparkML vector"

    def to_dict(self) -> dict[str, Any]:
        return {"type": SPARKML_VECTOR_TYPE}

    def _merge(self, other: Any) -> SparkMLVector:
        if isinstance(other, SparkMLVector):
            return SparkMLVector()
        raise SignatureError("a SparkML vector cannot be merged with another type")


class Map(_OneTypeContainer):
    """A JSON object with string keys and values of one type."""

    _KIND, _ELEMENTS, _A_KIND = MAP_TYPE, "values", "a map"

    def __init__(self, value_type: Any) -> None:
        self._value_type = _to_datatype(value_type, "map value type")

    @property
    def value_type(self) -> Any:
        return self._value_type

    _element_type = value_type

    def __repr__(self) -> str:
        return f"Map(str -> {self.value_type!r})"


class AnyType(BaseType):
    """Any JSON value, including None; not validated."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AnyType)

    def __hash__(self) -> int:
        return hash(ANY_TYPE)

    def __repr__(self) -> str:
        return "Any"

    def to_dict(self) -> dict[str, Any]:
        return {"type": ANY_TYPE}

    def _merge(self, other: Any) -> Any:
        if isinstance(other, (AnyType, DataType)):
            return deepcopy(other)
        if not isinstance(other, BaseType):
            raise SignatureError(f"cannot merge AnyType with {type(other).__name__}")
        return other._merge(self)


ColumnType = Union[DataType, Array, Object, Map, AnyType]


class ColSpec:
    """A column: its type, optional name, and whether it is required."""

    def __init__(self, type: Any, name: str | None = None, required: bool = True) -> None:
        self._type = _to_datatype(type, "column type")
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
        d = _type_to_dict(self.type)
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
        dtype = _type_from_dict(spec, f"column {name!r}" if name is not None else "column")
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
        duplicates = _duplicated([x.name for x in inputs if x.name is not None])
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
        from envkit.models.enforcement import enforce_param_value

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
        result.update(_type_to_dict(self.dtype))
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
        duplicates = _duplicated([p.name for p in params])
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

    from envkit.models.type_hints import is_union

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
