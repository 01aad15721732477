"""Input examples: ``input_example.json`` and ``serving_input_example.json``, as MLflow writes.

An example is a pandas DataFrame (or Series), a numpy array, a dict of numpy arrays, a dict or
list of JSON-like values, a scalar (str, number, bytes, datetime), a scipy sparse matrix or a
pydantic model instance; or a ``(data, params)`` tuple whose params are saved alongside. The
``saved_input_example_info`` returned by :func:`save_input_example` goes into ``MLmodel``:

    {"artifact_path": "input_example.json", "type": "dataframe", "pandas_orient": "split",
     "serving_input_path": "serving_input_example.json"}

``type`` is ``dataframe``, ``ndarray``, ``json_object``, ``sparse_matrix_csr`` or
``sparse_matrix_csc``; ``params: "true"`` marks an example saved with params.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from copy import deepcopy
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envkit.errors import ModelFormatError, UsageError

if TYPE_CHECKING:
    from envkit.models.schema import Schema

__all__ = [
    "EXAMPLE_FILENAME",
    "SERVING_INPUT_FILENAME",
    "InputExample",
    "load_input_example",
    "load_input_example_params",
    "load_serving_input_example",
    "save_input_example",
    "split_input_example",
    "to_serving_input",
]

EXAMPLE_FILENAME = "input_example.json"
SERVING_INPUT_FILENAME = "serving_input_example.json"
EXAMPLE_TYPES = ("dataframe", "ndarray", "json_object", "sparse_matrix_csc", "sparse_matrix_csr")
_LLM_KEYS = ("messages", "prompt", "input")


class _ExampleEncoder(json.JSONEncoder):
    """JSON for numpy/pandas values, bytes (base64) and datetimes (ISO), as MLflow encodes."""

    def default(self, o: Any) -> Any:
        import sys

        np = sys.modules.get("numpy")
        pd = sys.modules.get("pandas")
        if np is not None:
            if isinstance(o, np.ndarray):
                if o.dtype == object:
                    return [self._convert(x) for x in o.tolist()]
                if o.dtype.kind == "S":
                    return (
                        [_b64(x) for x in o.ravel().tolist()]
                        if o.ndim == 1
                        else [self.default(row) for row in o]
                    )
                return o.tolist()
            if isinstance(o, np.datetime64):
                return str(np.datetime_as_string(o))
            if isinstance(o, np.generic):
                return o.item()
        if isinstance(o, (bytes, bytearray)):
            return _b64(o)
        if pd is not None and isinstance(o, pd.Timestamp):
            return o.isoformat()
        if isinstance(o, (dt.date, dt.datetime, dt.time)):
            return o.isoformat()
        pydantic = sys.modules.get("pydantic")
        if pydantic is not None and isinstance(o, pydantic.BaseModel):
            return o.model_dump()
        return super().default(o)

    def _convert(self, o: Any) -> Any:
        try:
            return self.default(o)
        except TypeError:
            return o


def _b64(value: bytes | bytearray) -> str:
    return base64.encodebytes(bytes(value)).decode("ascii")


def _is_example_with_params(example: Any) -> bool:
    return isinstance(example, tuple) and len(example) == 2 and isinstance(example[1], dict)


def split_input_example(example: Any) -> tuple[Any, dict[str, Any] | None]:
    """``(data, params)`` of an example; params are None unless given as ``(data, params)``."""
    if _is_example_with_params(example):
        data, params = example
        from envkit.models.signature import infer_param_schema

        try:
            infer_param_schema(params)
        except UsageError as exc:
            raise UsageError(f"invalid params in the input example: {exc}") from exc
        return data, params
    return example, None


def _is_sparse(x: Any) -> bool:
    if not type(x).__module__.startswith("scipy."):
        return False
    from scipy.sparse import csc_matrix, csr_matrix

    return isinstance(x, (csc_matrix, csr_matrix))


def _nan_to_none(x: Any) -> Any:
    import numpy as np

    if np.issubdtype(x.dtype, np.number):
        return np.where(np.isnan(x), None, x)
    return x


def _missing(cell: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(cell)) if not isinstance(cell, (list, dict, tuple)) else False
    except (TypeError, ValueError):
        return False


def _dataframe_split(df: Any) -> dict[str, Any]:
    split = df.to_dict(orient="split")
    del split["index"]
    split["data"] = [[None if _missing(c) else c for c in row] for row in split["data"]]
    if list(df.columns) == list(range(len(df.columns))):
        del split["columns"]
    return split


class InputExample:
    """An input example in MLflow's saved form: ``info``, and the two JSON documents."""

    def __init__(self, example: Any) -> None:
        self.data, self.params = split_input_example(deepcopy(example))
        self.info: dict[str, Any] = {"artifact_path": EXAMPLE_FILENAME}
        if self.params:
            self.info["params"] = "true"
        saved, serving = self._encode(deepcopy(self.data))
        if self.params is not None:
            saved = {"inputs": saved, "params": self.params}
            if serving is not None:
                if isinstance(self.data, dict) and _is_llm_input(self.data):
                    serving = {**serving, **self.params}
                else:
                    serving = {**serving, "params": self.params}
        try:
            self.json_input_example = json.dumps(saved, cls=_ExampleEncoder)
            self.json_serving_input = (
                json.dumps(serving, cls=_ExampleEncoder, indent=2) if serving else None
            )
        except (TypeError, ValueError) as exc:
            raise UsageError(f"the input example cannot be written as JSON: {exc}") from exc
        if self.json_serving_input is not None:
            self.info["serving_input_path"] = SERVING_INPUT_FILENAME

    def _encode(self, data: Any) -> tuple[Any, Any]:
        """(what goes into input_example.json, the serving payload); sets ``info['type']``."""
        import sys

        pd = sys.modules.get("pandas")
        np = sys.modules.get("numpy")
        pydantic = sys.modules.get("pydantic")
        if pydantic is not None and isinstance(data, pydantic.BaseModel):
            data = data.model_dump()
        if pd is not None and isinstance(data, pd.Series):
            data = data.to_frame()
        if isinstance(data, dict):
            arrays = [np is not None and isinstance(v, np.ndarray) for v in data.values()]
            if any(arrays):
                if not all(arrays):
                    raise UsageError(
                        "an input example dict must hold only numpy arrays (named tensors) or "
                        "no numpy arrays at all"
                    )
                self.info["type"] = "ndarray"
                encoded = {k: _nan_to_none(v).tolist() for k, v in data.items()}
                return encoded, {"inputs": encoded}
            self.info["type"] = "json_object"
            return data, (data if _is_llm_input(data) else {"inputs": data})
        if np is not None and isinstance(data, np.ndarray):
            self.info["type"] = "ndarray"
            encoded = _nan_to_none(data).tolist()
            return encoded, {"inputs": encoded}
        if isinstance(data, list):
            if np is not None and _contains_ndarray(data, np):
                raise UsageError(
                    "numpy arrays inside a list are not supported in an input example; use a "
                    "numpy array or a dict of numpy arrays"
                )
            self.info["type"] = "json_object"
            return data, {"inputs": data}
        if _is_sparse(data):
            self.info["type"] = (
                "sparse_matrix_csc" if type(data).__name__ == "csc_matrix" else "sparse_matrix_csr"
            )
            encoded = {
                "data": _nan_to_none(data.data).tolist(),
                "indices": data.indices.tolist(),
                "indptr": data.indptr.tolist(),
                "shape": list(data.shape),
            }
            return encoded, {"inputs": data.toarray()}
        if pd is not None and isinstance(data, pd.DataFrame):
            split = _dataframe_split(data)
            self.info["type"] = "dataframe"
            self.info["pandas_orient"] = "split" if "columns" in split else "values"
            return split, {"dataframe_split": split}
        if _is_scalar(data):
            self.info["type"] = "json_object"
            return data, {"inputs": data}
        raise UsageError(
            f"unsupported input example type {type(data).__name__}; use a pandas DataFrame, a "
            "numpy array, a dict of numpy arrays, a dict, a list, a scalar, a scipy sparse "
            "matrix or a pydantic model instance (optionally as a (data, params) tuple)"
        )

    def save(self, model_dir: Path) -> None:
        from envkit._fs import atomic_write_text

        atomic_write_text(model_dir / self.info["artifact_path"], self.json_input_example)
        if self.json_serving_input is not None:
            atomic_write_text(model_dir / self.info["serving_input_path"], self.json_serving_input)


def _is_scalar(x: Any) -> bool:
    import sys

    np = sys.modules.get("numpy")
    if isinstance(x, (str, bytes, bool, int, float, dt.date)):
        return True
    return np is not None and bool(np.isscalar(x))


def _contains_ndarray(data: Any, np: Any) -> bool:
    if isinstance(data, np.ndarray):
        return True
    if isinstance(data, list):
        return any(_contains_ndarray(x, np) for x in data)
    if isinstance(data, dict):
        return any(_contains_ndarray(x, np) for x in data.values())
    return False


def _is_llm_input(data: dict[str, Any]) -> bool:
    return any(key in data for key in _LLM_KEYS)


def save_input_example(model_dir: str | os.PathLike[str], example: Any) -> dict[str, Any] | None:
    """Write the example files into ``model_dir``; return ``saved_input_example_info``."""
    if example is None:
        return None
    saved = InputExample(example)
    saved.save(Path(model_dir))
    return dict(saved.info)


def to_serving_input(example: Any) -> str | None:
    """The serving payload (JSON text) for an input example, as in serving_input_example.json."""
    if example is None:
        return None
    return InputExample(example).json_serving_input


# --- loading -----------------------------------------------------------------------------------

_FROM_MLMODEL: Any = object()


def _read_json(model_dir: Path, relative: Any, what: str) -> Any:
    from envkit._fs import resolve_inside

    if not isinstance(relative, str) or not relative:
        raise ModelFormatError(f"saved_input_example_info has no valid {what} path")
    from envkit._parsing import load_json

    path = resolve_inside(model_dir, relative)
    try:
        return load_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFormatError(
            f"the model's {what} {relative} is missing from {model_dir}"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelFormatError(f"the model's {what} {relative} cannot be read: {exc}") from None


def _check_info(info: Any) -> dict[str, Any]:
    if not isinstance(info, dict):
        raise ModelFormatError("saved_input_example_info in MLmodel must be a mapping")
    kind = info.get("type")
    if kind not in EXAMPLE_TYPES:
        raise ModelFormatError(
            f"unsupported input example type {kind!r} in MLmodel; expected one of "
            f"{', '.join(EXAMPLE_TYPES)}"
        )
    return info


def _schema_from_mlmodel(model_dir: Path) -> Schema | None:
    from envkit.models.model import MLMODEL_FILE_NAME, Model

    if not (model_dir / MLMODEL_FILE_NAME).is_file():
        return None
    signature = Model.load(model_dir / MLMODEL_FILE_NAME).signature
    return signature.inputs if signature is not None else None


def load_input_example(
    model_dir: str | os.PathLike[str],
    info: dict[str, Any] | None,
    schema: Schema | None = _FROM_MLMODEL,
) -> Any:
    """The saved example as ``predict`` takes it (DataFrame, ndarray, dict, list, str...).

    Values are converted to the input ``schema`` as the scoring server converts them; by
    default the schema is read from the model's MLmodel. Returns None without an example.
    """
    if info is None:
        return None
    info = _check_info(info)
    model_dir = Path(model_dir)
    if schema is _FROM_MLMODEL:
        schema = _schema_from_mlmodel(model_dir)
    data = _read_json(model_dir, info.get("artifact_path"), "input example")
    if info.get("params"):
        if not isinstance(data, dict) or "inputs" not in data:
            raise ModelFormatError("the input example saved with params has no 'inputs' key")
        data = data["inputs"]
    kind = info["type"]
    if kind == "json_object":
        return data
    if kind == "ndarray":
        from envkit.models.serving_input import parse_inputs_data, parse_tf_serving_input

        if info.get("format") == "tf-serving" and isinstance(data, dict):
            return parse_tf_serving_input(data, schema)  # MLflow 2.x: {"inputs": [...]}
        return parse_inputs_data(data, schema)
    if kind == "dataframe":
        from envkit.models.serving_input import dataframe_from_parsed_json

        return dataframe_from_parsed_json(data, "split", schema)
    from scipy.sparse import csc_matrix, csr_matrix

    matrix = csc_matrix if kind == "sparse_matrix_csc" else csr_matrix
    try:
        return matrix((data["data"], data["indices"], data["indptr"]), shape=tuple(data["shape"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFormatError(f"the sparse input example cannot be read: {exc}") from None


def load_input_example_params(
    model_dir: str | os.PathLike[str], info: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The params saved with the example (``(data, params)`` examples), else None."""
    if info is None or not info.get("params"):
        return None
    data = _read_json(Path(model_dir), _check_info(info).get("artifact_path"), "input example")
    params = data.get("params") if isinstance(data, dict) else None
    if not isinstance(params, dict):
        raise ModelFormatError("the input example saved with params has no 'params' object")
    return params


def load_serving_input_example(
    model_dir: str | os.PathLike[str], info: dict[str, Any] | None
) -> str | None:
    """The text of ``serving_input_example.json``, or None when the model has none."""
    if info is None or not isinstance(info, dict) or not info.get("serving_input_path"):
        return None
    from envkit._fs import resolve_inside

    path = resolve_inside(Path(model_dir), info["serving_input_path"])
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelFormatError(
            f"the model's serving input example {info['serving_input_path']} is missing"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"cannot read the serving input example: {exc}") from None
