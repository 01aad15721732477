"""The compiled reader (envkit.models.compiled) builds exactly what the general path builds
(parse_serving_input, then schema enforcement), and declines everything else."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from envkit.models.compiled import compile_input
from envkit.models.enforcement import enforce_schema
from envkit.models.schema import ColSpec, Schema, TensorSpec
from envkit.models.serving_input import parse_serving_input

MIXED = Schema(
    [
        ColSpec("double", "x"),
        ColSpec("long", "n"),
        ColSpec("float", "f"),
        ColSpec("integer", "i"),
    ]
)
INTS = Schema([ColSpec("double", "x"), ColSpec("long", "n"), ColSpec("integer", "i")])
FLOATS = Schema([ColSpec("float", "f"), ColSpec("double", "x")])
DOUBLES = Schema([ColSpec("double", "a"), ColSpec("double", "b")])
WITH_BOOL = Schema([ColSpec("double", "a"), ColSpec("boolean", "ok")])


def general(payload: dict, schema: Schema) -> pd.DataFrame:
    data, _ = parse_serving_input(json.dumps(payload), schema=schema)
    return enforce_schema(data, schema)


SAME = [
    (DOUBLES, {"dataframe_split": {"columns": ["a", "b"], "data": [[1.5, 2], [3, 4.25]]}}),
    (DOUBLES, {"dataframe_split": {"columns": ["b", "a"], "data": [[1.5, 2]]}}),  # order
    (DOUBLES, {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}),  # ints
    (DOUBLES, {"dataframe_split": {"columns": ["a", "b"], "data": [[True, 2.5]]}}),  # a bool
    (DOUBLES, {"dataframe_split": {"columns": ["a", "b"], "data": [[2**60 + 1, 0.5]]}}),
    (DOUBLES, {"dataframe_records": [{"a": 1.5, "b": 2}, {"b": 3, "a": 4}]}),
    (DOUBLES, {"inputs": {"b": [1, 2], "a": [0.5, 3]}}),
    (INTS, {"dataframe_split": {"columns": ["x", "n", "i"], "data": [[1, 2, 3], [4, 5, 6]]}}),
    (FLOATS, {"dataframe_split": {"columns": ["f", "x"], "data": [[0.1, 2], [1e30, 0.3]]}}),
    (MIXED, {"inputs": {"x": [1], "n": [2], "f": [0.1], "i": [7]}}),
    (WITH_BOOL, {"inputs": {"a": [1.5, 2], "ok": [True, False]}}),
]


@pytest.mark.parametrize("schema, payload", SAME)
def test_the_compiled_reader_builds_what_the_general_path_builds(schema, payload):
    compiled = compile_input(schema)
    assert compiled is not None
    fast = compiled.read(json.loads(json.dumps(payload)))
    assert fast is not None
    pd.testing.assert_frame_equal(fast, general(payload, schema), check_exact=True)


def test_nan_in_a_double_column_is_read_as_the_general_path_reads_it():
    payload = json.loads('{"dataframe_split": {"columns": ["a", "b"], "data": [[NaN, 1]]}}')
    fast = compile_input(DOUBLES).read(payload)
    data, _ = parse_serving_input(payload, schema=DOUBLES)
    pd.testing.assert_frame_equal(fast, enforce_schema(data, DOUBLES))


DECLINED = [
    {"dataframe_split": {"columns": ["a", "b"], "data": [[None, 2]]}},  # missing value
    {"dataframe_split": {"columns": ["a", "b"], "data": [["1.5", 2]]}},  # a string
    {"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, 2, 3]]}},  # extra column
    {"dataframe_split": {"columns": ["a"], "data": [[1]]}},  # missing column
    {"dataframe_split": {"columns": ["a", "a"], "data": [[1, 2]]}},  # duplicated
    {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]], "index": [5]}},
    {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3]]}},  # ragged
    {"dataframe_split": {"columns": ["a", "b"], "data": [[[1], [2]]]}},  # nested
    {"dataframe_split": {"columns": ["a", "b"], "data": []}},
    {"dataframe_split": {"data": [[1, 2]]}},
    {"dataframe_split": {"columns": ["a", "b"], "data": [[2**70, 1]]}},  # too big for int64
    {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}, "params": {"k": 1}},
    {"dataframe_records": [{"a": 1, "b": 2}, {"a": 1}]},
    {"dataframe_records": [{"a": 1, "b": 2, "c": 3}]},
    {"instances": [{"a": 1, "b": 2}]},
    {"inputs": [[1, 2]]},
    {"inputs": {"a": [1, 2], "b": [3]}},  # lengths differ: the general path words it
    {"inputs": {"a": ["x"], "b": [3]}},
]


@pytest.mark.parametrize("payload", DECLINED)
def test_anything_else_is_left_to_the_general_path(payload):
    assert compile_input(DOUBLES).read(payload) is None


def test_integer_columns_take_only_integers_in_their_range():
    compiled = compile_input(INTS)
    columns = ["x", "n", "i"]
    assert compiled.read({"dataframe_split": {"columns": columns, "data": [[1, 2.5, 3]]}}) is None
    too_big = [[1, 2, 2**40]]
    assert compiled.read({"dataframe_split": {"columns": columns, "data": too_big}}) is None
    as_int = compile_input(Schema([ColSpec("integer", "i")]))
    assert as_int.read({"dataframe_split": {"columns": ["i"], "data": [[2**40]]}}) is None
    fits = as_int.read({"dataframe_split": {"columns": ["i"], "data": [[-(2**31)]]}})
    assert fits["i"].dtype == np.int32


@pytest.mark.parametrize(
    "schema",
    [
        None,
        Schema([ColSpec("double")]),  # unnamed
        Schema([ColSpec("string", "s")]),
        Schema([ColSpec("double", "a"), ColSpec("double", "b", required=False)]),
        Schema([TensorSpec(np.dtype("float64"), (-1, 4))]),
    ],
    ids=["none", "unnamed", "string", "optional", "tensor"],
)
def test_only_schemas_of_named_required_numeric_columns_compile(schema):
    assert compile_input(schema) is None
