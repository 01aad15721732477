"""Schema types: MLflow's JSON both ways, validation of specs, merging."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from interop_cases import signature_json_cases

from envkit.errors import ModelFormatError, SignatureError
from envkit.models.model import Model
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
from envkit.models.signature import ModelSignature

# Files MLflow 3.17.2 wrote (tests/data/mlflow-3.17.2/README.md says how they were made)
SAMPLES = Path(__file__).resolve().parents[2] / "data" / "mlflow-3.17.2"
SAMPLE_DIRS = sorted(p for p in SAMPLES.iterdir() if (p / "MLmodel").is_file())


@pytest.mark.parametrize("sample", SAMPLE_DIRS, ids=lambda p: p.name)
def test_mlflow_sample_signatures_round_trip_byte_identical(sample):
    raw = yaml.safe_load((sample / "MLmodel").read_text())
    model = Model.load(sample)
    if "signature" not in raw:
        assert model.signature is None
        return
    assert model.signature.to_dict() == raw["signature"]
    again = yaml.safe_load(model.to_yaml())
    assert again["signature"] == raw["signature"]


def test_sample_iris_signature_types():
    sig = Model.load(SAMPLES / "sk_example").signature
    assert sig.inputs.input_names() == [
        "sepal length (cm)",
        "sepal width (cm)",
        "petal length (cm)",
        "petal width (cm)",
    ]
    assert sig.inputs.input_types() == [DataType.double] * 4
    assert sig.outputs == Schema([ColSpec(DataType.long)])
    assert sig.params is None


@pytest.mark.parametrize("case", signature_json_cases(), ids=range(len(signature_json_cases())))
def test_signature_json_round_trips_exactly(case):
    sig = ModelSignature.from_dict(case)
    assert sig.to_dict() == case
    assert ModelSignature.from_dict(sig.to_dict()) == sig


def test_every_type_parses_to_the_right_objects():
    sig = ModelSignature.from_dict(signature_json_cases()[0])
    by_name = sig.inputs.input_dict()
    assert by_name["b"].type is DataType.boolean
    assert by_name["l"].required is False
    assert by_name["arr"].type == Array(DataType.string)
    assert by_name["obj"].type == Object(
        [Property("a", DataType.long), Property("b", Array(DataType.double), required=False)]
    )
    assert by_name["m"].type == Map(DataType.double)
    assert by_name["anything"].type == AnyType()
    params = {p.name: p for p in sig.params}
    assert params["when"].default == dt.datetime(2020, 1, 2)
    assert params["k"].shape == (-1,)
    assert params["o"].dtype == Object([Property("a", DataType.long)])

    tensors = ModelSignature.from_dict(signature_json_cases()[1])
    x, y = tensors.inputs.inputs
    assert x == TensorSpec(np.dtype("float32"), (-1, 28, 28), "x")
    assert y.type == np.dtype("str")
    assert tensors.inputs.is_tensor_spec()


def test_colspec_json_matches_mlflow_key_order():
    assert ColSpec("double", "x").to_dict() == {"type": "double", "name": "x", "required": True}
    assert json.dumps(ColSpec(Array("long"), required=True).to_dict()) == (
        '{"type": "array", "items": {"type": "long"}, "required": true}'
    )
    spec = TensorSpec(np.dtype("float64"), (-1, 4), "t")
    assert json.dumps(spec.to_dict()) == (
        '{"name": "t", "type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 4]}}'
    )


def test_legacy_optional_key_and_missing_required():
    schema = Schema.from_json(
        '[{"type": "string", "name": "a", "optional": true}, {"type": "long", "name": "b"}]'
    )
    assert schema.optional_input_names() == ["a"]
    assert schema.required_input_names() == ["b"]


def test_object_properties_are_sorted_and_merged():
    obj = Object([Property("z", "long"), Property("a", "string")])
    assert [p.name for p in obj.properties] == ["a", "z"]
    merged = Object([Property("a", "string"), Property("b", "double")])._merge(
        Object([Property("a", "string"), Property("c", "boolean")])
    )
    assert merged == Object(
        [
            Property("a", "string"),
            Property("b", "double", required=False),
            Property("c", "boolean", required=False),
        ]
    )
    assert Array("long")._merge(AnyType()) == Array("long")
    assert AnyType()._merge(Map("double")) == Map("double")
    with pytest.raises(SignatureError, match="incompatible"):
        Property("a", "long")._merge(Property("a", "string"))


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Schema([]), "at least one"),
        (lambda: Schema([ColSpec("long", "a"), ColSpec("long")]), "named and unnamed"),
        (
            lambda: Schema([ColSpec("long", "a"), TensorSpec(np.dtype("int64"), (-1,), "b")]),
            "ColSpec and TensorSpec",
        ),
        (
            lambda: Schema(
                [TensorSpec(np.dtype("int64"), (-1,)), TensorSpec(np.dtype("int64"), (-1,))]
            ),
            "must name",
        ),
        (lambda: Schema([ColSpec("long", required=False)]), "unnamed columns cannot be optional"),
        (lambda: Schema([ColSpec("long", "a"), ColSpec("double", "a")]), "duplicated"),
        (lambda: ColSpec("decimal", "a"), "unsupported column type 'decimal'"),
        (lambda: Object([]), "at least one property"),
        (lambda: TensorSpec(np.dtype("U5"), (-1,)), "size information"),
        (lambda: ParamSpec("p", "binary", b"x"), "binary params"),
        (lambda: ParamSpec("p", "long", "seven"), "default of param 'p': expected long"),
        (lambda: ParamSpec("p", "long", 1, shape=(-1,)), "not a 1-D list"),
        (lambda: ParamSchema([ParamSpec("p", "long", 1), ParamSpec("p", "long", 2)]), "dupl"),
    ],
)
def test_invalid_specs_are_refused_with_a_reason(build, message):
    with pytest.raises(SignatureError, match=message):
        build()


def test_param_spec_serialization():
    spec = ParamSpec("when", "datetime", "2021-05-06T07:08:09")
    assert spec.default == dt.datetime(2021, 5, 6, 7, 8, 9)
    assert spec.to_dict() == {
        "name": "when",
        "default": "2021-05-06T07:08:09",
        "shape": None,
        "type": "datetime",
    }
    listed = ParamSpec("ks", DataType.long, [1, 2], shape=(-1,))
    assert ParamSchema([listed]).to_json() == (
        '[{"name": "ks", "default": [1, 2], "shape": [-1], "type": "long"}]'
    )
    # MLflow 2.x wrote "dtype" instead of "type"
    old = ParamSchema.from_json('[{"name": "t", "dtype": "double", "default": 1}]')
    assert old.params[0].default == 1.0 and isinstance(old.params[0].default, float)


def test_malformed_signature_in_mlmodel_is_a_format_error(tmp_path):
    (tmp_path / "MLmodel").write_text(
        yaml.safe_dump(
            {
                "flavors": {"python_function": {"loader_module": "x"}},
                "signature": {"inputs": '[{"type": "complex128", "name": "a"}]'},
            }
        )
    )
    with pytest.raises(ModelFormatError, match=r"signature .* cannot be read.*complex128"):
        _ = Model.load(tmp_path).signature
    (tmp_path / "MLmodel").write_text(
        yaml.safe_dump({"flavors": {"f": {}}, "signature": {"inputs": "[not json"}})
    )
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        _ = Model.load(tmp_path).signature


def test_schema_helpers():
    schema = Schema([ColSpec("long", "a"), ColSpec("string", "b", required=False)])
    assert schema.has_input_names() and not schema.is_tensor_spec()
    assert schema.input_types_dict() == {"a": DataType.long, "b": DataType.string}
    assert schema.numpy_types() == [np.dtype("int64"), np.dtype("str")]
    assert schema.pandas_types() == [np.dtype("int64"), object]
    assert len(schema) == 2 and [c.name for c in schema] == ["a", "b"]
    assert DataType.check_type(DataType.long, 3) and not DataType.check_type(DataType.long, 3.0)
    assert DataType.from_numpy_type(np.dtype("float32")) is DataType.float
