"""Values checked against a signature type, and converted where that loses nothing.

The rules shared by columns, nested values and params: :func:`enforce_series` for a column of a
:class:`~envkit.models.types.DataType`, :func:`enforce_type` for one value of any type, and
:func:`enforce_param_value` for a param (and a param's default, which :class:`ParamSpec` checks
when it is built). A failed check raises :class:`Violation`; the caller adds where it happened.
"""

from __future__ import annotations

from copy import deepcopy
from typing import TYPE_CHECKING, Any

from envkit.errors import SchemaEnforcementError, SignatureError
from envkit.models.types import AnyType, Array, DataType, Map, Object

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# Largest integer magnitude a float type holds exactly (2**mantissa bits).
_EXACT_INT_LIMIT = {4: 2**24, 8: 2**53}


class Violation(Exception):
    """Internal: one violation, before the caller adds where it happened."""


def enforce_param_value(
    name: str, value: Any, dtype: Any, shape: tuple[int, ...] | None, *, default: bool = False
) -> Any:
    """``value`` of param ``name`` converted to ``dtype``/``shape`` (Python types)."""
    import numpy as np

    expected = type_name(dtype) + (" list" if shape == (-1,) else "")
    try:
        if shape is None:
            if isinstance(dtype, Object):
                enforce_object(deepcopy(value), dtype, required=True)
                return value
            return _enforce_param_datatype(value, dtype)
        if shape == (-1,):
            if (
                not isinstance(value, (list, np.ndarray))
                or np.asarray(value, dtype=object).ndim != 1
            ):
                raise Violation(f"got {describe_value(value)}, not a 1-D list")
            return [_enforce_param_datatype(v, dtype) for v in value]
        raise Violation(f"unsupported shape {shape}; use None (a scalar) or (-1,) (a list)")
    except Violation as exc:
        what = "default of param" if default else "param"
        message = f"{what} {name!r}: expected {expected}, {exc}"
        if default:
            raise SignatureError(message) from None
        raise SchemaEnforcementError(message) from None


_PARAM_CONVERSIONS = {
    DataType.long: (DataType.integer,),
    DataType.float: (DataType.integer, DataType.long),
    DataType.double: (DataType.integer, DataType.long, DataType.float),
}


def _enforce_param_datatype(value: Any, dtype: DataType) -> Any:
    import numpy as np

    if value is None:
        return None
    if dtype is DataType.datetime:
        try:
            converted = np.datetime64(value).item()
        except (ValueError, TypeError):
            raise Violation(f"got {describe_value(value)}, not a date or datetime") from None
        if isinstance(converted, int) or converted is None:
            raise Violation(f"got {describe_value(value)}, not a date or datetime")
        return converted
    if not np.isscalar(value):
        raise Violation(f"got {describe_value(value)}, not a scalar")
    if DataType.check_type(dtype, value):
        return dtype.to_python()(value)
    if any(DataType.check_type(t, value) for t in _PARAM_CONVERSIONS.get(dtype, ())):
        return dtype.to_python()(value)
    raise Violation(f"got {describe_value(value)}")


def enforce_series(values: pd.Series, t: DataType) -> pd.Series:
    """Column ``values`` as type ``t``; raises Violation for an unsafe conversion."""
    import numpy as np
    import pandas as pd

    if (
        values.dtype.kind == "O"
        and isinstance(values.dtype, np.dtype)
        and t
        not in (
            DataType.binary,
            DataType.string,
        )
    ):
        values = values.infer_objects()
    dtype = values.dtype
    is_str_dtype = isinstance(dtype, pd.StringDtype)
    is_obj = isinstance(dtype, np.dtype) and dtype.kind == "O"

    if t is DataType.string or t is DataType.binary or t is DataType.datetime:
        return _enforce_text_or_datetime(values, t, is_text=is_obj or is_str_dtype)
    if t is DataType.boolean and is_obj:
        return _enforce_object_booleans(values)

    target = t.to_numpy()
    if dtype == target:
        return values
    if is_str_dtype or is_obj:
        raise Violation(f"got {values_name(values)} values")
    if not _is_safe_cast(values, target):
        hint = _unsafe_cast_hint(values, target)
        raise Violation(f"got {values_name(values)} values that cannot be safely converted{hint}")
    if not isinstance(dtype, np.dtype) and values.hasnans:  # an extension dtype with missing values
        return values.astype(NULLABLE[t])
    return values.astype(target)


def _enforce_text_or_datetime(values: pd.Series, t: DataType, *, is_text: bool) -> pd.Series:
    """Column ``values`` as a string, binary or datetime column."""
    if t is DataType.datetime:
        return to_datetime(values)
    if is_text or (t is DataType.binary and values.dtype.kind == "S"):
        return values
    raise Violation(f"got {values_name(values)} values")


def _enforce_object_booleans(values: pd.Series) -> pd.Series:
    """An object column as booleans: every value a bool or missing."""
    import numpy as np

    bad = [v for v in values if not (is_missing(v) or isinstance(v, (bool, np.bool_)))]
    if bad:
        raise Violation(f"got {describe_value(bad[0])}")
    return values


def _is_safe_cast(values: pd.Series, target: np.dtype[Any]) -> bool:
    """Whether casting ``values`` to the numpy dtype ``target`` loses nothing."""
    kind, size = values.dtype.kind, values.dtype.itemsize
    if kind == target.kind:
        return bool(size <= target.itemsize)
    if kind == "u" and target.kind == "i":
        return bool(size < target.itemsize)
    if kind in ("i", "u") and target.kind == "f":
        limit = _EXACT_INT_LIMIT[target.itemsize]
        safe = (size <= 2 and target.itemsize == 4) or (size <= 4 and target.itemsize == 8)
        return safe or bool(values.dropna().abs().le(limit).all())
    return False


def _unsafe_cast_hint(values: pd.Series, target: np.dtype[Any]) -> str:
    """Advice for floats that hold whole numbers and missing values (integers that met a NaN)."""
    if values.dtype.kind == "f" and target.kind in ("i", "u") and values.hasnans:
        whole = values.dropna()
        if bool((whole == whole.round()).all()):
            return (
                "; integer columns with missing values arrive as floats: declare the "
                "column as double in the signature, or infer it from data with missing values"
            )
    return ""


NULLABLE = {
    DataType.boolean: "boolean",
    DataType.integer: "Int32",
    DataType.long: "Int64",
    DataType.float: "Float32",
    DataType.double: "Float64",
}


def to_datetime(values: pd.Series) -> pd.Series:
    import pandas as pd

    dtype = values.dtype
    if getattr(dtype, "tz", None) is not None:
        raise Violation("got timezone-aware datetimes; pass timezone-naive values")
    if dtype.kind == "M":
        return values.astype("datetime64[ns]")
    if dtype.kind == "O" or isinstance(dtype, pd.StringDtype):
        try:
            return values.astype("datetime64[ns]")
        except (ValueError, TypeError, OverflowError) as exc:
            bad = next((v for v in values if not _parses_as_datetime(v)), None)
            what = describe_value(bad) if bad is not None else f"values that fail: {exc}"
            raise Violation(f"got {what}, which is not a datetime") from None
    raise Violation(f"got {values_name(values)} values")


def _parses_as_datetime(value: Any) -> bool:
    import pandas as pd

    try:
        pd.Series([value], dtype=object).astype("datetime64[ns]")
    except (ValueError, TypeError, OverflowError):
        return False
    return True


def _enforce_scalar(value: Any, t: DataType, required: bool) -> Any:
    import datetime as dt

    import numpy as np
    import pandas as pd

    if not required and is_missing(value):
        return None
    if not np.isscalar(value) and not isinstance(value, (dt.date, pd.Timestamp)):
        raise Violation(f"got {describe_value(value)}, not a scalar")
    try:
        return enforce_series(pd.Series([value]), t).iloc[0]
    except Violation:
        raise Violation(f"got {describe_value(value)}") from None


def enforce_array(value: Any, arr: Array, required: bool) -> Any:
    import numpy as np
    import pandas as pd

    if (not required or isinstance(arr.dtype, AnyType)) and (
        value is None or (isinstance(value, (list, np.ndarray)) and len(value) == 0)
    ):
        return value
    if not isinstance(value, (list, np.ndarray)):
        raise Violation(f"got {describe_value(value)}, not a list")
    if isinstance(arr.dtype, DataType):
        if len(value) == 0:
            return value
        try:
            enforced = enforce_series(pd.Series(list(value)), arr.dtype)
        except Violation as exc:
            raise Violation(f"in list {short(value)}: {exc}") from None
        converted = enforced.to_numpy(dtype=arr.dtype.to_numpy())
        return converted.tolist() if isinstance(value, list) else converted
    items = [enforce_type(v, arr.dtype, required) for v in value]
    return items if isinstance(value, list) else np.array(items)


def enforce_object(value: Any, obj: Object, required: bool) -> Any:
    if not required and (value is None or value == {}):
        return value
    if not isinstance(value, dict):
        raise Violation(f"got {describe_value(value)}, not a dict")
    props = {p.name: p for p in obj.properties}
    missing = sorted(k for k, p in props.items() if p.required and k not in value)
    if missing:
        raise Violation(f"got a dict without required key(s) {missing}")
    extra = sorted(str(k) for k in value if k not in props)
    if extra:
        raise Violation(f"got a dict with unknown key(s) {extra}")
    for key, item in list(value.items()):
        prop = props[key]
        try:
            value[key] = enforce_type(item, prop.dtype, prop.required)
        except Violation as exc:
            raise Violation(f"key {key!r} expects {type_name(prop.dtype)}, {exc}") from None
    return value


def enforce_map(value: Any, m: Map, required: bool) -> Any:
    if (not required or isinstance(m.value_type, AnyType)) and (value is None or value == {}):
        return value
    if not isinstance(value, dict):
        raise Violation(f"got {describe_value(value)}, not a dict")
    if not all(isinstance(k, str) for k in value):
        raise Violation("got a dict with non-string keys")
    return {k: enforce_type(v, m.value_type, required) for k, v in value.items()}


def enforce_type(value: Any, t: Any, required: bool = True) -> Any:
    if isinstance(t, DataType):
        return _enforce_scalar(value, t, required)
    if isinstance(t, Array):
        return enforce_array(value, t, required)
    if isinstance(t, Object):
        return enforce_object(value, t, required)
    if isinstance(t, Map):
        return enforce_map(value, t, required)
    if isinstance(t, AnyType):
        return value
    raise Violation(f"unsupported schema type {t!r}")


def type_name(t: Any) -> str:
    if isinstance(t, DataType):
        return t.name
    if isinstance(t, Array):
        return f"array of {type_name(t.dtype)}"
    if isinstance(t, Map):
        return f"map of str to {type_name(t.value_type)}"
    if isinstance(t, Object):
        return (
            "object {"
            + ", ".join(
                f"{p.name}: {type_name(p.dtype)}{'' if p.required else '?'}" for p in t.properties
            )
            + "}"
        )
    if isinstance(t, AnyType):
        return "any"
    return repr(t)


def _dtype_name(dtype: Any) -> str:
    import pandas as pd

    if isinstance(dtype, pd.StringDtype) or str(dtype) == "str":
        return "str"
    return str(dtype)


def values_name(values: pd.Series) -> str:
    """The dtype of a column, or for an object column the types of its values (``str``)."""
    dtype = values.dtype
    if getattr(dtype, "kind", None) != "O" or _dtype_name(dtype) == "str":
        return _dtype_name(dtype)
    kinds = sorted({type(v).__name__ for v in values if not is_missing(v)})
    if not kinds:
        return "missing"
    return kinds[0] if len(kinds) == 1 else "mixed (" + ", ".join(kinds) + ")"


def short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_value(value: Any) -> str:
    return f"{type(value).__name__} {short(value)}"


def is_missing(value: Any) -> bool:
    import math

    import pandas as pd

    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)
