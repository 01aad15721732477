"""validate_prediction_input: conversions, safe casts, refusals and their messages."""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np
import pandas as pd
import pytest

from envkit.errors import SchemaEnforcementError
from envkit.models import ModelSignature, infer_signature
from envkit.models.enforcement import (
    IgnoredParamsWarning,
    enforce_params,
    to_stream_input,
    validate_prediction_input,
)
from envkit.models.schema import (
    AnyType,
    Array,
    ColSpec,
    Map,
    Object,
    ParamSchema,
    ParamSpec,
    Property,
    Schema,
    TensorSpec,
)


def sig(*cols, params=None):
    return ModelSignature(Schema(list(cols)), params=params)


def check(data, signature, params=None):
    return validate_prediction_input(data, params, signature)[0]


def test_no_signature_passes_everything_through():
    data, params = object(), {"anything": 1}
    assert validate_prediction_input(data, params, None) == (data, params)


def test_named_columns_reordered_and_extra_dropped(caplog):
    s = sig(ColSpec("long", "a"), ColSpec("string", "b"))
    with caplog.at_level(logging.WARNING, logger="envkit.models.enforcement"):
        out = check(pd.DataFrame({"b": ["x"], "extra": [1], "a": [1]}), s)
    assert list(out.columns) == ["a", "b"]
    assert "'extra'" in caplog.text


def test_missing_required_column_names_it_its_type_and_what_was_given():
    s = sig(ColSpec("long", "a"), ColSpec("string", "b"), ColSpec("double", "c"))
    with pytest.raises(SchemaEnforcementError) as info:
        check(pd.DataFrame({"b": ["x"]}), s)
    assert str(info.value) == (
        "required input columns 'a' (long) and 'c' (double) are missing; the input has columns: 'b'"
    )
    assert info.value.exit_code == 1


def test_optional_columns_may_be_absent():
    s = sig(ColSpec("long", "a"), ColSpec("string", "b", required=False))
    out = check(pd.DataFrame({"a": [1, 2]}), s)
    assert list(out.columns) == ["a"]


@pytest.mark.parametrize(
    "values, dtype, target, expected_dtype",
    [
        (np.array([1, 2], dtype=np.int32), "int32", "long", "int64"),
        (np.array([1, 2], dtype=np.int8), "int8", "integer", "int32"),
        (np.array([1, 2], dtype=np.uint16), "uint16", "integer", "int32"),
        (np.array([1, 2], dtype=np.int32), "int32", "double", "float64"),
        (np.array([1, 2**53], dtype=np.int64), "int64", "double", "float64"),
        (np.array([1.5], dtype=np.float32), "float32", "double", "float64"),
        (np.array([True]), "bool", "boolean", "bool"),
    ],
)
def test_safe_casts(values, dtype, target, expected_dtype):
    df = pd.DataFrame({"x": values})
    assert str(df["x"].dtype) == dtype
    out = check(df, sig(ColSpec(target, "x")))
    assert str(out["x"].dtype) == expected_dtype
    assert out["x"].tolist() == values.tolist()


@pytest.mark.parametrize(
    "column, target, message",
    [
        ([1.5, 2.0], "long", "column 'x': expected long, got float64 values that cannot be safely"),
        ([1.5], "float", "expected float, got float64 values"),
        ([2**60], "double", "expected double, got int64 values"),
        (["1", "2"], "long", "expected long, got str values"),
        ([1, 2], "string", "expected string, got int64 values"),
        ([True], "long", "expected long, got bool values"),
        ([1, 2], "boolean", "expected boolean, got int64"),
    ],
)
def test_unsafe_casts_are_refused(column, target, message):
    with pytest.raises(SchemaEnforcementError, match=message):
        check(pd.DataFrame({"x": column}), sig(ColSpec(target, "x")))


def test_missing_values_in_an_integer_column_get_a_hint():
    with pytest.raises(SchemaEnforcementError, match="missing values arrive as floats"):
        check(pd.DataFrame({"x": [1.0, None]}), sig(ColSpec("long", "x")))


def test_strings_become_datetimes_where_the_schema_says_so():
    s = sig(ColSpec("datetime", "when"))
    out = check(pd.DataFrame({"when": ["2020-01-02", "2021-03-04T05:06:07"]}), s)
    assert out["when"].dtype == np.dtype("datetime64[ns]")
    assert out["when"][1] == pd.Timestamp("2021-03-04 05:06:07")
    micro = pd.DataFrame({"when": pd.to_datetime(["2020-01-01"]).as_unit("us")})
    assert check(micro, s)["when"].dtype == np.dtype("datetime64[ns]")
    with pytest.raises(SchemaEnforcementError, match="column 'when'.*'not a date'"):
        check(pd.DataFrame({"when": ["2020-01-01", "not a date"]}), s)
    with pytest.raises(SchemaEnforcementError, match="timezone-aware"):
        check(pd.DataFrame({"when": pd.to_datetime(["2020-01-01"]).tz_localize("UTC")}), s)


def test_nullable_columns_keep_their_missing_values():
    df = pd.DataFrame(
        {
            "i": pd.array([1, None], dtype="Int32"),
            "b": pd.array([True, None], dtype="boolean"),
            "s": pd.array(["a", None], dtype="string"),
        }
    )
    s = sig(
        ColSpec("long", "i", required=False),
        ColSpec("boolean", "b", required=False),
        ColSpec("string", "s", required=False),
    )
    out = check(df, s)
    assert str(out["i"].dtype) == "Int64" and out["i"].isna().tolist() == [False, True]
    assert str(out["b"].dtype) == "boolean"
    full = check(pd.DataFrame({"i": pd.array([1, 2], dtype="Int64")}), sig(ColSpec("long", "i")))
    assert full["i"].dtype == np.dtype("int64")


def test_object_boolean_column_checks_values():
    s = sig(ColSpec("boolean", "f", required=False))
    out = check(pd.DataFrame({"f": [True, None]}), s)
    assert out["f"].tolist() == [True, None]
    with pytest.raises(SchemaEnforcementError, match="expected boolean, got str 'yes'"):
        check(pd.DataFrame({"f": [True, "yes"]}), s)


def test_binary_and_strings():
    s = sig(ColSpec("binary", "raw"), ColSpec("string", "text"))
    out = check(pd.DataFrame({"raw": [b"\x00"], "text": ["hi"]}), s)
    assert out["raw"][0] == b"\x00"


def test_inputs_converted_to_dataframes():
    s = sig(ColSpec("string", "q"), ColSpec("long", "n"))
    assert check({"q": "x", "n": 1}, s).to_dict("records") == [{"q": "x", "n": 1}]
    assert check([{"q": "x", "n": 1}, {"q": "y", "n": 2}], s)["n"].tolist() == [1, 2]
    assert check({"q": ["x", "y"], "n": np.array([1, 2])}, s).shape == (2, 2)
    unnamed = sig(ColSpec("string"))
    assert check("hello", unnamed).iloc[0, 0] == "hello"
    assert check(["a", "b"], unnamed)[0].tolist() == ["a", "b"]
    assert check(pd.Series([1.0], name="n"), sig(ColSpec("double", "n")))["n"].tolist() == [1.0]


def test_unnamed_columns_count_and_types():
    s = sig(ColSpec("double"), ColSpec("double"))
    with pytest.raises(SchemaEnforcementError, match=r"1 column\(s\).*2 unnamed"):
        check(pd.DataFrame({0: [1.0]}), s)
    with pytest.raises(SchemaEnforcementError, match="column #1: expected double, got str"):
        check(pd.DataFrame({0: [1.0], 1: ["x"]}), s)


def test_nested_types():
    s = sig(
        ColSpec(Array("long"), "ids"),
        ColSpec(Object([Property("k", "double"), Property("opt", "string", False)]), "obj"),
        ColSpec(Map(Array("string")), "m"),
        ColSpec(AnyType(), "any", required=False),
    )
    ok = pd.DataFrame(
        {
            "ids": [[1, 2], []],
            "obj": [{"k": 1.0}, {"k": 2.5, "opt": "x"}],
            "m": [{"a": ["x"]}, {}],
            "any": [None, {"x": 1}],
        }
    )
    out = check(ok, s)
    assert out["ids"].tolist() == [[1, 2], []]
    assert out["obj"][1] == {"k": 2.5, "opt": "x"}
    with pytest.raises(SchemaEnforcementError, match="column 'ids': expected array of long"):
        check(ok.assign(ids=[[1, "x"], [2]]), s)
    with pytest.raises(SchemaEnforcementError, match=r"key 'k' expects double, got str 'one'"):
        check(ok.assign(obj=[{"k": "one"}, {"k": 1.0}]), s)
    with pytest.raises(SchemaEnforcementError, match=r"without required key\(s\) \['k'\]"):
        check(ok.assign(obj=[{"opt": "x"}, {"k": 1.0}]), s)
    with pytest.raises(SchemaEnforcementError, match=r"unknown key\(s\) \['zzz'\]"):
        check(ok.assign(obj=[{"k": 1.0, "zzz": 1}, {"k": 1.0}]), s)
    with pytest.raises(SchemaEnforcementError, match="column 'm'.*not a dict"):
        check(ok.assign(m=[["a"], {}]), s)


def test_tensors_dtype_and_shape():
    s = ModelSignature(Schema([TensorSpec(np.dtype("float32"), (-1, 3))]))
    arr = np.zeros((2, 3), dtype=np.float32)
    assert check(arr, s) is arr
    with pytest.raises(SchemaEnforcementError) as info:
        check(np.zeros((2, 4), dtype=np.float32), s)
    assert str(info.value) == (
        "the tensor input: expected float32 tensor of shape (-1, 3), got shape (2, 4)"
    )
    with pytest.raises(SchemaEnforcementError, match="expected float32 .* got dtype float64"):
        check(np.zeros((2, 3)), s)
    with pytest.raises(SchemaEnforcementError, match="expected a numpy array"):
        check([[1.0, 2.0, 3.0]], s)
    frame = pd.DataFrame({"a": [1.0], "b": [2.0], "c": [3.0]}).astype("float32")
    assert check(frame, s).shape == (1, 3)


class _ArrayProtocol:
    """An object that is not an ndarray but converts to one, as a torch, TensorFlow or JAX
    tensor does (the heavy flavor tests pass those libraries' own tensors)."""

    def __init__(self, values, error=None):
        self.values, self.error = values, error

    def __array__(self, dtype=None, copy=None):
        if self.error:
            raise RuntimeError(self.error)
        return np.asarray(self.values, dtype=dtype)


def test_a_tensor_of_another_library_is_checked_as_its_array():
    s = ModelSignature(Schema([TensorSpec(np.dtype("float32"), (-1, 3))]))
    out = check(_ArrayProtocol(np.ones((2, 3), dtype=np.float32)), s)
    assert isinstance(out, np.ndarray) and out.shape == (2, 3)
    with pytest.raises(SchemaEnforcementError, match="got shape \\(2, 4\\)"):
        check(_ArrayProtocol(np.ones((2, 4), dtype=np.float32)), s)
    with pytest.raises(SchemaEnforcementError) as info:
        check(_ArrayProtocol(None, error="needs grad"), s)
    assert str(info.value) == (
        "the tensor input: the _ArrayProtocol cannot be read as a numpy array (needs grad)"
    )
    named = ModelSignature(Schema([TensorSpec(np.dtype("int64"), (-1,), "ids")]))
    assert check({"ids": _ArrayProtocol(np.array([1, 2]))}, named)["ids"].tolist() == [1, 2]


def test_named_tensors():
    s = ModelSignature(
        Schema(
            [
                TensorSpec(np.dtype("int64"), (-1,), "ids"),
                TensorSpec(np.dtype("float64"), (-1, 2), "emb"),
            ]
        )
    )
    data = {"ids": np.array([1, 2]), "emb": np.zeros((2, 2))}
    assert check(data, s)["emb"].shape == (2, 2)
    with pytest.raises(SchemaEnforcementError, match="tensor 'emb'.*got list"):
        check({"ids": np.array([1]), "emb": [[1.0, 2.0]]}, s)
    with pytest.raises(
        SchemaEnforcementError, match="required input tensor 'emb' \\(float64 tensor of shape"
    ):
        check({"ids": np.array([1])}, s)
    frame = pd.DataFrame({"ids": [1, 2], "emb": [[1.0, 2.0], [3.0, 4.0]]})
    out = check(frame, s)
    assert out["emb"].dtype == np.float64 and out["emb"].shape == (2, 2)


# --- params -------------------------------------------------------------------------------------

PARAMS = ParamSchema(
    [
        ParamSpec("temperature", "double", 0.5),
        ParamSpec("top_k", "long", 3),
        ParamSpec("stop", "string", ["\n"], shape=(-1,)),
        ParamSpec("when", "datetime", dt.datetime(2020, 1, 1)),
    ]
)


def test_missing_params_take_defaults_and_given_ones_are_converted():
    out = enforce_params({"temperature": 1, "stop": ["a"], "when": "2021-02-03"}, PARAMS)
    assert out == {
        "temperature": 1.0,
        "top_k": 3,
        "stop": ["a"],
        "when": dt.date(2021, 2, 3),  # a date string gives a date, as in MLflow
    }
    assert isinstance(out["temperature"], float)
    assert enforce_params({"when": "2021-02-03T04:05"}, PARAMS)["when"] == dt.datetime(
        2021, 2, 3, 4, 5
    )
    assert enforce_params(None, PARAMS)["top_k"] == 3


@pytest.mark.parametrize(
    "params, message",
    [
        ({"top_k": 2.5}, "param 'top_k': expected long, got float 2.5"),
        ({"top_k": "3"}, "param 'top_k': expected long, got str '3'"),
        ({"stop": "x"}, "param 'stop': expected string list, got str 'x', not a 1-D list"),
        ({"when": "soon"}, "param 'when': expected datetime, got str 'soon'"),
        ([1], "params must be a dictionary, got list"),
    ],
)
def test_bad_params_are_refused(params, message):
    with pytest.raises(SchemaEnforcementError) as info:
        enforce_params(params, PARAMS)
    assert message in str(info.value)


def test_undeclared_params_are_ignored_with_one_warning_naming_them(monkeypatch):
    monkeypatch.delenv("ENVKIT_STRICT_PARAMS", raising=False)
    with pytest.warns(IgnoredParamsWarning) as record:
        out = enforce_params({"temp": 1.0, "seed": 2, "top_k": 4}, PARAMS)
    assert len(record) == 1
    assert "params 'temp', 'seed' are not in the model signature and are ignored" in str(
        record[0].message
    )
    assert "temp" not in out and "seed" not in out and out["top_k"] == 4


def test_strict_params_refuses_undeclared_params(monkeypatch):
    message = "param 'temp' is not in the model signature; the model accepts: "
    with pytest.raises(SchemaEnforcementError, match=message):
        enforce_params({"temp": 1.0}, PARAMS, strict=True)
    monkeypatch.setenv("ENVKIT_STRICT_PARAMS", "1")
    with pytest.raises(SchemaEnforcementError, match=message):
        enforce_params({"temp": 1.0}, PARAMS)
    with pytest.warns(IgnoredParamsWarning):  # the explicit argument wins over the variable
        enforce_params({"temp": 1.0}, PARAMS, strict=False)


def test_params_without_a_params_schema(monkeypatch):
    monkeypatch.delenv("ENVKIT_STRICT_PARAMS", raising=False)
    s = sig(ColSpec("string"))
    assert validate_prediction_input(["x"], None, s)[1] is None
    assert validate_prediction_input(["x"], {}, s)[1] == {}
    with pytest.warns(IgnoredParamsWarning, match="'k' are not in the model signature"):
        assert validate_prediction_input(["x"], {"k": 1}, s)[1] is None
    with pytest.raises(SchemaEnforcementError, match="the model accepts: no params"):
        validate_prediction_input(["x"], {"k": 1}, s, strict_params=True)


def test_signature_from_type_hints_checks_params_only_unless_given_the_hint():
    s = ModelSignature(Schema([ColSpec("string")]), params=PARAMS)
    s._is_signature_from_type_hint = True
    data, params = validate_prediction_input(["a", "b"], {"top_k": 1}, s)
    assert data == ["a", "b"] and params["top_k"] == 1 and params["temperature"] == 0.5
    frame = pd.DataFrame({"text": ["a", "b"]})
    data, _ = validate_prediction_input(frame, None, s, type_hint=list[str])
    assert data == ["a", "b"]
    with pytest.raises(SchemaEnforcementError, match=r"item 1: expected str, got int 2"):
        validate_prediction_input(["a", 2], None, s, type_hint=list[str])


def test_type_from_example_gets_data_back_in_the_example_form():
    s = sig(ColSpec("string"))
    s._is_type_hint_from_example = True
    data, _ = validate_prediction_input(["a", "b"], None, s, input_example=["x"])
    assert data == ["a", "b"]
    named = sig(ColSpec("long", "n"))
    named._is_type_hint_from_example = True
    series = pd.Series([1, 2], name="n")
    data, _ = validate_prediction_input(series, None, named, input_example=series)
    assert isinstance(data, pd.Series) and data.name == "n"
    rows, _ = validate_prediction_input([{"n": 1}], None, named, input_example=[{"n": 5}])
    assert rows == [{"n": 1}]


def test_stream_input_is_a_single_value():
    s = sig(ColSpec("string"))
    assert to_stream_input(check("hello", s)) == "hello"
    chat = sig(ColSpec(Array(Map("string")), "messages"))
    enforced = check({"messages": [{"role": "user"}]}, chat)
    assert to_stream_input(enforced) == {"messages": [{"role": "user"}]}
    with pytest.raises(SchemaEnforcementError, match="single input, got 2 rows"):
        to_stream_input(check(["a", "b"], s))


def test_a_missing_named_tensor_is_named_with_its_dtype_and_shape():
    sig = infer_signature({"a": np.zeros((2, 3), dtype="int64"), "b": np.zeros(2, "float32")})
    with pytest.raises(SchemaEnforcementError) as info:
        validate_prediction_input({"a": np.zeros((2, 3), dtype="int64")}, None, sig)
    assert str(info.value) == (
        "required input tensor 'b' (float32 tensor of shape (-1,)) is missing; "
        "the input has tensors: 'a'"
    )


def test_every_bad_column_and_param_is_named_in_one_message():
    sig = infer_signature(pd.DataFrame({"i": [1], "s": ["a"]}), params={"k": 1, "t": "x"})
    with pytest.raises(SchemaEnforcementError) as info:
        validate_prediction_input(pd.DataFrame({"i": ["x"], "s": [3]}), None, sig)
    assert str(info.value) == (
        "2 columns do not match the model signature: column 'i': expected long, got str "
        "values; column 's': expected string, got int64 values"
    )
    with pytest.raises(SchemaEnforcementError) as info:
        validate_prediction_input(pd.DataFrame({"i": [1], "s": ["a"]}), {"k": "z", "t": 5}, sig)
    assert str(info.value).startswith("2 params do not match the model signature: param 'k': ")
    assert "; param 't': expected string, got int 5" in str(info.value)
