"""infer_signature for each kind of data, and signatures from predict type hints."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pandas as pd
import pydantic
import pytest

from envkit.errors import SignatureError
from envkit.models import ModelSignature, infer_signature
from envkit.models.schema import (
    AnyType,
    Array,
    ColSpec,
    DataType,
    Map,
    Object,
    ParamSchema,
    ParamSpec,
    Property,
    Schema,
    TensorSpec,
)
from envkit.models.signature import infer_signature_from_type_hints
from envkit.models.type_hints import TypeFromExample
from envkit.pyfunc import PythonModel


def test_dataframe_column_types():
    df = pd.DataFrame(
        {
            "b": [True, False],
            "i8": np.array([1, 2], dtype=np.int8),
            "i32": np.array([1, 2], dtype=np.int32),
            "i64": [1, 2],
            "u32": np.array([1, 2], dtype=np.uint32),
            "f32": np.array([1, 2], dtype=np.float32),
            "f64": [0.5, 1.5],
            "s": ["a", "b"],
            "bin": [b"a", b"b"],
            "ts": pd.to_datetime(["2020-01-01", "2020-01-02"]),
            "nullable_int": pd.array([1, None], dtype="Int64"),
            "nullable_bool": pd.array([True, None], dtype="boolean"),
            "nullable_str": pd.array(["a", None], dtype="string"),
            "maybe_float": [1.0, np.nan],
            "maybe_str": ["a", None],
            "lists": [[1, 2], []],
            "dicts": [{"k": 1.0}, {"k": 2.0, "extra": "x"}],
        }
    )
    types = {c.name: (c.type, c.required) for c in infer_signature(df).inputs}
    assert types == {
        "b": (DataType.boolean, True),
        "i8": (DataType.integer, True),
        "i32": (DataType.integer, True),
        "i64": (DataType.long, True),
        "u32": (DataType.long, True),
        "f32": (DataType.float, True),
        "f64": (DataType.double, True),
        "s": (DataType.string, True),
        "bin": (DataType.binary, True),
        "ts": (DataType.datetime, True),
        "nullable_int": (DataType.long, False),
        "nullable_bool": (DataType.boolean, False),
        "nullable_str": (DataType.string, False),
        "maybe_float": (DataType.double, False),
        "maybe_str": (DataType.string, False),
        "lists": (Array(DataType.long), True),
        "dicts": (
            Object(
                [Property("extra", DataType.string, required=False), Property("k", DataType.double)]
            ),
            True,
        ),
    }


def test_series_and_output():
    sig = infer_signature(pd.Series([1.0, 2.0], name="x"), np.array([0, 1]))
    assert sig.inputs == Schema([ColSpec(DataType.double, "x")])
    assert sig.outputs == Schema([TensorSpec(np.dtype("int64"), (-1,))])
    assert sig.to_dict()["outputs"] == (
        '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]'
    )


def test_tensors_get_a_variable_first_dimension():
    sig = infer_signature(np.zeros((5, 28, 28), dtype=np.float32))
    assert sig.inputs.inputs == [TensorSpec(np.dtype("float32"), (-1, 28, 28))]
    named = infer_signature({"img": np.zeros((2, 3)), "label": np.array(["a", "b"])})
    assert named.inputs.inputs == [
        TensorSpec(np.dtype("float64"), (-1, 3), "img"),
        TensorSpec(np.dtype("str"), (-1,), "label"),
    ]


def test_json_like_inputs():
    assert infer_signature(["a", "b"]).inputs == Schema([ColSpec(DataType.string)])
    assert infer_signature("hello").inputs == Schema([ColSpec(DataType.string)])
    assert infer_signature([]).inputs == Schema([ColSpec(DataType.string)])
    rows = infer_signature([{"q": "x", "n": 1}, {"q": "y", "n": None}, {"q": "z"}])
    assert rows.inputs == Schema(
        [ColSpec(DataType.string, "q"), ColSpec(DataType.long, "n", required=False)]
    )
    nested = infer_signature({"text": "hi", "ids": ["a"], "opts": {"k": True}, "none": None})
    assert nested.inputs == Schema(
        [
            ColSpec(DataType.string, "text"),
            ColSpec(Array(DataType.string), "ids"),
            ColSpec(Object([Property("k", DataType.boolean)]), "opts"),
            ColSpec(AnyType(), "none", required=False),
        ]
    )
    assert infer_signature(dt.datetime(2020, 1, 1)).inputs == Schema([ColSpec("datetime")])


def test_params_types_shapes_and_defaults():
    sig = infer_signature(
        ["x"],
        params={
            "temperature": 0.2,
            "top_k": 5,
            "stop": ["a", "b"],
            "flag": True,
            "when": dt.datetime(2024, 1, 2),
            "opts": {"a": 1},
        },
    )
    assert sig.params == ParamSchema(
        [
            ParamSpec("temperature", DataType.double, 0.2),
            ParamSpec("top_k", DataType.long, 5),
            ParamSpec("stop", DataType.string, ["a", "b"], shape=(-1,)),
            ParamSpec("flag", DataType.boolean, True),
            ParamSpec("when", DataType.datetime, dt.datetime(2024, 1, 2)),
            ParamSpec("opts", Object([Property("a", DataType.long)]), {"a": 1}),
        ]
    )
    with pytest.raises(SignatureError, match=r"'bad'.*2-d"):
        infer_signature(params={"bad": [[1, 2]]})
    with pytest.raises(SignatureError, match="'none'"):
        infer_signature(params={"none": None})


def test_unsupported_data_falls_back_to_any_with_a_warning():
    with pytest.warns(UserWarning, match="cannot infer the inputs schema"):
        sig = infer_signature(object())
    assert sig.inputs == Schema([ColSpec(AnyType())])
    with pytest.warns(UserWarning, match="must have one type"):
        infer_signature([1, "a"])


class Item(pydantic.BaseModel):
    name: str
    score: float
    tags: list[str] = []
    note: Optional[str] = None  # noqa: UP045 (pydantic evaluates it on Python 3.9)


def test_pydantic_instances_cannot_be_inferred():
    with pytest.raises(SignatureError, match="pydantic type hint"):
        infer_signature([Item(name="a", score=1.0)])


@dataclass
class Row:
    x: int
    y: Optional[list[float]] = None  # noqa: UP045 (evaluated on Python 3.9)


def test_dataclass_inputs():
    assert infer_signature(Row).inputs == Schema(
        [ColSpec(DataType.long, "x"), ColSpec(Array(DataType.float), "y", required=False)]
    )
    assert ModelSignature(inputs=Row(1)).inputs.input_names() == ["x", "y"]


def test_signature_requires_something_and_compares():
    with pytest.raises(SignatureError, match="at least one"):
        ModelSignature()
    a = infer_signature(pd.DataFrame({"a": [1]}), [1])
    b = ModelSignature.from_dict(a.to_dict())
    assert a == b and a._is_signature_from_type_hint is False
    assert "inputs:" in repr(a)


# --- type hints ---------------------------------------------------------------------------------


class ListStr(PythonModel):
    def predict(self, context, model_input: list[str], params=None) -> list[str]:
        return model_input


class ListDict(PythonModel):
    def predict(self, model_input: list[dict[str, float]]) -> list[float]:
        return [sum(d.values()) for d in model_input]


class Pydantic(PythonModel):
    def predict(self, context, model_input: list[Item], params=None) -> list[dict[str, Any]]:
        return [i.model_dump() for i in model_input]


class NoHints(PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


class FrameHint(PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return model_input


class FromExample(PythonModel):
    def predict(self, context, model_input: TypeFromExample, params=None):
        return model_input


class AnyHint(PythonModel):
    def predict(self, context, model_input: Any, params=None) -> Any:
        return model_input


class BareList(PythonModel):
    def predict(self, context, model_input: list, params=None):
        return model_input


class NotAList(PythonModel):
    def predict(self, context, model_input: str, params=None):
        return model_input


class IntKeys(PythonModel):
    def predict(self, context, model_input: list[dict[int, str]], params=None):
        return model_input


def test_signature_from_list_of_str_hint():
    sig = infer_signature_from_type_hints(ListStr())
    assert sig.to_dict() == {
        "inputs": '[{"type": "string", "required": true}]',
        "outputs": '[{"type": "string", "required": true}]',
        "params": None,
    }
    assert sig._is_signature_from_type_hint is True


def test_signature_from_list_of_dict_hint_without_context():
    sig = infer_signature_from_type_hints(ListDict())
    assert sig.inputs == Schema([ColSpec(Map(DataType.double))])
    assert sig.outputs == Schema([ColSpec(DataType.double)])


def test_signature_from_pydantic_hint():
    sig = infer_signature_from_type_hints(Pydantic())
    assert sig.inputs == Schema(
        [
            ColSpec(
                Object(
                    [
                        Property("name", DataType.string),
                        Property("note", DataType.string, required=False),
                        Property("score", DataType.double),
                        Property("tags", Array(DataType.string)),
                    ]
                )
            )
        ]
    )
    assert sig.outputs == Schema([ColSpec(Map(AnyType()))])


def test_params_come_from_an_example_tuple():
    sig = infer_signature_from_type_hints(ListStr(), (["a"], {"temperature": 0.5}))
    assert sig.params == ParamSchema([ParamSpec("temperature", "double", 0.5)])


@pytest.mark.parametrize("model", [NoHints(), FrameHint(), FromExample(), AnyHint()])
def test_hints_that_say_nothing_give_no_signature(model):
    assert infer_signature_from_type_hints(model) is None


def test_unsupported_hint_warns_and_gives_no_signature():
    with pytest.warns(UserWarning, match=r"must be list\[\.\.\.\].*list\[str\]"):
        assert infer_signature_from_type_hints(NotAList()) is None


@pytest.mark.parametrize(
    "model, message", [(BareList(), "element type"), (IntKeys(), "keys must be str")]
)
def test_malformed_hints_are_errors(model, message):
    with pytest.raises(SignatureError, match=message):
        infer_signature_from_type_hints(model)


def test_plain_function_hints():
    def predict(model_input: list[int]) -> list[int]:
        return model_input

    sig = infer_signature_from_type_hints(predict)
    assert sig.inputs == Schema([ColSpec(DataType.long)])
