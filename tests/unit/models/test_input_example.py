"""input_example.json / serving_input_example.json: MLflow's bytes, and reading them back."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.sparse import csc_matrix, csr_matrix

from envkit.errors import ModelFormatError, UnsafePathError, UsageError
from envkit.models import infer_signature
from envkit.models.input_example import (
    load_input_example,
    load_input_example_params,
    load_serving_input_example,
    save_input_example,
    to_serving_input,
)
from envkit.models.model import Model

# Files MLflow 3.17.2 wrote (tests/data/mlflow-3.17.2/README.md says how they were made)
SAMPLES = Path(__file__).resolve().parents[2] / "data" / "mlflow-3.17.2"


def _same_files(model_dir: Path, sample: str) -> None:
    for name in ("input_example.json", "serving_input_example.json"):
        assert (model_dir / name).read_bytes() == (SAMPLES / sample / name).read_bytes(), name


def _sample_info(sample: str) -> dict:
    return yaml.safe_load((SAMPLES / sample / "MLmodel").read_text())["saved_input_example_info"]


def test_dataframe_example_is_byte_identical_to_mlflow(tmp_path):
    info = save_input_example(tmp_path, pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}))
    assert info == _sample_info("pyfunc_env")
    _same_files(tmp_path, "pyfunc_env")


def test_iris_example_is_byte_identical_to_mlflow(tmp_path, iris):
    X, _ = iris
    info = save_input_example(tmp_path, X.head(3))
    assert info == _sample_info("sk_example")
    _same_files(tmp_path, "sk_example")


def test_string_example_is_byte_identical_to_mlflow(tmp_path):
    info = save_input_example(tmp_path, "hello")
    assert info == _sample_info("pyfunc_stream")
    _same_files(tmp_path, "pyfunc_stream")


def test_mlflow_sample_examples_load(iris):
    X, _ = iris
    for sample in ("sk_example", "pyfunc_env"):
        model = Model.load(SAMPLES / sample)
        loaded = load_input_example(SAMPLES / sample, model.saved_input_example_info)
        assert isinstance(loaded, pd.DataFrame)
    iris_loaded = load_input_example(SAMPLES / "sk_example", _sample_info("sk_example"))
    pd.testing.assert_frame_equal(iris_loaded, X.head(3))
    assert load_input_example(SAMPLES / "pyfunc_stream", _sample_info("pyfunc_stream")) == "hello"
    serving = load_serving_input_example(SAMPLES / "pyfunc_stream", _sample_info("pyfunc_stream"))
    assert json.loads(serving) == {"inputs": "hello"}


def test_missing_values_are_written_as_null(tmp_path):
    df = pd.DataFrame({"f": [1.5, np.nan], "s": ["a", None], "i": pd.array([1, None], "Int64")})
    save_input_example(tmp_path, df)
    text = (tmp_path / "input_example.json").read_text()
    assert text == '{"columns": ["f", "s", "i"], "data": [[1.5, "a", 1], [null, null, null]]}'


def test_types_of_examples(tmp_path):
    cases = {
        "dataframe": pd.DataFrame({"a": [1]}),
        "ndarray": np.arange(4).reshape(2, 2),
        "json_object": {"q": "x"},
        "sparse_matrix_csr": csr_matrix(np.eye(2)),
        "sparse_matrix_csc": csc_matrix(np.eye(2)),
    }
    for expected, example in cases.items():
        target = tmp_path / expected
        target.mkdir()
        assert save_input_example(target, example)["type"] == expected
    values = pd.DataFrame(np.eye(2))
    assert save_input_example(tmp_path, values)["pandas_orient"] == "values"
    assert json.loads((tmp_path / "input_example.json").read_text()) == {
        "data": [[1.0, 0.0], [0.0, 1.0]]
    }


def _round_trip(tmp_path: Path, example, signature=True):
    info = save_input_example(tmp_path, example)
    data = example[0] if isinstance(example, tuple) else example
    schema = infer_signature(data).inputs if signature else None
    return info, load_input_example(tmp_path, info, schema)


def test_dataframe_round_trip_with_schema(tmp_path):
    df = pd.DataFrame(
        {
            "a": [1, 2],
            "f": np.array([0.5, 1.5], dtype=np.float32),
            "when": pd.to_datetime(["2020-01-01 00:00:00", "2021-06-07 08:09:10"]).as_unit("ns"),
            "raw": [b"\x00\xff", b"abc"],
            "tags": [["x"], []],
        }
    )
    _, loaded = _round_trip(tmp_path, df)
    pd.testing.assert_frame_equal(loaded, df, check_dtype=False)
    assert loaded["when"].dtype == np.dtype("datetime64[ns]")
    assert loaded["raw"].tolist() == [b"\x00\xff", b"abc"]
    assert loaded["f"].dtype == np.float32


def test_ndarray_and_dict_of_arrays_round_trip(tmp_path):
    arr = np.array([[1.0, np.nan], [2.0, 3.0]], dtype=np.float32)
    _, loaded = _round_trip(tmp_path, arr)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, arr)
    named = {"x": np.zeros((2, 3)), "y": np.array(["a", "b"])}
    (tmp_path / "named").mkdir()
    _, loaded = _round_trip(tmp_path / "named", named)
    assert set(loaded) == {"x", "y"} and loaded["x"].shape == (2, 3)


def test_json_examples_round_trip(tmp_path):
    for i, example in enumerate(
        [["a", "b"], [{"a": 1}, {"a": 2, "b": "x"}], {"q": "x", "n": [1, 2]}, 3.5, True]
    ):
        target = tmp_path / str(i)
        target.mkdir()
        info, loaded = _round_trip(target, example, signature=False)
        assert info["type"] == "json_object"
        assert loaded == example


def test_sparse_round_trip(tmp_path):
    matrix = csr_matrix(np.array([[0.0, 1.5], [2.0, 0.0]]))
    info, loaded = _round_trip(tmp_path, matrix, signature=False)
    assert isinstance(loaded, csr_matrix)
    np.testing.assert_array_equal(loaded.toarray(), matrix.toarray())
    assert json.loads(load_serving_input_example(tmp_path, info)) == {
        "inputs": [[0.0, 1.5], [2.0, 0.0]]
    }


def test_examples_with_params(tmp_path):
    example = (pd.DataFrame({"q": ["hi"]}), {"temperature": 0.5, "stop": ["x"]})
    info = save_input_example(tmp_path, example)
    assert info["params"] == "true"
    saved = json.loads((tmp_path / "input_example.json").read_text())
    assert saved == {
        "inputs": {"columns": ["q"], "data": [["hi"]]},
        "params": {"temperature": 0.5, "stop": ["x"]},
    }
    serving = json.loads(load_serving_input_example(tmp_path, info))
    assert serving["params"] == {"temperature": 0.5, "stop": ["x"]}
    assert "dataframe_split" in serving
    assert load_input_example(tmp_path, info, None)["q"].tolist() == ["hi"]
    assert load_input_example_params(tmp_path, info) == {"temperature": 0.5, "stop": ["x"]}


def test_llm_payloads_are_not_wrapped():
    serving = json.loads(to_serving_input(({"messages": [{"role": "user"}]}, {"t": 0.1})))
    assert serving == {"messages": [{"role": "user"}], "t": 0.1}


def test_binary_and_datetime_scalars():
    assert json.loads(to_serving_input(b"\x00\x01")) == {"inputs": "AAE=\n"}
    assert json.loads(to_serving_input(dt.datetime(2020, 1, 2, 3))) == {
        "inputs": "2020-01-02T03:00:00"
    }


def test_schema_is_read_from_mlmodel_by_default(tmp_path):
    df = pd.DataFrame({"when": pd.to_datetime(["2020-01-01"]).as_unit("ns")})
    Model(flavors={"python_function": {}}, signature=infer_signature(df)).save(tmp_path)
    info = save_input_example(tmp_path, df)
    assert load_input_example(tmp_path, info)["when"].dtype == np.dtype("datetime64[ns]")
    assert load_input_example(tmp_path, info, None)["when"].dtype != np.dtype("datetime64[ns]")


@pytest.mark.parametrize(
    "example, message",
    [
        (object(), "unsupported input example type object"),
        ({"a": np.zeros(2), "b": [1]}, "only numpy arrays"),
        ([np.zeros(2)], "numpy arrays inside a list"),
        ((["x"], {"bad": [[1, 2]]}), "invalid params in the input example"),
    ],
)
def test_bad_examples_are_refused(tmp_path, example, message):
    with pytest.raises(UsageError, match=message):
        save_input_example(tmp_path, example)


def test_bad_saved_info_is_refused(tmp_path):
    save_input_example(tmp_path, ["x"])
    with pytest.raises(UnsafePathError):
        load_input_example(tmp_path, {"artifact_path": "../secret.json", "type": "json_object"})
    with pytest.raises(ModelFormatError, match="unsupported input example type 'pickle'"):
        load_input_example(tmp_path, {"artifact_path": "input_example.json", "type": "pickle"})
    with pytest.raises(ModelFormatError, match="missing"):
        load_input_example(tmp_path, {"artifact_path": "nope.json", "type": "json_object"})
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ModelFormatError, match="cannot be read"):
        load_input_example(tmp_path, {"artifact_path": "broken.json", "type": "json_object"})
    assert load_input_example(tmp_path, None) is None
    assert load_serving_input_example(tmp_path, {"type": "json_object"}) is None


@pytest.mark.capture  # the capture process predicts on the example too
def test_an_example_its_inferred_signature_refuses_is_saved_without_a_signature(tmp_path):
    """Timezone-aware datetimes: inferred as datetime, which enforcement (as MLflow's) refuses.
    As MLflow does, the model gets no signature, and it still predicts on its own example."""
    import warnings

    import envkit.pyfunc

    class Identity(envkit.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    frame = pd.DataFrame({"t": pd.to_datetime(["2020-01-01"]).tz_localize("UTC")})
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        envkit.pyfunc.save_model(tmp_path / "m", python_model=Identity(), input_example=frame)
    messages = [str(w.message) for w in record]
    assert len(messages) == 1, messages
    assert "does not accept it (column 't': expected datetime, got timezone-aware" in messages[0]
    assert "saved without a signature" in messages[0]
    assert "signature" not in yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())
    loaded = envkit.pyfunc.load_model(tmp_path / "m")
    pd.testing.assert_frame_equal(loaded.predict(frame), frame)
    capture = json.loads((tmp_path / "m" / "requirements.provenance.json").read_text())["capture"]
    assert capture["predicted"] is True


def test_an_mlflow_2_tensor_example_in_tf_serving_form_is_read_as_the_tensor(tmp_path):
    """MLflow 2.x writes an ndarray example as ``{"inputs": [...]}`` with ``format:
    tf-serving`` (MLflow 3 writes the bare list); both read as the same array."""
    from envkit.models.input_example import load_input_example
    from envkit.models.schema import Schema, TensorSpec
    from envkit.models.signature import ModelSignature

    schema = Schema([TensorSpec(np.dtype("float64"), (-1, 2))])
    signature = ModelSignature(inputs=schema, outputs=schema)
    Model(signature=signature).save(tmp_path)
    (tmp_path / "input_example.json").write_text('{"inputs": [[1.0, 2.0], [3.0, 4.0]]}')
    info = {"artifact_path": "input_example.json", "type": "ndarray", "format": "tf-serving"}
    array = load_input_example(tmp_path, info)
    assert isinstance(array, np.ndarray) and array.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    (tmp_path / "input_example.json").write_text("[[1.0, 2.0], [3.0, 4.0]]")
    del info["format"]
    assert load_input_example(tmp_path, info).tolist() == array.tolist()


def test_an_installed_mlflow_that_cannot_import_is_not_called_missing(tmp_path, monkeypatch):
    """A real package named mlflow whose own import fails (as MLflow 2.x does without
    pkg_resources): the error names the missing module, not "MLflow is not installed"."""
    import sys

    from envkit.errors import LoaderImportError
    from envkit.models.flavors import mlflow_if_importable

    assert "mlflow" not in sys.modules
    assert mlflow_if_importable() is None  # not installed here
    (tmp_path / "mlflow").mkdir()
    (tmp_path / "mlflow" / "__init__.py").write_text("import ek_pkg_resources_gone\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(LoaderImportError) as caught:
            mlflow_if_importable()
        assert caught.value.module == "ek_pkg_resources_gone"
        assert "MLflow is installed but cannot be imported" in str(caught.value)
    finally:
        sys.modules.pop("mlflow", None)
