"""The MLmodel format: fields, round trips, MLflow's own files, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from envkit.errors import ModelFormatError, ModelUriError
from envkit.models import Model, get_model_info

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "mlflow-3.17.2"
SAMPLE_NAMES = ["sk_example", "sk_infer", "pyfunc_env", "pyfunc_stream"]


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_mlflow_written_mlmodel_round_trips_unchanged(name, tmp_path):
    original = yaml.safe_load((SAMPLES / name / "MLmodel").read_text())
    model = Model.load(SAMPLES / name / "MLmodel")
    assert model.mlflow_version == "3.17.2"
    assert model.envkit_version is None
    assert model.model_uuid == original["model_uuid"]
    assert model.utc_time_created == original["utc_time_created"]
    model.save(tmp_path / "MLmodel")
    assert yaml.safe_load((tmp_path / "MLmodel").read_text()) == original


def test_mlflow_sample_fields_are_exposed():
    model = Model.load(SAMPLES / "sk_example")
    assert set(model.flavors) == {"python_function", "sklearn"}
    assert model.flavors["sklearn"]["serialization_format"] == "skops"
    assert model.model_size_bytes == 27059
    assert model.saved_input_example_info == {
        "artifact_path": "input_example.json",
        "pandas_orient": "split",
        "serving_input_path": "serving_input_example.json",
        "type": "dataframe",
    }
    names = [spec.name for spec in model.signature.inputs.inputs]
    assert names[0] == "sepal length (cm)"


def test_new_model_writes_mlflow_fields_plus_envkit_version(tmp_path):
    model = Model().add_flavor("python_function", loader_module="x", python_version="3.11.7")
    model.save(tmp_path)
    written = yaml.safe_load((tmp_path / "MLmodel").read_text())
    assert written["envkit_version"]
    assert set(written) >= {
        "flavors",
        "model_uuid",
        "model_id",
        "utc_time_created",
        "prompts",
        "envkit_version",
    }
    assert "mlflow_version" not in written  # envkit does not pretend to be MLflow
    assert "run_id" not in written and "artifact_path" not in written  # null fields omitted
    assert len(written["model_uuid"]) == 32
    # MLflow's naive-UTC timestamp format
    assert len(written["utc_time_created"].split(" ")) == 2


def test_unknown_fields_survive_load_and_save(tmp_path):
    mlmodel = {
        "flavors": {"python_function": {"loader_module": "m", "custom_key": [1, 2]}},
        "model_uuid": "abc",
        "utc_time_created": "2026-01-01 00:00:00.000000",
        "databricks_runtime": "15.4",
        "resources": {"api_version": "1", "databricks": {}},
        "some_future_field": {"nested": True},
    }
    (tmp_path / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    model = Model.load(tmp_path)
    assert model.extra["some_future_field"] == {"nested": True}
    out = tmp_path / "out"
    out.mkdir()
    model.save(out)
    written = yaml.safe_load((out / "MLmodel").read_text())
    for key in ("databricks_runtime", "resources", "some_future_field"):
        assert written[key] == mlmodel[key]
    assert written["flavors"]["python_function"]["custom_key"] == [1, 2]


def test_add_flavor_and_get_flavor():
    model = Model().add_flavor("sklearn", pickled_model="model.pkl")
    assert model.get_flavor("sklearn") == {"pickled_model": "model.pkl"}
    with pytest.raises(ModelFormatError, match="no 'onnx' flavor"):
        model.get_flavor("onnx")


def test_get_model_info_of_a_directory():
    info = get_model_info(SAMPLES / "sk_example")
    assert info.model_uuid == "31825be2a73944c4892a3860be71f9ff"
    assert info.mlflow_version == "3.17.2"
    assert "sklearn" in info.flavors
    assert info.signature is not None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("flavors: [unclosed", "not valid YAML"),
        ("- a\n- b\n", "must be a YAML mapping"),
        ("model_uuid: x\n", "no 'flavors' section"),
        ("flavors:\n  sklearn: 3\n", "must map each flavor name to a mapping"),
        (
            "flavors: {}\nsaved_input_example_info: x\n",
            "'saved_input_example_info' in MLmodel must be a mapping, got str",
        ),
        ("flavors: {}\nmetadata: [1]\n", "'metadata' in MLmodel must be a mapping, got list"),
        ("", "is empty"),
    ],
)
def test_malformed_mlmodel_is_one_clear_error(tmp_path, content, message):
    (tmp_path / "MLmodel").write_text(content)
    with pytest.raises(ModelFormatError, match=message) as excinfo:
        Model.load(tmp_path)
    assert "\n" not in str(excinfo.value)


def test_missing_mlmodel_and_missing_path(tmp_path):
    with pytest.raises(ModelFormatError, match="no MLmodel file"):
        Model.load(tmp_path)
    with pytest.raises(ModelUriError, match="does not exist"):
        Model.load(tmp_path / "nope")


def test_signature_that_cannot_be_parsed_is_a_format_error(tmp_path):
    (tmp_path / "MLmodel").write_text(
        'flavors: {}\nsignature:\n  inputs: \'[{"type": "no-such-type"}]\'\n'
    )
    model = Model.load(tmp_path)
    with pytest.raises(ModelFormatError, match="signature"):
        _ = model.signature
