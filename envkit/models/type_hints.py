"""Signatures from ``predict`` type hints, and data validation against them (as MLflow 3).

A ``PythonModel.predict(self, context, model_input: list[str], params=None)`` gets the input
schema ``[{"type": "string", "required": true}]`` without an input example. Supported element
types: ``int`` (long), ``float`` (double), ``str``, ``bool``, ``bytes``, ``datetime``,
``list[...]``, ``dict[str, ...]`` (map), pydantic models (object), ``Optional[...]``, unions
and ``Any`` (any). ``pandas.DataFrame``, ``numpy.ndarray`` and the like say nothing about the
columns, so they give no signature; neither does :data:`TypeFromExample`, whose signature
comes from the input example.
"""

from __future__ import annotations

import base64
import datetime as dt
import inspect
import logging
import re
import typing
from typing import Any, Callable, NamedTuple, TypeVar, Union, get_args, get_origin

from envkit.errors import SchemaEnforcementError, SignatureError
from envkit.models.schema import AnyType, Array, ColSpec, DataType, Map, Object, Property, Schema
from envkit.models.types import is_union

__all__ = [
    "TypeFromExample",
    "TypeHints",
    "extract_type_hints",
    "is_union",
    "predict_type_hints",
    "schema_from_type_hint",
    "validate_data_against_type_hint",
]

_logger = logging.getLogger(__name__)

TypeFromExample = TypeVar("TypeFromExample")
"""Type hint meaning "whatever the input example was": the data is handed back in that form."""

_PRIMITIVES: dict[Any, DataType] = {
    int: DataType.long,
    str: DataType.string,
    bool: DataType.boolean,
    float: DataType.double,
    bytes: DataType.binary,
    dt.datetime: DataType.datetime,
}

_SUPPORTED = (
    "type hints must be list[...] of int, float, str, bool, bytes, datetime, pydantic models, "
    "lists or dict[str, ...] of those, or typing.Any"
)


class TypeHints(NamedTuple):
    """The input and return type hints of a ``predict`` function (None when absent)."""

    input: Any = None
    output: Any = None


class _UnsupportedHint(Exception):
    """A hint envkit cannot turn into a schema (a warning, not an error, at save time)."""


def is_type_from_example(hint: Any) -> bool:
    """Whether ``hint`` is ``TypeFromExample`` (envkit's or MLflow's)."""
    return hint is TypeFromExample or (
        isinstance(hint, TypeVar) and hint.__name__ == "TypeFromExample"
    )


def _hint_repr(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def _is_pydantic_model(hint: Any) -> bool:
    if not isinstance(hint, type):
        return False
    if not any(c.__module__.startswith("pydantic") for c in hint.__mro__[1:]):
        return False
    import pydantic

    try:
        return issubclass(hint, pydantic.BaseModel)
    except TypeError:
        return False


def _no_signature_types() -> tuple[type, ...]:
    """Types that are valid hints but say nothing about the columns (no signature)."""
    found: list[type] = []
    import sys

    pd = sys.modules.get("pandas")
    if pd is not None:
        found += [pd.DataFrame, pd.Series]
    np = sys.modules.get("numpy")
    if np is not None:
        found.append(np.ndarray)
    sparse = sys.modules.get("scipy.sparse")
    if sparse is not None:
        found += [sparse.csr_matrix, sparse.csc_matrix]
    return tuple(found)


def _says_nothing(hint: Any) -> bool:
    if hint is Any or hint is object:
        return True
    if isinstance(hint, type) and hint.__module__.split(".")[0] in ("pandas", "numpy", "scipy"):
        return True
    return hint in _no_signature_types()


# --- hints -> schema ---------------------------------------------------------------------------


def _colspec_type(hint: Any) -> tuple[Any, bool]:
    """(schema type, required) for one type hint."""
    if hint is Any:
        return AnyType(), True
    if hint in _PRIMITIVES:
        return _PRIMITIVES[hint], True
    if _is_pydantic_model(hint):
        return _pydantic_object(hint), True
    origin = get_origin(hint)
    args = get_args(hint)
    if origin is list:
        return Array(_colspec_type(_list_element(hint))[0]), True
    if origin is dict:
        if len(args) != 2:
            raise SignatureError(f"type hint {_hint_repr(hint)} needs key and value types")
        if args[0] is not str:
            raise SignatureError(
                f"dictionary keys must be str, got {_hint_repr(args[0])} in {_hint_repr(hint)}"
            )
        return Map(_colspec_type(args[1])[0]), True
    if is_union(hint):
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) < len(args):
            if len(non_none) == 1:
                return _colspec_type(non_none[0])[0], False
            return AnyType(), False
        return AnyType(), True
    if hint in (list, dict, typing.Optional, Union) or hint in (typing.List, typing.Dict):  # noqa: UP006
        raise SignatureError(
            f"type hint {_hint_repr(hint)} needs an element type (e.g. list[str]); {_SUPPORTED}"
        )
    raise _UnsupportedHint(f"unsupported type hint {_hint_repr(hint)}; {_SUPPORTED}")


def _list_element(hint: Any) -> Any:
    args = get_args(hint)
    if not args:
        raise SignatureError(
            f"type hint {_hint_repr(hint)} has no element type; write e.g. list[str]"
        )
    if len(args) > 1:
        raise SignatureError(f"type hint {_hint_repr(hint)} must have exactly one element type")
    if type(None) in args:
        raise SignatureError("the input type hint cannot be Optional; use a pydantic model")
    return args[0]


def _pydantic_object(model: Any) -> Object:
    props = []
    for name, info in model.model_fields.items():
        if info.annotation is None:
            raise SignatureError(f"field {name!r} of {model.__name__} has no type annotation")
        dtype, required = _colspec_type(info.annotation)
        if not required and info.is_required():
            raise SignatureError(
                f"optional field {name!r} of pydantic model {model.__name__} has no default; "
                "set its default to None"
            )
        props.append(Property(name, dtype, required=required))
    return Object(props)


def _is_list_hint(hint: Any) -> bool:
    if hint is list or get_origin(hint) is list:
        return True
    if is_union(hint):
        args = [a for a in get_args(hint) if a is not type(None)]
        return len(args) == 1 and _is_list_hint(args[0])
    return False


def schema_from_type_hint(hint: Any, *, as_list: bool = True) -> Schema:
    """The one-column :class:`Schema` of ``list[X]`` (``as_list``) or of ``X``."""
    if as_list:
        if not _is_list_hint(hint):
            raise _UnsupportedHint(
                f"the input type hint must be list[...] (one element per input row), got "
                f"{_hint_repr(hint)}; write list[{_hint_repr(hint)}]"
            )
        hint = _list_element(hint)
    dtype, required = _colspec_type(hint)
    if not required:
        raise SignatureError("the input type hint cannot be Optional; use a pydantic model")
    return Schema([ColSpec(dtype)])


# --- reading hints from predict ----------------------------------------------------------------

_LIST_STR = re.compile(r"^(t\w*\.)?list\[str\]$", re.IGNORECASE)
_LIST_DICT_STR = re.compile(r"^(t\w*\.)?list\[(t\w*\.)?dict\[str,str\]\]$", re.IGNORECASE)


def _hint_from_string(text: str) -> Any:
    compact = text.replace(" ", "")
    if _LIST_STR.match(compact):
        return list[str]
    if _LIST_DICT_STR.match(compact):
        return list[dict[str, str]]
    return None


def context_in_signature(func: Callable[..., Any]) -> bool:
    """Whether ``func`` is ``predict(self, context, model_input, ...)`` (context by any name)."""
    params = inspect.signature(func).parameters
    return "context" in params or len([p for p in params if p not in ("self", "params")]) == 2


def extract_type_hints(func: Callable[..., Any], input_arg_index: int) -> TypeHints:
    """The type hints of ``func``'s input argument (at ``input_arg_index``, ignoring self)."""
    annotations = getattr(func, "__annotations__", None)
    if annotations is None and callable(func):
        annotations = getattr(func.__call__, "__annotations__", None)  # type: ignore[operator]
        func = func.__call__  # type: ignore[operator]
    if not annotations:
        return TypeHints()
    names = [n for n in inspect.signature(func).parameters if n != "self"]
    if input_arg_index >= len(names):
        return TypeHints()
    arg = names[input_arg_index]
    try:
        hints = typing.get_type_hints(func)
    except (TypeError, NameError):
        hints = {}
        for key in (arg, "return"):
            text = annotations.get(key)
            if isinstance(text, str):
                parsed = _hint_from_string(text)
                if parsed is not None:
                    hints[key] = parsed
    except Exception as exc:  # a broken annotation must not break saving
        _logger.warning(
            "cannot read the type hints of %s: %r", getattr(func, "__name__", func), exc
        )
        return TypeHints()
    return TypeHints(hints.get(arg), hints.get("return"))


def predict_type_hints(python_model: Any) -> TypeHints:
    """The type hints of a PythonModel's ``predict`` (or of a plain predict function)."""
    wrapped = getattr(python_model, "_envkit_wrapped_function", None)
    if wrapped is not None:  # a plain function passed as python_model (or to set_model)
        return extract_type_hints(wrapped, 0)
    predict = getattr(type(python_model), "predict", None)
    if predict is not None and not inspect.isfunction(python_model):
        func = inspect.unwrap(predict)
        index = 1 if context_in_signature(func) else 0
        return extract_type_hints(func, index)
    if callable(python_model):
        return extract_type_hints(python_model, 0)
    return TypeHints()


def input_type_hint(python_model: Any) -> Any:
    """The input type hint of ``python_model.predict`` when it can drive validation, else None."""
    hint = predict_type_hints(python_model).input
    if hint is None or _says_nothing(hint) or is_type_from_example(hint):
        return None
    return hint


# --- data validation ---------------------------------------------------------------------------


def validate_data_against_type_hint(data: Any, hint: Any) -> Any:
    """``data`` checked against ``hint`` (DataFrames first become lists); returns the data.

    A dict given for a pydantic model is returned as a model instance. Violations raise
    :class:`~envkit.errors.SchemaEnforcementError`.
    """
    data = _convert_dataframe(data, hint)
    try:
        return _validate(data, hint)
    except _Mismatch as exc:
        raise SchemaEnforcementError(
            f"input does not match the predict type hint {_hint_repr(hint)}: {exc}"
        ) from None


class _Mismatch(Exception):
    pass


def _convert_dataframe(data: Any, hint: Any) -> Any:
    import sys

    pd = sys.modules.get("pandas")
    if pd is None or not isinstance(data, pd.DataFrame) or hint is pd.DataFrame:
        return data
    if not _is_list_hint(hint):
        raise SchemaEnforcementError(
            f"a DataFrame can only be passed for a list[...] type hint, not {_hint_repr(hint)}"
        )
    element = get_args(hint)[0] if get_args(hint) else Any
    if get_origin(element) is dict or element is dict or _is_pydantic_model(element):
        rows = data.iloc[:, 0].tolist() if list(data.columns) == [0] else data.to_dict("records")
    else:
        rows = data.iloc[:, 0].tolist()
    return _sanitize(rows)


def _sanitize(value: Any) -> Any:
    import math
    import sys

    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list):
        return [_sanitize(v) for v in value]
    if isinstance(value, dict):
        return {k: _sanitize(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _validate(data: Any, hint: Any) -> Any:
    if _is_pydantic_model(hint):
        return _validate_pydantic(data, hint)
    if hint is Any:
        return data
    if hint in _PRIMITIVES:
        if isinstance(data, hint):
            return data
        raise _Mismatch(f"expected {hint.__name__}, got {type(data).__name__} {data!r}")
    validate_container = _CONTAINER_VALIDATORS.get(get_origin(hint))
    if validate_container is not None:
        return validate_container(data, get_args(hint))
    if is_union(hint):
        return _validate_optional(data, get_args(hint))
    raise _Mismatch(f"unsupported type hint {_hint_repr(hint)}")


def _validate_pydantic(data: Any, hint: Any) -> Any:
    import pydantic

    if isinstance(data, pydantic.BaseModel):
        values = data.model_dump()
    elif isinstance(data, dict):
        values = data
    else:
        raise _Mismatch(f"expected a dict or {hint.__name__}, got {type(data).__name__}")
    try:
        hint.model_validate(values, strict=True)
    except pydantic.ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or hint.__name__}: {e['msg']}" for e in exc.errors()
        )
        raise _Mismatch(f"{hint.__name__} rejected {values!r}: {errors}") from None
    return hint(**values) if isinstance(data, dict) else data


def _validate_list(data: Any, args: tuple[Any, ...]) -> list[Any]:
    if not isinstance(data, list):
        raise _Mismatch(f"expected a list, got {type(data).__name__}")
    out = []
    for i, item in enumerate(data):
        try:
            out.append(_validate(item, args[0]))
        except _Mismatch as exc:
            raise _Mismatch(f"item {i}: {exc}") from None
    return out


def _validate_dict(data: Any, args: tuple[Any, ...]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _Mismatch(f"expected a dict, got {type(data).__name__}")
    result = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise _Mismatch(f"dict keys must be str, got {type(key).__name__} {key!r}")
        try:
            result[key] = _validate(value, args[1])
        except _Mismatch as exc:
            raise _Mismatch(f"key {key!r}: {exc}") from None
    return result


def _validate_optional(data: Any, args: tuple[Any, ...]) -> Any:
    """A union: ``Optional[X]`` checks ``X``; wider unions pass as they are."""
    if data is None and type(None) in args:
        return None
    non_none = [a for a in args if a is not type(None)]
    if len(non_none) == 1:
        return _validate(data, non_none[0])
    return data


# get_origin(hint) -> the validator of that container, given get_args(hint).
_CONTAINER_VALIDATORS: dict[Any, Callable[[Any, tuple[Any, ...]], Any]] = {
    list: _validate_list,
    dict: _validate_dict,
}


def parse_serving_value(data: Any, hint: Any) -> Any:
    """JSON strings for ``bytes`` (base64) and ``datetime`` (ISO) hints, as the server sends."""
    if hint is bytes and isinstance(data, str):
        return base64.decodebytes(data.encode("utf-8"))
    if hint is dt.datetime and isinstance(data, str):
        return dt.datetime.fromisoformat(data)
    return data
