"""The onnx flavor for real: MLflow reads envkit's models and envkit reads MLflow's (one
subprocess of the MLflow virtualenv does all of MLflow's side), the capture, `envkit validate`
and `envkit serve` on a model with a tensor signature."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from flavor_models.onnx import SOURCE, linear_model, training_data, wide_model

import envkit.onnx
import envkit.pyfunc

pytestmark = [pytest.mark.slow]

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

SESSION_OPTIONS = {"intra_op_num_threads": 1, "execution_mode": "sequential"}


def two_input_model():
    """total = a + b, difference = a - b (inputs a, b: float32 vectors)."""
    from onnx import TensorProto, helper

    names = ("a", "b"), ("total", "difference")
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["a", "b"], ["total"]),
            helper.make_node("Sub", ["a", "b"], ["difference"]),
        ],
        "two_inputs",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None]) for n in names[0]],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None]) for n in names[1]],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def frame_ab() -> pd.DataFrame:
    return pd.DataFrame({"a": np.array([1.0, 2.0, 3.0], np.float32), "b": np.ones(3, np.float32)})


@pytest.fixture(scope="session")
def envkit_onnx_models(tmp_path_factory) -> Path:
    """Saved by envkit: ``tensor`` (array example, session options; capture for real),
    ``named`` (dict example, CPU only), ``two_inputs`` (DataFrame example)."""
    from envkit.deps.capture import capture_disabled

    root = tmp_path_factory.mktemp("envkit-onnx")
    X, y = training_data()
    linear = linear_model(X, y)
    envkit.onnx.save_model(
        linear, root / "tensor", input_example=X[:3], onnx_session_options=SESSION_OPTIONS
    )
    with capture_disabled("the capture is tested on the tensor model"):
        envkit.onnx.save_model(
            linear,
            root / "named",
            input_example={"x": X[:3]},
            onnx_execution_providers=["CPUExecutionProvider"],
        )
        envkit.onnx.save_model(two_input_model(), root / "two_inputs", input_example=frame_ab())
    return root


# MLflow's side, in one process: save MLflow's models (requirements given: MLflow's own
# inference would add half a minute per model) and read envkit's with mlflow.onnx and
# mlflow.pyfunc (envkit importable there: its pyfunc's loader_module is envkit.onnx).
MLFLOW_SIDE = f"""
import json, sys
from typing import Any

import numpy as np
import onnxruntime
import pandas as pd

import mlflow.onnx
import mlflow.pyfunc

{SOURCE}

ours, theirs = sys.argv[1], sys.argv[2]
reqs = ["onnx==" + __import__("onnx").__version__, "onnxruntime==" + onnxruntime.__version__]
X, y = training_data()
linear = linear_model(X, y)
mlflow.onnx.save_model(linear, theirs + "/tensor", input_example=X[:3], pip_requirements=reqs,
                       onnx_session_options={SESSION_OPTIONS!r})
mlflow.onnx.save_model(wide_model(), theirs + "/external", pip_requirements=reqs)

def plain(out):
    if isinstance(out, pd.DataFrame):
        return {{"frame": out.to_dict(orient="list")}}
    return {{k: np.asarray(v).tolist() for k, v in out.items()}}

frame = pd.DataFrame({{"a": np.array([1.0, 2.0, 3.0], np.float32), "b": np.ones(3, np.float32)}})
inputs = {{"tensor": X, "named": {{"x": X}}, "two_inputs": frame}}
results = {{}}
for name, data in inputs.items():
    proto = mlflow.onnx.load_model(ours + "/" + name)
    session = onnxruntime.InferenceSession(proto.SerializeToString())
    feeds = {{"x": X}} if name != "two_inputs" else {{c: frame[c].values for c in "ab"}}
    results[name] = {{
        "proto": proto.SerializeToString().hex(),
        "native": [o.tolist() for o in session.run(None, feeds)],
        "pyfunc": plain(mlflow.pyfunc.load_model(ours + "/" + name).predict(data)),
    }}
print(json.dumps(results))
"""


@pytest.fixture(scope="session")
def mlflow_side(run_in_mlflow, envkit_onnx_models, tmp_path_factory) -> tuple[dict, Path]:
    theirs = tmp_path_factory.mktemp("mlflow-onnx")
    out = run_in_mlflow(MLFLOW_SIDE, str(envkit_onnx_models), str(theirs), with_envkit=True)
    return json.loads(out.strip().splitlines()[-1]), theirs


def plain(out) -> dict:
    if isinstance(out, pd.DataFrame):
        return {"frame": out.to_dict(orient="list")}
    return {k: np.asarray(v).tolist() for k, v in out.items()}


@pytest.mark.mlflow
@pytest.mark.parametrize("name", ["tensor", "named", "two_inputs"])
def test_mlflow_reads_envkit_onnx_models_and_predicts_the_same(
    mlflow_side, envkit_onnx_models, name
):
    results, _ = mlflow_side
    ours = results[name]
    path = envkit_onnx_models / name
    assert bytes.fromhex(ours["proto"]) == envkit.onnx.load_model(path).SerializeToString()
    X, _ = training_data()
    data = {"tensor": X, "named": {"x": X}, "two_inputs": frame_ab()}[name]
    expected = plain(envkit.pyfunc.load_model(path).predict(data))
    assert ours["pyfunc"].keys() == expected.keys()  # a dict, or a DataFrame for a DataFrame
    for key, value in expected.items():
        if key == "frame":
            assert ours["pyfunc"][key].keys() == value.keys()
            for column in value:
                np.testing.assert_allclose(ours["pyfunc"][key][column], value[column], rtol=1e-6)
        else:
            np.testing.assert_allclose(ours["pyfunc"][key], value, rtol=1e-6)
    if name != "two_inputs":
        np.testing.assert_allclose(ours["native"][0], expected["score"], rtol=1e-6)


@pytest.mark.mlflow
def test_envkit_reads_mlflow_onnx_models_without_mlflow(mlflow_side):
    _, theirs = mlflow_side
    X, y = training_data()
    linear = linear_model(X, y)
    model = envkit.pyfunc.load_model(theirs / "tensor")
    assert model.loader_module == "mlflow.onnx"
    options = model.get_raw_model().get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(linear.SerializeToString())
    score, probability = session.run(None, {"x": X})
    out = model.predict(X)
    np.testing.assert_allclose(out["score"], score, rtol=1e-6)
    np.testing.assert_allclose(out["probability"], probability, rtol=1e-6)
    assert envkit.onnx.load_model(theirs / "tensor").graph == linear.graph
    # MLflow moved the 8 KiB of weights to a file of its own beside model.onnx
    assert [p.suffix for p in (theirs / "external").iterdir()].count(".data") == 1
    wide = wide_model()
    weights = onnx.numpy_helper.to_array(wide.graph.initializer[0])
    loaded = envkit.onnx.load_model(theirs / "external").graph.initializer[0]
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(loaded), weights)
    expected = X @ weights
    got = envkit.pyfunc.load_model(theirs / "external").predict(X)["y"]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert "mlflow" not in sys.modules


def test_the_capture_records_onnx_and_onnxruntime(envkit_onnx_models):
    provenance = json.loads(
        (envkit_onnx_models / "tensor" / "requirements.provenance.json").read_text()
    )
    assert provenance["capture"]["status"] == "ok" and provenance["capture"]["predicted"]
    records = {r["name"]: r for r in provenance["requirements"]}
    assert records["onnx"]["requirement"] == f"onnx=={onnx.__version__}"
    assert records["onnxruntime"]["requirement"] == f"onnxruntime=={ort.__version__}"
    assert records["onnxruntime"]["modules"] == ["onnxruntime"]  # the pyfunc imported it
    # what the test session has installed but the model does not use is not recorded
    assert {"scikit-learn", "scipy", "skops", "mlflow"}.isdisjoint(records)


def _envkit(*args: str, home: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "ENVKIT_HOME": str(home)}
    argv = [sys.executable, "-m", "envkit", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.timeout(600)
def test_validate_and_serve_a_tensor_model(envkit_onnx_models, shared_cache):
    from test_serve import Server, post_json

    model = envkit_onnx_models / "tensor"
    done = _envkit("validate", str(model), "--format", "json", home=shared_cache)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    X, _ = training_data()
    expected = envkit.pyfunc.load_model(model).predict(X[:3])
    assert report["ok"] is True
    preview = json.loads(report["output"]["preview"])
    np.testing.assert_allclose(preview["score"], expected["score"], rtol=1e-6)
    # served here (validate rebuilt the environment already; serving in it would build it
    # again with the scoring server added)
    server = Server(model, "--env-manager", "local")
    try:
        server.wait_ready(timeout=300)
        status, body = post_json(server.port, {"inputs": X[:3].tolist()})
        assert status == 200, body
        assert sorted(body["predictions"]) == ["probability", "score"]
        np.testing.assert_allclose(body["predictions"]["score"], expected["score"], rtol=1e-6)
        status, body = post_json(server.port, {"inputs": [[1.0, 2.0]]})
        assert status == 400 and "shape" in body["message"]
    finally:
        assert server.stop() == 0, server.output()


@pytest.mark.timeout(600)
def test_validate_of_a_model_without_onnxruntime_names_it_and_exits_1(tmp_path, shared_cache):
    from envkit.deps.capture import RequirementWarning

    X, y = training_data()
    with pytest.warns(RequirementWarning, match="does not list onnxruntime"):
        envkit.onnx.save_model(
            linear_model(X, y),
            tmp_path / "m",
            input_example=X[:3],
            pip_requirements=[f"onnx=={onnx.__version__}", *_runtime_pins()],
        )
    done = _envkit("validate", str(tmp_path / "m"), home=shared_cache)
    assert done.returncode == 1, done.stdout + done.stderr
    first = done.stdout.splitlines()[0]
    assert "the onnx flavor needs the package 'onnxruntime'" in first
    assert "pip install onnxruntime" in first


def _runtime_pins() -> list[str]:
    from importlib.metadata import version

    return [f"numpy=={version('numpy')}", f"pandas=={version('pandas')}"]
