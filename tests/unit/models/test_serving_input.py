"""The scoring payload parser, and validate_serving_input on real saved models."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import envkit.pyfunc
import envkit.sklearn
from envkit.errors import ModelFailedError, SchemaEnforcementError, ServingInputError
from envkit.models import infer_signature, validate_serving_input
from envkit.models.input_example import to_serving_input
from envkit.models.schema import (
    Array,
    ColSpec,
    Object,
    ParamSchema,
    ParamSpec,
    Property,
    Schema,
    TensorSpec,
)
from envkit.models.serving_input import parse_serving_input

SCHEMA = Schema(
    [
        ColSpec("long", "a"),
        ColSpec("string", "b"),
        ColSpec("datetime", "when", required=False),
        ColSpec("binary", "raw", required=False),
    ]
)


def test_dataframe_split_with_schema_conversions():
    payload = {
        "dataframe_split": {
            "columns": ["a", "b", "when", "raw"],
            "data": [[1, "x", "2020-01-02T03:04:05", "AAE=\n"], [2, "y", None, None]],
        },
        "params": {"k": 1},
    }
    df, params = parse_serving_input(json.dumps(payload), schema=SCHEMA)
    assert params == {"k": 1}
    assert df["a"].dtype == np.int64
    assert df["when"].dtype == np.dtype("datetime64[ns]")
    assert df["when"][0] == pd.Timestamp("2020-01-02 03:04:05")
    assert df["raw"][0] == b"\x00\x01"


def test_dataframe_records():
    payload = b'{"dataframe_records": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}'
    df, params = parse_serving_input(payload, "application/json; charset=utf-8", SCHEMA)
    assert df.to_dict("list") == {"a": [1, 2], "b": ["x", "y"]} and params is None


def test_optional_integer_column_with_nulls_stays_nullable():
    schema = Schema([ColSpec("long", "n", required=False)])
    df, _ = parse_serving_input({"dataframe_records": [{"n": 1}, {"n": None}]}, schema=schema)
    assert str(df["n"].dtype) == "Int64" and df["n"].isna().tolist() == [False, True]


def test_inputs_and_instances():
    tensor = Schema([TensorSpec(np.dtype("float32"), (-1, 2))])
    data, _ = parse_serving_input({"inputs": [[1, 2], [3, 4]]}, schema=tensor)
    assert data.dtype == np.float32 and data.shape == (2, 2)
    columns, _ = parse_serving_input({"inputs": {"a": [1, 2], "b": ["x", "y"]}}, schema=SCHEMA)
    assert columns["a"].dtype == np.int64 and columns["b"].tolist() == ["x", "y"]
    rows, _ = parse_serving_input({"instances": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]})
    assert rows["a"].tolist() == [1, 2]
    text, _ = parse_serving_input({"inputs": "hello"}, schema=Schema([ColSpec("string")]))
    assert text == "hello"
    with pytest.raises(ServingInputError, match="same number of values"):
        parse_serving_input({"instances": {"a": [1, 2], "b": ["x"]}})


def test_nested_values_are_checked_while_parsing():
    schema = Schema(
        [ColSpec(Object([Property("k", "double")]), "obj"), ColSpec(Array("long"), "ids")]
    )
    data, _ = parse_serving_input(
        {"dataframe_records": [{"obj": {"k": 1.5}, "ids": [1, 2]}]}, schema=schema
    )
    assert data["ids"][0] == [1, 2]
    with pytest.raises(SchemaEnforcementError, match="column 'obj'.*key 'k' expects double"):
        parse_serving_input({"dataframe_records": [{"obj": {"k": "x"}, "ids": []}]}, schema=schema)


def test_values_that_do_not_fit_the_schema_name_the_column():
    with pytest.raises(SchemaEnforcementError, match="column 'a': expected long"):
        parse_serving_input(
            {"dataframe_split": {"columns": ["a"], "data": [["one"]]}}, schema=SCHEMA
        )
    with pytest.raises(SchemaEnforcementError, match="input 'a': expected long"):
        parse_serving_input({"inputs": {"a": ["one"]}}, schema=SCHEMA)


def test_a_ragged_input_without_a_schema_is_refused_in_one_line():
    """No schema: the input becomes one numpy array; one it cannot become is the client's
    error (it was an AttributeError, a 500)."""
    with pytest.raises(SchemaEnforcementError, match="the input: expected an array"):
        parse_serving_input({"inputs": [[1, 2], [3]]})


def test_llm_payloads_split_params_by_the_params_schema():
    params_schema = ParamSchema([ParamSpec("temperature", "double", 0.1)])
    data, params = parse_serving_input(
        {"messages": [{"role": "user", "content": "hi"}], "temperature": 0.5},
        params_schema=params_schema,
    )
    assert data == {"messages": [{"role": "user", "content": "hi"}]}
    assert params == {"temperature": 0.5}


def test_type_hint_signatures_take_inputs_as_json():
    data, _ = parse_serving_input({"inputs": ["a", "b"]}, signature_from_type_hint=True)
    assert data == ["a", "b"]
    with pytest.raises(ServingInputError, match="must use 'inputs'"):
        parse_serving_input({"dataframe_records": []}, signature_from_type_hint=True)


def test_csv():
    csv = "a,b,when\n1,007,2020-01-01\n2,x,\n"
    df, params = parse_serving_input(csv, "text/csv", SCHEMA)
    assert df["b"].tolist() == ["007", "x"]
    assert df["when"].dtype == np.dtype("datetime64[ns]") and params is None
    df, _ = parse_serving_input(b"a,b\n1,2\n", "csv")
    assert df.shape == (1, 2)


@pytest.mark.parametrize(
    "payload, content_type, message",
    [
        ("{not json", "application/json", "not valid JSON"),
        (b"\xff\xfe", "application/json", "not valid UTF-8"),
        ("[1, 2]", "application/json", "got a JSON list"),
        ('{"data": [1]}', "application/json", "exactly one of 'dataframe_split'"),
        ('{"inputs": [1], "instances": [1]}', "application/json", "it has 2 of them"),
        ('{"inputs": [1], "extra": 1}', "application/json", "unknown key 'extra'"),
        ('{"inputs": [1], "params": [1]}', "application/json", "'params' must be a JSON object"),
        ('{"dataframe_records": {"a": 1}}', "application/json", "list of row objects"),
        ('{"dataframe_split": {"columns": ["a"]}}', "application/json", "needs a 'data' key"),
        ('{"inputs": 1}', "text/plain", "unsupported content type 'text/plain'"),
        ('{"inputs": 1}', "application/json; charset=latin-1", "only UTF-8"),
        ('{"inputs": 1}', "application/json; format=pandas-split", "content type parameter"),
    ],
)
def test_malformed_payloads_are_usage_errors(payload, content_type, message):
    with pytest.raises(ServingInputError, match=message) as info:
        parse_serving_input(payload, content_type)
    assert info.value.exit_code == 2


# --- real models --------------------------------------------------------------------------------


class Echo(envkit.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        if params and params.get("fail"):
            raise RuntimeError("asked to fail")
        return model_input


def test_validate_serving_input_on_a_saved_pyfunc_model(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    signature = infer_signature(df, df, params={"fail": False})
    path = tmp_path / "model"
    envkit.pyfunc.save_model(path, python_model=Echo(), input_example=df, signature=signature)
    serving = (path / "serving_input_example.json").read_text()
    out = validate_serving_input(path, serving)
    pd.testing.assert_frame_equal(out, df)
    assert validate_serving_input(str(path), json.loads(serving)).shape == (2, 2)
    file_input = tmp_path / "payload.json"
    file_input.write_text(serving)
    assert validate_serving_input(path, file_input).shape == (2, 2)

    with pytest.raises(SchemaEnforcementError, match="required input column 'a' \\(long\\)"):
        validate_serving_input(path, {"dataframe_records": [{"b": "x"}]})
    with pytest.warns(UserWarning, match="params 'temperature' are not in the model signature"):
        validate_serving_input(
            path, {"inputs": {"a": [1], "b": ["x"]}, "params": {"temperature": 1}}
        )
    with pytest.raises(ServingInputError, match="not valid JSON"):
        validate_serving_input(path, "{")
    with pytest.raises(ModelFailedError, match="asked to fail"):
        validate_serving_input(path, {"inputs": {"a": [1], "b": ["x"]}, "params": {"fail": True}})


def test_validate_serving_input_on_a_saved_sklearn_model(tmp_path, iris, iris_pipeline):
    X, _ = iris
    path = tmp_path / "sk"
    envkit.sklearn.save_model(iris_pipeline, path, input_example=X.head(3))
    predictions = validate_serving_input(path, (path / "serving_input_example.json").read_text())
    assert list(predictions) == list(iris_pipeline.predict(X.head(3)))
    with pytest.raises(SchemaEnforcementError, match="'petal width \\(cm\\)' \\(double\\)"):
        validate_serving_input(path, {"dataframe_records": [{"sepal length (cm)": 1.0}]})
    payload = to_serving_input(X.head(2).astype("float32"))
    assert len(validate_serving_input(path, payload)) == 2


def test_validate_serving_input_on_type_hinted_model(tmp_path):
    class Upper(envkit.pyfunc.PythonModel):
        def predict(self, context, model_input: list[str], params=None) -> list[str]:
            return [s.upper() for s in model_input]

    path = tmp_path / "hinted"
    envkit.pyfunc.save_model(path, python_model=Upper())
    assert validate_serving_input(path, {"inputs": ["a", "b"]}) == ["A", "B"]
