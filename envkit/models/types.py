"""The data types of a signature: :class:`DataType` and the nested types.

:class:`Array`, :class:`Object` (with :class:`Property` fields), :class:`Map` and
:class:`AnyType` are the types a column, a property or a param can have. They are plain data:
JSON to and from MLflow's format, equality and merging. Checking values against them lives in
:mod:`envkit.models.coerce`; the schemas built from them (columns, tensors, params) in
:mod:`envkit.models.schema`, which re-exports every name here.
"""

from __future__ import annotations

import builtins
import datetime as dt
from copy import deepcopy
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar, Union, get_origin

from envkit.errors import SignatureError

if TYPE_CHECKING:
    import numpy as np

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


def to_datatype(value: Any, what: str) -> Any:
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


def type_to_dict(t: Any) -> dict[str, Any]:
    return {"type": t.name} if isinstance(t, DataType) else t.to_dict()


def type_from_dict(d: Any, what: str) -> Any:
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
    return to_datatype(kind, what)


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
        self._dtype = to_datatype(dtype, f"type of property {name!r}")
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
        d = type_to_dict(self.dtype)
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
        return cls(name=name, dtype=type_from_dict(spec, f"property {name!r}"), required=required)

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
        duplicates = duplicated_names([p.name for p in properties])
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
        return {"type": self._KIND, self._ELEMENTS: type_to_dict(self._element_type)}

    @classmethod
    def from_json_dict(cls: type[_Container], **kwargs: Any) -> _Container:
        kind, elements = cls._KIND, cls._ELEMENTS
        if kwargs.get("type") != kind or elements not in kwargs:
            raise SignatureError(f"{cls._A_KIND} type needs 'type': '{kind}' and '{elements}'")
        return cls(type_from_dict(kwargs[elements], f"{kind} {elements}"))

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
        self._dtype = to_datatype(dtype, "array item type")

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
        self._value_type = to_datatype(value_type, "map value type")

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


def duplicated_names(names: list[str]) -> list[str]:
    """The names that occur more than once, sorted."""
    return sorted({n for n in names if names.count(n) > 1})


def is_union(hint: Any) -> bool:
    """Whether ``hint`` is ``Union[...]``/``Optional[...]`` or ``X | Y``."""
    origin = get_origin(hint)
    if origin is Union:
        return True
    union_type = getattr(__import__("types"), "UnionType", None)
    return union_type is not None and origin is union_type
