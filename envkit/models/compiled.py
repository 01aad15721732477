"""Signature enforcement prepared once per signature: scoring payloads of numeric columns read
straight into the enforced model input.

:func:`compile_input` looks at an input schema once (when a server loads its model) and, for
the common tabular case (every input a named, required ``double``, ``float``, ``long``,
``integer`` or ``boolean`` column), returns a :class:`CompiledInput`. Its
:meth:`~CompiledInput.read` takes a decoded JSON payload (``dataframe_split``,
``dataframe_records`` or a columnar ``inputs`` object, without ``params``) and builds the
DataFrame that :func:`~envkit.models.serving_input.parse_serving_input` followed by schema
enforcement would build, from one numpy conversion instead of per-column pandas casts; for a
schema whose columns share one dtype, :meth:`~CompiledInput.read_array` gives that DataFrame's
values as one 2-D array without building the DataFrame (for a model that reads columns by
position, :meth:`envkit.pyfunc.PyFuncModel.positional_predictor`).

It answers only where the result is the same by construction; for anything else (missing
values, strings, extra, missing or duplicated columns, an index, nested data, params...) it
returns None and the general path decides, with its own conversions and error messages. The
general path stays the definition: tests compare the two on the payloads the fast path takes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from envkit.models.schema import ColSpec, DataType, Schema

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["CompiledInput", "compile_input"]

# The numpy kinds (of the array numpy infers from the JSON rows) each column type takes as is,
# converting exactly as the general path's per-column ``astype`` of Python values does.
_TAKES = {
    DataType.double: "if",  # ints convert to float64 with the same rounding either way
    DataType.float: "f",  # (int -> float32 could round twice on one path and once on the other)
    DataType.long: "i",
    DataType.integer: "i",  # and every value in int32's range
}
_COLUMNAR = (DataType.boolean, *_TAKES)


@dataclass(frozen=True)
class CompiledInput:
    """A column schema prepared for fast reads (see the module docstring)."""

    names: tuple[str, ...]
    types: tuple[DataType, ...]
    dtypes: tuple[np.dtype[Any], ...]
    rows_ok: bool  # every type takes the array numpy infers from JSON rows

    @property
    def uniform(self) -> bool:
        """Whether every column has one numpy dtype (then :meth:`read_array` can answer)."""
        return len(set(self.dtypes)) == 1

    def read(self, decoded: dict[str, Any]) -> pd.DataFrame | None:
        """The enforced DataFrame for ``decoded``, or None: the general path decides."""
        data = self._read(decoded)
        if data is None:
            return None
        import pandas as pd

        if isinstance(data, dict):
            return pd.DataFrame(data)
        return pd.DataFrame(data, columns=self._columns_index.copy())

    def read_array(self, decoded: dict[str, Any]) -> np.ndarray[Any, Any] | None:
        """The values of :meth:`read`'s DataFrame as one 2-D array, columns in the schema's
        order (no DataFrame built), or None: for a schema whose columns share one dtype."""
        data = self._read(decoded)
        if data is None or not self.uniform:
            return None
        if isinstance(data, dict):
            import numpy as np

            return np.column_stack(list(data.values()))
        return data

    @functools.cached_property
    def _columns_index(self) -> pd.Index[Any]:
        """The DataFrame's columns, built once (copied per frame: a model may rename them)."""
        import pandas as pd

        return pd.Index(list(self.names))

    def _read(self, decoded: dict[str, Any]) -> np.ndarray[Any, Any] | dict[str, Any] | None:
        """The enforced values for ``decoded``: one 2-D array (one dtype) or one array per
        column; None: the general path decides."""
        if len(decoded) != 1:
            return None  # params, or a malformed payload
        key, value = next(iter(decoded.items()))
        if key == "inputs":
            return self._columns(value)
        if not self.rows_ok:
            return None
        if key == "dataframe_split":
            return self._split(value)
        if key == "dataframe_records":
            return self._records(value)
        return None

    def _split(self, split: Any) -> np.ndarray[Any, Any] | dict[str, Any] | None:
        if not isinstance(split, dict) or len(split) != 2 or "index" in split:
            return None
        columns, rows = split.get("columns"), split.get("data")
        order = self._order(columns)
        if order is None or not isinstance(rows, list) or not rows:
            return None
        return self._from_rows(rows, order)

    def _records(self, records: Any) -> np.ndarray[Any, Any] | dict[str, Any] | None:
        if not isinstance(records, list) or not records:
            return None
        names, width = self.names, len(self.names)
        try:
            rows = [[row[n] for n in names] for row in records if len(row) == width]
        except (KeyError, TypeError):
            return None
        if len(rows) != len(records):
            return None
        return self._from_rows(rows, None)

    def _order(self, columns: Any) -> list[int] | None:
        """Where each schema column is in the payload's ``columns``; None unless they are the
        schema's names exactly (in any order)."""
        if not isinstance(columns, list) or len(columns) != len(self.names):
            return None
        if not all(type(c) is str for c in columns) or len(set(columns)) != len(columns):
            return None
        position = {c: i for i, c in enumerate(columns)}
        try:
            return [position[n] for n in self.names]
        except KeyError:
            return None

    def _from_rows(
        self, rows: list[Any], order: list[int] | None
    ) -> np.ndarray[Any, Any] | dict[str, Any] | None:
        import numpy as np

        try:
            array = np.array(rows)
        except (ValueError, TypeError, OverflowError, RecursionError):
            return None
        width = len(self.names)
        if array.ndim != 2 or array.shape[1] != width or array.dtype.kind not in "if":
            return None  # ragged, nested, missing values, strings, booleans only, huge ints
        if order is not None and order != list(range(width)):
            array = array[:, order]
        kind = array.dtype.kind
        if any(kind not in _TAKES.get(t, "") for t in self.types):
            return None
        if self.uniform:
            target = self.dtypes[0]
            if target.kind == "i" and not _fits(array, target):
                return None
            return array.astype(target, copy=False)
        columns = {}
        for i, (name, target) in enumerate(zip(self.names, self.dtypes)):
            column = array[:, i]
            if target.kind == "i" and not _fits(column, target):
                return None
            columns[name] = column.astype(target)
        return columns

    def _columns(self, inputs: Any) -> dict[str, Any] | None:
        """``{"inputs": {"a": [...], "b": [...]}}``: each list converted as the general path
        converts it (``numpy.array(values, dtype=<the column's type>)``)."""
        import numpy as np

        if not isinstance(inputs, dict) or len(inputs) != len(self.names):
            return None
        columns = {}
        length = None
        for name, target in zip(self.names, self.dtypes):
            values = inputs.get(name)
            if not isinstance(values, list) or not values:
                return None
            try:
                column = np.array(values, dtype=target)
            except (ValueError, TypeError, OverflowError, RecursionError):
                return None  # the general path words the error
            if column.ndim != 1 or length not in (None, len(column)):
                return None
            length = len(column)
            columns[name] = column
        return columns


def _fits(values: np.ndarray[Any, Any], target: np.dtype[Any]) -> bool:
    import numpy as np

    if values.dtype.itemsize <= target.itemsize or not values.size:
        return True
    info = np.iinfo(target)
    return bool(values.min() >= info.min and values.max() <= info.max)


def compile_input(schema: Schema | None) -> CompiledInput | None:
    """The fast reader for ``schema``, or None when it is not a schema of named, required
    numeric (or boolean) columns."""
    if schema is None or not schema.inputs or schema.is_tensor_spec():
        return None
    if not schema.has_input_names():
        return None
    specs = schema.inputs
    if not all(
        isinstance(s, ColSpec) and s.required and isinstance(s.name, str) and s.type in _COLUMNAR
        for s in specs
    ):
        return None
    names = tuple(str(s.name) for s in specs)
    if len(set(names)) != len(names):
        return None
    types = tuple(s.type for s in specs)
    return CompiledInput(
        names=names,
        types=types,
        dtypes=tuple(t.to_numpy() for t in types),
        rows_ok=all(t in _TAKES for t in types),
    )
