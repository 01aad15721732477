"""Predicting on a bare numpy array where a DataFrame would give the same answer.

scikit-learn turns a DataFrame into an array before it computes anything; checking the
DataFrame (its column names, dtypes, through narwhals) costs two thirds of a one-row prediction
of a small pipeline. :func:`positional_predictor` answers, once per loaded model, whether the
estimator may be given the array instead: only when each of its parts is a scikit-learn class
that reads columns by position, and the columns it was fitted with are the signature's, in the
signature's order. Anything that looks columns up by name (``ColumnTransformer``,
``FunctionTransformer``), returns DataFrames (``set_output``), or is not scikit-learn's own
class keeps the DataFrame path.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

__all__ = ["positional_predictor"]

# scikit-learn classes that read DataFrame columns by name or hand the DataFrame to user code.
_BY_NAME = frozenset({"ColumnTransformer", "FunctionTransformer"})
# What scikit-learn warns when an estimator fitted on a DataFrame is given an array: the
# array's columns are the fitted ones, in order, which is what the warning asks the user to check.
_NO_NAMES = "X does not have valid feature names"
# Objects looked through at most (a forest of 10,000 trees is still looked through whole);
# a model holding more keeps the DataFrame path.
_MAX_VISITS = 1_000_000


def positional_predictor(
    estimator: Any, predict_fn: str, columns: Sequence[str]
) -> Callable[[Any], Any] | None:
    """``estimator.<predict_fn>`` as a function of a 2-D numpy array whose columns are
    ``columns`` in this order, answering exactly what it answers for the DataFrame of those
    columns; None when that is not certain (see the module docstring)."""
    from envkit.pyfunc.loading import SKLEARN_ROW_WISE_FNS  # X alone, answered row by row

    method = getattr(estimator, predict_fn, None) if predict_fn in SKLEARN_ROW_WISE_FNS else None
    fitted = getattr(estimator, "feature_names_in_", None)
    if method is None or fitted is None or list(fitted) != list(columns):
        return None
    if not _reads_by_position(estimator):
        return None
    order = _dataframe_order(columns)

    def predict(array: Any) -> Any:
        import numpy as np

        # The memory layout the DataFrame would have handed over: a float kernel then sums in
        # the same order, to the last bit.
        array = np.asarray(array, order=order)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_NO_NAMES, category=UserWarning)
            return method(array)

    return predict


def _reads_by_position(estimator: Any) -> bool:
    """Whether every estimator in ``estimator`` (its parameters and fitted parts, nested) is
    a scikit-learn class that reads columns by position and returns arrays."""
    from sklearn.base import BaseEstimator

    count = 0
    try:
        for part in _parts(estimator, BaseEstimator):
            count += 1
            cls = type(part)
            if not cls.__module__.startswith("sklearn."):
                return False
            if any(c.__name__ in _BY_NAME for c in cls.__mro__):
                return False
            output = getattr(part, "_sklearn_output_config", None) or {}
            if any(value != "default" for value in output.values()):
                return False
    except _TooLarge:
        return False
    return count > 0


class _TooLarge(Exception):
    """The estimator holds more objects than are worth looking through."""


def _parts(root: Any, base: type) -> Iterator[Any]:
    """``root`` and every estimator reachable from its attributes (parameters and fitted
    attributes, through lists, tuples, dicts and object arrays), each once."""
    import numpy as np

    seen: set[int] = set()
    stack = [root]
    while stack:
        value = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if len(seen) > _MAX_VISITS:
            raise _TooLarge
        if isinstance(value, base):
            yield value
            stack.extend(vars(value).values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, np.ndarray) and value.dtype == object:
            stack.extend(value.ravel().tolist())


def _dataframe_order(columns: Sequence[str]) -> Literal["C", "F"]:
    """The memory order of the array scikit-learn gets from a DataFrame built from rows (as
    the compiled reader builds it): "F" with the pandas of today, asked rather than assumed."""
    import numpy as np
    import pandas as pd

    values = np.asarray(pd.DataFrame(np.zeros((2, len(columns))), columns=list(columns)))
    return "F" if values.flags.f_contiguous and not values.flags.c_contiguous else "C"
