"""Data shared by envkit and the MLflow virtualenv: each case is built the same way on both sides.

Only numpy, pandas (and scipy) are used here, so the module imports in either interpreter.
"""

from __future__ import annotations

import datetime as dt
from typing import Any


def data_cases() -> dict[str, Any]:
    """Name -> an object to infer a schema from / save as an input example."""
    import numpy as np
    import pandas as pd

    return {
        "df_mixed": pd.DataFrame(
            {
                "a": [1, 2],
                "b": ["x", None],
                "c": [1.5, np.nan],
                "d": [True, False],
                "e": pd.to_datetime(["2020-01-01 00:00:00", "2021-01-01 10:30:00"]),
                "f": [b"ab", b"cd"],
                "g": [[1, 2], [3]],
                "h": [{"k": 1}, {"k": 2, "z": "q"}],
                "i": pd.array([1, None], dtype="Int64"),
                "j": np.array([1, 2], dtype=np.int32),
                "k": np.array([1, 2], dtype=np.float32),
                "l": pd.array(["a", None], dtype="string"),
                "m": pd.array([True, None], dtype="boolean"),
                "n": np.array([1, 2], dtype=np.int8),
                "o": np.array([1, 2], dtype=np.uint32),
            }
        ),
        "df_iris_like": pd.DataFrame(
            {"sepal length (cm)": [5.1, 4.9], "sepal width (cm)": [3.5, 3.0]}
        ),
        "df_unnamed": pd.DataFrame(np.arange(6, dtype=np.float64).reshape(3, 2)),
        "df_nested": pd.DataFrame(
            {
                "tags": [["a", "b"], []],
                "meta": [{"x": [1.0, 2.0], "y": {"z": True}}, {"x": [], "y": {"z": False}}],
                "anything": [None, None],
            }
        ),
        "series_named": pd.Series([1.0, 2.0], name="s"),
        "series_strings": pd.Series(["a", "b"], name="text"),
        "ndarray_2d": np.zeros((3, 4), dtype=np.float32),
        "ndarray_3d_int": np.arange(24, dtype=np.int64).reshape(2, 3, 4),
        "ndarray_strings": np.array(["a", "bc"]),
        "ndarray_nan": np.array([[1.0, np.nan], [2.0, 3.0]]),
        "dict_of_arrays": {"x": np.zeros((2, 3)), "y": np.array(["a", "b"])},
        "dict_json": {"a": "x", "b": [1, 2], "c": {"d": 1.5}, "e": None},
        "dict_llm": {"messages": [{"role": "user", "content": "hi"}]},
        "list_of_strings": ["a", "b"],
        "list_of_dicts": [{"a": 1, "b": "x"}, {"a": 2}],
        "list_of_lists": [[1.0, 2.0], [3.0]],
        "list_empty": [],
        "str": "hello",
        "int": 7,
        "float": 2.5,
        "bool": True,
        "bytes": b"\x00\x01raw",
        "datetime": dt.datetime(2024, 5, 6, 7, 8, 9),
        "with_params": (
            pd.DataFrame({"q": ["what?"]}),
            {"temperature": 0.5, "max_tokens": 10, "stop": ["x", "y"], "flag": False},
        ),
        "llm_with_params": ({"prompt": "hi"}, {"temperature": 0.1}),
    }


def param_cases() -> dict[str, Any]:
    """Name -> params dict for infer_signature(..., params=...)."""
    import numpy as np

    return {
        "scalars": {"t": 0.5, "n": 3, "s": "x", "b": True},
        "lists": {"ints": [1, 2], "strs": ["a"], "floats": [0.5, 1.5], "bools": [True]},
        "datetimes": {"d": dt.datetime(2020, 1, 2, 3, 4, 5), "ds": [dt.datetime(2020, 1, 1)]},
        "date": {"day": dt.date(2021, 3, 4)},
        "numpy": {"f32": np.float32(1.5), "i32": np.int32(4), "arr": np.array([1, 2])},
        "object": {"o": {"a": 1, "b": {"c": "x"}, "d": [1.0]}},
        "none_default_list": {"empty": []},
    }


def signature_json_cases() -> list[dict[str, Any]]:
    """Hand-written MLmodel signature sections covering every schema type."""
    import json

    def js(x: Any) -> str:
        return json.dumps(x)

    return [
        {
            "inputs": js(
                [
                    {"type": "boolean", "name": "b", "required": True},
                    {"type": "integer", "name": "i", "required": True},
                    {"type": "long", "name": "l", "required": False},
                    {"type": "float", "name": "f", "required": True},
                    {"type": "double", "name": "d", "required": True},
                    {"type": "string", "name": "s", "required": True},
                    {"type": "binary", "name": "bin", "required": True},
                    {"type": "datetime", "name": "dt", "required": True},
                    {"type": "array", "items": {"type": "string"}, "name": "arr", "required": True},
                    {
                        "type": "object",
                        "properties": {
                            "a": {"type": "long", "required": True},
                            "b": {"type": "array", "items": {"type": "double"}, "required": False},
                        },
                        "name": "obj",
                        "required": True,
                    },
                    {"type": "map", "values": {"type": "double"}, "name": "m", "required": True},
                    {"type": "any", "name": "anything", "required": False},
                ]
            ),
            "outputs": js([{"type": "long", "required": True}]),
            "params": js(
                [
                    {"name": "t", "default": 0.5, "shape": None, "type": "double"},
                    {"name": "k", "default": [1, 2], "shape": [-1], "type": "long"},
                    {
                        "name": "when",
                        "default": "2020-01-02T00:00:00",
                        "shape": None,
                        "type": "datetime",
                    },
                    {
                        "name": "o",
                        "default": {"a": 1},
                        "shape": None,
                        "type": "object",
                        "properties": {"a": {"type": "long", "required": True}},
                    },
                ]
            ),
        },
        {
            "inputs": js(
                [
                    {
                        "name": "x",
                        "type": "tensor",
                        "tensor-spec": {"dtype": "float32", "shape": [-1, 28, 28]},
                    },
                    {"name": "y", "type": "tensor", "tensor-spec": {"dtype": "str", "shape": [-1]}},
                ]
            ),
            "outputs": js(
                [{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 10]}}]
            ),
            "params": None,
        },
        {"inputs": js([{"type": "string", "required": True}]), "outputs": None, "params": None},
        {
            "inputs": js(
                [
                    {
                        "type": "array",
                        "items": {
                            "type": "map",
                            "values": {"type": "array", "items": {"type": "any"}},
                        },
                        "required": True,
                    }
                ]
            ),
            "outputs": js([{"type": "any", "required": True}]),
            "params": None,
        },
    ]
