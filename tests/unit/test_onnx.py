"""The onnx flavor: MLflow's keys, the pyfunc's inputs and outputs, session options, providers.

Models are written with ``onnx.helper`` here (tests/flavor_models/onnx.py), no converter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from flavor_models.onnx import linear_model, training_data, wide_model

import envkit.onnx
import envkit.pyfunc
from envkit.errors import ModelFormatError, SchemaEnforcementError, UsageError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "mlflow-3.17.2"


@pytest.fixture(scope="module")
def data():
    return training_data()


@pytest.fixture(scope="module")
def linear(data):
    return linear_model(*data)


def expected_outputs(linear, X):
    """What the model computes, by numpy from its own weights."""
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in linear.graph.initializer}
    score = X.astype(np.float32) @ weights["W"] + weights["b"]
    return score, 1 / (1 + np.exp(-score))


def two_input_model():
    """total = a + b, difference = a - b; inputs a, b of shape (-1,) (a DataFrame's columns)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Add", ["a", "b"], ["total"]),
            helper.make_node("Sub", ["a", "b"], ["difference"]),
        ],
        "two_inputs",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None]) for n in ("a", "b")],
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, [None])
            for n in ("total", "difference")
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def test_the_flavor_sections_are_the_ones_mlflow_writes(tmp_path, linear, data):
    X, _ = data
    envkit.onnx.save_model(
        linear,
        tmp_path / "m",
        input_example=X[:3],
        onnx_session_options={"intra_op_num_threads": 1, "execution_mode": "sequential"},
    )
    mlmodel = yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())
    sample = yaml.safe_load((SAMPLES / "onnx_linear" / "MLmodel").read_text())
    assert set(mlmodel["flavors"]["onnx"]) == set(sample["flavors"]["onnx"])
    assert mlmodel["flavors"]["onnx"] == {
        "code": None,
        "data": "model.onnx",
        "onnx_session_options": {"intra_op_num_threads": 1, "execution_mode": "sequential"},
        "onnx_version": onnx.__version__,
        "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    }
    pyfunc_conf = mlmodel["flavors"]["python_function"]
    assert (pyfunc_conf["loader_module"], pyfunc_conf["data"]) == ("envkit.onnx", "model.onnx")
    assert sample["flavors"]["python_function"]["data"] == "model.onnx"
    assert envkit.onnx.FLAVOR_NAME == "onnx"
    assert sample["flavors"]["onnx"]["providers"] == envkit.onnx.ONNX_EXECUTION_PROVIDERS
    reqs = (tmp_path / "m" / "requirements.txt").read_text().splitlines()
    assert f"onnx=={onnx.__version__}" in reqs and f"onnxruntime=={ort.__version__}" in reqs


def test_load_model_returns_the_proto_and_the_pyfunc_predicts_tensors(tmp_path, linear, data):
    X, _ = data
    envkit.onnx.save_model(linear, tmp_path / "m", input_example=X[:3])
    proto = envkit.onnx.load_model(tmp_path / "m")
    assert isinstance(proto, onnx.ModelProto)
    assert proto.SerializeToString() == linear.SerializeToString()
    model = envkit.pyfunc.load_model(tmp_path / "m")
    score, probability = expected_outputs(linear, X)
    out = model.predict(X)
    assert sorted(out) == ["probability", "score"]
    np.testing.assert_allclose(out["score"], score, rtol=1e-5)
    np.testing.assert_allclose(out["probability"], probability, rtol=1e-5)
    with pytest.raises(SchemaEnforcementError, match="float32"):
        model.predict(X.astype(np.float64))  # the signature says float32, as MLflow's
    assert isinstance(model.get_raw_model(), ort.InferenceSession)
    signature = model.metadata.signature
    assert signature.inputs.is_tensor_spec()
    assert [s.name for s in signature.outputs.inputs] == ["score", "probability"]


def test_a_dict_example_gives_named_tensors_and_a_dataframe_gives_a_dataframe(
    tmp_path, linear, data
):
    X, _ = data
    envkit.onnx.save_model(linear, tmp_path / "m", input_example={"x": X[:3]})
    model = envkit.pyfunc.load_model(tmp_path / "m")
    assert [s.name for s in model.metadata.signature.inputs.inputs] == ["x"]
    score, probability = expected_outputs(linear, X)
    np.testing.assert_allclose(model.predict({"x": X})["score"], score, rtol=1e-5)
    # A model without a signature: a DataFrame of the one input's columns; a DataFrame out,
    # each output flattened into a column (MLflow's rule).
    envkit.onnx.save_model(linear, tmp_path / "plain")
    frame = envkit.pyfunc.load_model(tmp_path / "plain").predict(
        pd.DataFrame(X, columns=list("abcd"))
    )
    assert list(frame.columns) == ["score", "probability"]
    np.testing.assert_allclose(frame["probability"], probability.reshape(-1), rtol=1e-5)
    # float64 (what a JSON payload gives) is cast to the float32 the model takes, as MLflow
    plain = envkit.pyfunc.load_model(tmp_path / "plain").predict(X.astype(np.float64))
    np.testing.assert_allclose(plain["score"], score, rtol=1e-5)


def test_a_model_with_several_inputs_takes_a_dict_or_dataframe_columns(tmp_path):
    envkit.onnx.save_model(two_input_model(), tmp_path / "m")
    model = envkit.pyfunc.load_model(tmp_path / "m")
    a, b = np.array([1.0, 2.0], np.float32), np.array([0.5, 4.0], np.float32)
    out = model.predict({"a": a, "b": b})
    np.testing.assert_allclose(out["total"], a + b)
    np.testing.assert_allclose(out["difference"], a - b)
    frame = model.predict(pd.DataFrame({"b": b, "a": a}))
    np.testing.assert_allclose(frame["total"], a + b)
    with pytest.raises(SchemaEnforcementError, match="one array is input for an ONNX model"):
        model.predict(np.stack([a, b]))
    with pytest.raises(SchemaEnforcementError, match="no column b"):
        model.predict(pd.DataFrame({"a": a}))
    with pytest.raises(SchemaEnforcementError, match="the input has no b .*given: a"):
        model.predict({"a": a})
    with pytest.raises(SchemaEnforcementError, match="the ONNX model refused its input: .*rank"):
        model.predict({"a": a, "b": np.stack([b, b])})  # no signature: onnxruntime says


def test_session_options_and_providers_reach_the_session(tmp_path, linear):
    envkit.onnx.save_model(
        linear,
        tmp_path / "m",
        onnx_execution_providers=[
            ("CPUExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"})
        ],
        onnx_session_options={
            "intra_op_num_threads": 1,
            "inter_op_num_threads": 2,
            "execution_mode": "parallel",
            "graph_optimization_level": 1,
            "extra_session_config": {"session.use_env_allocators": "0"},
        },
    )
    conf = yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())["flavors"]["onnx"]
    # (name, options) pairs are lists in YAML, as MLflow reads them
    assert conf["providers"] == [
        ["CPUExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"}]
    ]
    session = envkit.pyfunc.load_model(tmp_path / "m").get_raw_model()
    options = session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 2)
    assert options.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert options.get_session_config_entry("session.use_env_allocators") == "0"
    assert session.get_providers() == ["CPUExecutionProvider"]


def test_a_provider_this_onnxruntime_lacks_falls_back_to_cpu(tmp_path, linear, caplog):
    envkit.onnx.save_model(
        linear, tmp_path / "m", onnx_execution_providers=["NoSuchExecutionProvider"]
    )
    with caplog.at_level("WARNING", logger="envkit.onnx"):
        session = envkit.pyfunc.load_model(tmp_path / "m").get_raw_model()
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert "NoSuchExecutionProvider" in caplog.text


def test_external_data_is_written_beside_and_the_callers_model_is_left_whole(tmp_path, data):
    X, _ = data
    model = wide_model()  # 8 KiB of weights: external
    big = onnx.numpy_helper.to_array(model.graph.initializer[0])
    before = model.SerializeToString()
    envkit.onnx.save_model(model, tmp_path / "ext", input_example=X[:2])
    assert model.SerializeToString() == before  # onnx would have moved its tensor out
    files = sorted(p.name for p in (tmp_path / "ext").iterdir())
    extra = [f for f in files if f.endswith(".data")]
    assert len(extra) == 1 and (tmp_path / "ext" / extra[0]).stat().st_size == big.nbytes
    assert (tmp_path / "ext" / "model.onnx").stat().st_size < big.nbytes
    loaded = envkit.onnx.load_model(tmp_path / "ext")
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(loaded.graph.initializer[0]), big)
    out = envkit.pyfunc.load_model(tmp_path / "ext").predict(X)
    np.testing.assert_allclose(out["y"], X @ big, rtol=1e-5)
    envkit.onnx.save_model(model, tmp_path / "inline", save_as_external_data=False)
    assert sorted(p.name for p in (tmp_path / "inline").iterdir() if p.suffix == ".data") == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"onnx_session_options": {"no_such_option": 1}}, "not an onnxruntime SessionOptions"),
        ({"onnx_session_options": {"execution_mode": "eager"}}, "'sequential' or 'parallel'"),
        ({"onnx_session_options": {"graph_optimization_level": 3}}, "0, 1, 2 or 99"),
        ({"onnx_session_options": {"intra_op_num_threads": -1}}, "integer >= 0"),
        ({"onnx_session_options": {"extra_session_config": "x"}}, "must be a dict"),
        ({"onnx_session_options": ["x"]}, "must be a dict"),
        ({"onnx_execution_providers": "CPUExecutionProvider"}, "non-empty list"),
        ({"onnx_execution_providers": [("CPU", "opts")]}, "neither a provider name"),
    ],
)
def test_bad_arguments_are_refused_before_writing(tmp_path, linear, kwargs, message):
    with pytest.raises(UsageError, match=message):
        envkit.onnx.save_model(linear, tmp_path / "m", **kwargs)
    assert not (tmp_path / "m").exists()


def test_only_a_model_proto_is_saved(tmp_path, linear):
    with pytest.raises(UsageError, match="onnx_model must be an onnx.ModelProto, not bytes"):
        envkit.onnx.save_model(linear.SerializeToString(), tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_a_corrupt_onnx_file_is_a_format_error(tmp_path, linear):
    envkit.onnx.save_model(linear, tmp_path / "m")
    (tmp_path / "m" / "model.onnx").write_bytes(b"\x00 not a protobuf")
    with pytest.raises(ModelFormatError, match="model.onnx is not a valid ONNX model"):
        envkit.onnx.load_model(tmp_path / "m")
    (tmp_path / "m" / "model.onnx").unlink()
    with pytest.raises(ModelFormatError, match="model.onnx is missing"):
        envkit.onnx.load_model(tmp_path / "m")


def test_the_model_mlflow_wrote_loads_without_mlflow(linear, data):
    """tests/data/mlflow-3.17.2/onnx_linear: mlflow.onnx.save_model's own files."""
    from envkit.models.flavors import envkit_loader_for, registered_flavors

    X, _ = data
    assert registered_flavors()["onnx"] == "envkit.onnx"
    assert envkit_loader_for("mlflow.onnx") == "envkit.onnx"
    model = envkit.pyfunc.load_model(SAMPLES / "onnx_linear")
    assert model.loader_module == "mlflow.onnx"
    score, probability = expected_outputs(linear, X)
    out = model.predict(X)
    np.testing.assert_allclose(out["score"], score, rtol=1e-5)
    np.testing.assert_allclose(out["probability"], probability, rtol=1e-5)
    proto = envkit.onnx.load_model(SAMPLES / "onnx_linear")
    assert proto.graph.SerializeToString() == linear.graph.SerializeToString()
    assert "mlflow" not in sys.modules


def test_import_envkit_onnx_imports_neither_library():
    code = (
        "import sys, envkit, envkit.onnx; "
        "print([m for m in ('onnx', 'onnxruntime', 'numpy', 'pandas') if m in sys.modules])"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(envkit.__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "[]", out.stderr


def test_log_model_into_a_run_and_load_by_runs_uri(tmp_path, linear, data):
    import envkit

    X, _ = data
    envkit.set_tracking_dir(tmp_path / "runs")
    try:
        with envkit.start_run() as run:
            info = envkit.onnx.log_model(linear, name="model", input_example=X[:2])
        assert info.model_uri == f"runs:/{run.run_id}/model"
        assert envkit.onnx.load_model(info.model_uri).graph == linear.graph
        score, _ = expected_outputs(linear, X)
        out = envkit.pyfunc.load_model(info.model_uri).predict(X)
        np.testing.assert_allclose(out["score"], score, rtol=1e-5)
    finally:
        envkit.set_tracking_dir(None)


def test_an_array_for_a_tensor_signature_is_predicted_without_importing_pandas(
    tmp_path, linear, data
):
    """pandas costs most of a warm validation's predict; an array input never needs it."""
    X, _ = data
    envkit.onnx.save_model(linear, tmp_path / "m", input_example=X[:3])
    code = (
        "import sys, numpy, envkit.pyfunc; "
        "m = envkit.pyfunc.load_model(sys.argv[1]); "
        "m.predict(numpy.ones((2, 4), dtype=numpy.float32)); "
        "print('pandas' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(envkit.__file__).resolve().parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "m")], capture_output=True, text=True, env=env
    )
    assert out.stdout.strip() == "False", out.stderr


def test_session_options_mlflow_does_not_apply_are_recorded_not_applied(tmp_path, linear, caplog):
    """Any SessionOptions attribute saves (as MLflow); loading applies MLflow's five only, so an
    MLmodel cannot make the loader write a file (optimized_model_filepath)."""
    target = tmp_path / "optimized.onnx"
    with caplog.at_level("WARNING", logger="envkit.onnx"):
        envkit.onnx.save_model(
            linear, tmp_path / "m", onnx_session_options={"optimized_model_filepath": str(target)}
        )
    assert "optimized_model_filepath are recorded, but loading applies only" in caplog.text
    conf = yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())["flavors"]["onnx"]
    assert conf["onnx_session_options"] == {"optimized_model_filepath": str(target)}
    envkit.pyfunc.load_model(tmp_path / "m").predict(np.ones((1, 4), np.float32))
    assert not target.exists()
