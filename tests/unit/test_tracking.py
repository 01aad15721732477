"""The local run store: start_run, log_model, runs:/ URIs, Model.log."""

from __future__ import annotations

import json

import numpy as np
import pytest

import envkit
import envkit.pyfunc
import envkit.sklearn
from envkit.errors import ModelExistsError, ModelUriError, UsageError
from envkit.models import Model, get_model_info


@pytest.fixture
def store(tmp_path):
    envkit.set_tracking_dir(tmp_path / "runs")
    yield tmp_path / "runs"
    envkit.set_tracking_dir(None)


class Echo(envkit.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def test_log_model_in_a_run_and_load_by_runs_uri(store, iris, iris_pipeline):
    X, _ = iris
    with envkit.start_run(run_name="train") as run:
        info = envkit.sklearn.log_model(iris_pipeline, name="model")
        assert envkit.active_run() is run
    assert envkit.active_run() is None
    assert info.model_uri == f"runs:/{run.run_id}/model"
    assert info.run_id == run.run_id
    assert info.artifact_path == "model"
    assert (store / run.run_id / "artifacts" / "model" / "MLmodel").is_file()
    record = json.loads((store / run.run_id / "run.json").read_text())
    assert record["status"] == "FINISHED"
    assert record["run_name"] == "train"

    loaded = envkit.pyfunc.load_model(info.model_uri)
    np.testing.assert_array_equal(loaded.predict(X.head(3)), iris_pipeline.predict(X.head(3)))
    assert loaded.metadata.run_id == run.run_id
    assert get_model_info(info.model_uri).model_uri == info.model_uri
    estimator = envkit.sklearn.load_model(info.model_uri)
    assert estimator.__class__ is iris_pipeline.__class__


def test_log_model_without_a_run_starts_and_ends_one(store):
    info = envkit.pyfunc.log_model(name="echo", python_model=Echo())
    run_id = info.run_id
    record = json.loads((store / run_id / "run.json").read_text())
    assert record["status"] == "FINISHED"
    assert envkit.pyfunc.load_model(info.model_uri).predict("x") == "x"


def test_a_failing_run_is_marked_failed(store):
    with pytest.raises(RuntimeError), envkit.start_run() as run:
        raise RuntimeError("training crashed")
    assert json.loads((run.path / "run.json").read_text())["status"] == "FAILED"


def test_model_log_with_a_flavor_module(store):
    with envkit.start_run():
        info = Model.log("custom", envkit.pyfunc, python_model=Echo())
    assert info.model_uri.endswith("/custom")
    assert envkit.pyfunc.load_model(info.model_uri).predict(1) == 1


def test_logging_the_same_name_twice_is_an_error(store):
    with envkit.start_run():
        envkit.pyfunc.log_model(name="m", python_model=Echo())
        with pytest.raises(ModelExistsError, match="already has a model named 'm'"):
            envkit.pyfunc.log_model(name="m", python_model=Echo())


def test_bad_names_and_unknown_runs(store):
    with envkit.start_run(), pytest.raises(UsageError, match="invalid model name"):
        envkit.pyfunc.log_model(name="../escape", python_model=Echo())
    with pytest.raises(ModelUriError, match="not a valid runs URI"):
        envkit.pyfunc.load_model("runs:/onlyid")
    with envkit.start_run() as run:
        pass
    with pytest.raises(ModelUriError, match="has no model named 'missing'"):
        envkit.pyfunc.load_model(f"runs:/{run.run_id}/missing")


def test_tracking_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ENVKIT_TRACKING_DIR", str(tmp_path / "elsewhere"))
    info = envkit.pyfunc.log_model(name="m", python_model=Echo())
    assert (tmp_path / "elsewhere" / info.run_id / "artifacts" / "m").is_dir()


def test_runs_uris_never_leave_the_runs_artifacts(store):
    """A runs:/ URI names a model inside one run: '..' cannot reach another run's files."""
    with envkit.start_run() as run:
        envkit.pyfunc.log_model(name="m", python_model=Echo())
    with envkit.start_run() as other:
        envkit.pyfunc.log_model(name="x", python_model=Echo())
    for uri in (
        f"runs:/{run.run_id}/../../{other.run_id}/artifacts/x",
        f"runs:/{run.run_id}/m/../../../{other.run_id}/artifacts/x",
        "runs:/../x",
    ):
        with pytest.raises(ModelUriError, match="'..' segments"):
            envkit.pyfunc.load_model(uri)
    assert envkit.pyfunc.load_model(f"runs:/{other.run_id}/x").predict(2) == 2


def test_a_run_inside_a_run_needs_nested(store):
    with envkit.start_run() as outer:
        with pytest.raises(UsageError, match=f"run {outer.run_id} is already active"):
            envkit.start_run()
        with envkit.start_run(nested=True) as inner:
            assert envkit.active_run() is inner
        assert envkit.active_run() is outer
    assert envkit.active_run() is None


def test_model_info_of_a_model_whose_artifact_path_is_absolute(tmp_path):
    """MLflow 3 writes a logged model's absolute location as artifact_path: not a runs:/ name."""
    import yaml

    envkit.pyfunc.save_model(tmp_path / "m", python_model=Echo())
    mlmodel = tmp_path / "m" / "MLmodel"
    data = yaml.safe_load(mlmodel.read_text())
    data.update(run_id="0123abcd", artifact_path=str(tmp_path / "mlruns" / "artifacts"))
    mlmodel.write_text(yaml.safe_dump(data))
    info = get_model_info(tmp_path / "m")
    assert info.model_uri == str(tmp_path / "m")
    assert envkit.pyfunc.load_model(info.model_uri).predict(1) == 1
