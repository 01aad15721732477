"""The pytorch flavor end to end: save/load of whole modules and state dicts, the pyfunc on
DataFrames, arrays and tensors, the scan of torch's zip (a malicious ``model.pth`` is refused
like a malicious ``model.pkl``), what the capture records (``torch==2.13.0+cpu``, local label
kept), interop both ways with real MLflow (its own virtualenv with the same CPU build of torch),
and ``envkit validate`` / ``envkit serve`` in a rebuilt environment.

The model is tests/flavor_models/pytorch.py's: an nn.Sequential trained for twenty steps on
twelve rows. torch is installed only as the CPU build (/opt/wheels through the find-links);
without torch the module is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

from flavor_models import pytorch as torch_models  # noqa: E402
from test_serve import Server, post_json  # noqa: E402
from test_validate import envkit_cli, json_report  # noqa: E402

import envkit.pyfunc  # noqa: E402
import envkit.pytorch  # noqa: E402
from envkit.errors import SchemaEnforcementError, UnsafeModelError  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.heavy]

REPO = Path(__file__).resolve().parents[2]
X, Y = torch_models.training_data()


def _expected(net, data) -> np.ndarray:
    with torch.no_grad():
        return net(torch.tensor(np.asarray(data, dtype=np.float32))).numpy()


@pytest.fixture(scope="session")
def torch_net():
    return torch_models.network(X, Y)


@pytest.fixture(scope="session")
def torch_model(tmp_path_factory, torch_net) -> Path:
    """The network saved by envkit (requirements captured), a DataFrame input example."""
    path = tmp_path_factory.mktemp("pytorch-envkit") / "net"
    envkit.pytorch.save_model(torch_net, path, input_example=X.head(3))
    return path


@pytest.fixture(scope="session")
def torch_array_model(tmp_path_factory, torch_net) -> Path:
    """The network saved with a tensor input example: a tensor signature, array input."""
    path = tmp_path_factory.mktemp("pytorch-envkit-array") / "net"
    envkit.pytorch.save_model(torch_net, path, input_example=torch.tensor(X.head(3).to_numpy()))
    return path


@pytest.fixture(scope="session")
def torch_pt2_model(tmp_path_factory, torch_net) -> Path:
    """The network saved as torch.export traces it (MLflow's default format)."""
    path = tmp_path_factory.mktemp("pytorch-envkit-pt2") / "net"
    envkit.pytorch.save_model(
        torch_net, path, serialization_format="pt2", input_example=X.head(3).to_numpy()
    )
    return path


def _mlmodel(path: Path) -> dict:
    return yaml.safe_load((path / "MLmodel").read_text())


# --- save, load, predict ------------------------------------------------------------------------


def test_the_model_directory_has_mlflows_files_and_sections(torch_model):
    assert (torch_model / "data" / "model.pth").is_file()
    assert (torch_model / "data" / "pickle_module_info.txt").read_text() == (
        "envkit.pytorch.pickle_module"
    )
    flavors = _mlmodel(torch_model)["flavors"]
    assert flavors["pytorch"] == {
        "model_data": "data",
        "pytorch_version": torch.__version__,
        "code": None,
    }
    pyfunc = flavors["python_function"]
    assert pyfunc["loader_module"] == "envkit.pytorch"
    assert pyfunc["data"] == "data"
    assert pyfunc["config"] == {"device": None}


def test_load_model_returns_the_module_in_eval_mode(torch_model, torch_net):
    loaded = envkit.pytorch.load_model(torch_model)
    assert isinstance(loaded, torch.nn.Sequential) and not loaded.training
    np.testing.assert_allclose(_expected(loaded, X), _expected(torch_net, X), rtol=1e-6)


def test_pyfunc_predicts_a_dataframe_as_a_dataframe_with_its_index(torch_model, torch_net):
    frame = X.iloc[2:7]
    predicted = envkit.pyfunc.load_model(torch_model).predict(frame)
    assert list(predicted.index) == list(frame.index)
    np.testing.assert_allclose(predicted.to_numpy(), _expected(torch_net, frame), rtol=1e-6)


def test_pyfunc_predicts_arrays_and_tensors(torch_array_model, torch_net):
    signature = _mlmodel(torch_array_model)["signature"]
    assert json.loads(signature["inputs"]) == [
        {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 3]}}
    ]
    array = X.to_numpy(dtype=np.float32)
    pyfunc = envkit.pyfunc.load_model(torch_array_model, model_config={"device": "cpu"})
    np.testing.assert_allclose(pyfunc.predict(array), _expected(torch_net, array), rtol=1e-6)
    # a tensor passes the tensor signature as its array (MLflow's takes arrays only) ...
    tensor = torch.tensor(array)
    np.testing.assert_allclose(pyfunc.predict(tensor), _expected(torch_net, array), rtol=1e-6)
    with pytest.raises(SchemaEnforcementError, match="cannot be read as a numpy array"):
        pyfunc.predict(tensor.clone().requires_grad_())
    # ... and the loaded implementation takes it as it is
    raw = envkit.pytorch._load_pyfunc(str(torch_array_model), {"device": "cpu"})
    np.testing.assert_allclose(
        raw.predict(torch.tensor(array)), _expected(torch_net, array), rtol=1e-6
    )
    with pytest.raises(ValueError, match="load time"):
        raw.predict(array, params={"device": "cpu"})


def test_pt2_saves_the_traced_program_without_a_pickle_of_the_module(torch_pt2_model, torch_net):
    assert {p.name for p in (torch_pt2_model / "data").iterdir()} == {"model.pt2"}
    array = X.to_numpy(dtype=np.float32)  # twelve rows: the batch dimension is dynamic
    pyfunc = envkit.pyfunc.load_model(torch_pt2_model)
    np.testing.assert_allclose(pyfunc.predict(array), _expected(torch_net, array), rtol=1e-6)
    native = envkit.pytorch.load_model(torch_pt2_model)
    np.testing.assert_allclose(_expected(native, array), _expected(torch_net, array), rtol=1e-6)


def test_pt2_without_an_array_example_is_a_usage_error(tmp_path, torch_net):
    from envkit.errors import UsageError

    with pytest.raises(UsageError, match="input_example as a numpy array"):
        envkit.pytorch.save_model(
            torch_net, tmp_path / "m", serialization_format="pt2", input_example=X.head(3)
        )
    assert not (tmp_path / "m").exists()


def test_a_state_dict_round_trips_into_a_fresh_module(tmp_path, torch_net):
    envkit.pytorch.save_state_dict(torch_net.state_dict(), tmp_path / "sd")
    assert (tmp_path / "sd" / "state_dict.pth").is_file()
    fresh = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    fresh.load_state_dict(envkit.pytorch.load_state_dict(tmp_path / "sd"))
    np.testing.assert_allclose(_expected(fresh.eval(), X), _expected(torch_net, X), rtol=1e-6)


def test_log_state_dict_logs_into_the_run_and_loads_by_runs_uri(tmp_path, torch_net):
    from envkit.errors import ModelExistsError, UsageError

    envkit.set_tracking_dir(tmp_path / "runs")
    try:
        with envkit.start_run() as run:
            uri = envkit.pytorch.log_state_dict(torch_net.state_dict(), "weights")
            with pytest.raises(ModelExistsError, match="already has a state dict named"):
                envkit.pytorch.log_state_dict(torch_net.state_dict(), "weights")
            with pytest.raises(UsageError, match="must be a dict"):
                envkit.pytorch.log_state_dict([1, 2], "broken")
        assert uri == f"runs:/{run.run_id}/weights"
        assert sorted(p.name for p in run.artifact_dir.iterdir()) == ["weights"]  # no "broken"
        fresh = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
        fresh.load_state_dict(envkit.pytorch.load_state_dict(uri))
        np.testing.assert_allclose(_expected(fresh.eval(), X), _expected(torch_net, X), rtol=1e-6)
        # outside a run, one is started for the state dict and ended
        alone = envkit.pytorch.log_state_dict(torch_net.state_dict(), "weights")
        assert alone != uri and envkit.active_run() is None
        assert sorted(envkit.pytorch.load_state_dict(alone)) == sorted(torch_net.state_dict())
    finally:
        envkit.set_tracking_dir(None)


def test_log_model_saves_into_the_run_and_loads_by_runs_uri(tmp_path, torch_net):
    envkit.set_tracking_dir(tmp_path / "runs")
    try:
        with envkit.start_run():
            info = envkit.pytorch.log_model(torch_net, name="net", pip_requirements=["torch"])
        assert info.model_uri.startswith("runs:/") and "pytorch" in info.flavors
        loaded = envkit.pytorch.load_model(info.model_uri)
        np.testing.assert_allclose(_expected(loaded, X), _expected(torch_net, X), rtol=1e-6)
    finally:
        envkit.set_tracking_dir(None)


def test_importing_the_flavor_imports_no_torch():
    code = "import sys, envkit.pytorch; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_capture_records_torch_with_its_local_label_and_cloudpickle(torch_model):
    from envkit.deps.requirements import requirement_name

    lines = (torch_model / "requirements.txt").read_text().split()
    assert f"torch=={torch.__version__}" in lines  # 2.13.0+cpu: the build the model ran with
    names = {requirement_name(line) for line in lines}
    assert "cloudpickle" in names and "mlflow" not in names


# --- the scan of torch's files --------------------------------------------------------------------


class _RunsACommand:
    """Unpickled, it runs ``touch <marker>`` (what a malicious checkpoint does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_a_malicious_model_pth_is_refused_before_it_runs(torch_model, tmp_path, zipped):
    """A real torch.save of an object whose unpickling runs a command, in place of the model's
    model.pth (torch's zip format, data.pkl inside, and its legacy format): envkit scan reports
    it, and both loaders refuse it without running it."""
    import shutil

    model = tmp_path / "evil"
    shutil.copytree(torch_model, model)
    marker = tmp_path / "pwned"
    torch.save(
        _RunsACommand(marker), model / "data" / "model.pth", _use_new_zipfile_serialization=zipped
    )
    with pytest.raises(UnsafeModelError, match=r"data/model\.pth"):
        envkit.pytorch.load_model(model)
    with pytest.raises(UnsafeModelError):
        envkit.pyfunc.load_model(model)
    assert not marker.exists()

    proc = subprocess.run(
        [sys.executable, "-m", "envkit", "scan", str(model), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    (bad,) = [f for f in report["files"] if f["verdict"] == "dangerous"]
    assert bad["path"].startswith("data/model.pth")
    assert bad["dangerous"] == ["posix.system"]
    assert not marker.exists()


def test_the_scan_of_a_saved_model_finds_only_torch_data(torch_model):
    from envkit.models.scan import scan_model

    scan = scan_model(torch_model)
    (pth,) = scan.files
    assert pth.path == "data/model.pth:model/data.pkl"  # torch names the archive after the file
    assert pth.verdict == "safe" and "torch._utils._rebuild_tensor_v2" in pth.safe


# --- interop with MLflow -------------------------------------------------------------------------

# Run in MLflow's virtualenv (envkit on the path): save the pickled module and MLFLOW_SAVE's
# torch.export one with mlflow.pytorch, a state dict, then load envkit's files with MLflow.
INTEROP = """
import json, os, sys
from pathlib import Path

request = json.loads(Path(sys.argv[1]).read_text())
out = Path(request["out"])
sys.argv = ["-c", str(out / "mlflow-pt2")]
saved = {"__name__": "__main__"}
exec(compile(request["mlflow_save"], "<MLFLOW_SAVE>", "exec"), saved)

import numpy as np
import pandas as pd
import torch
import mlflow.pyfunc, mlflow.pytorch

X, y = saved["training_data"]()
net = saved["network"](X, y)  # MLFLOW_SAVE's functions: the network envkit's tests train
mlflow.pytorch.save_model(
    net, out / "mlflow-pickle", input_example=X.head(3), serialization_format="pickle",
    pip_requirements=["torch", "cloudpickle"],
)
mlflow.pytorch.save_state_dict(net.state_dict(), out / "mlflow-state-dict")

os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"  # envkit's model is a pickle
result = {}
for name, path in request["envkit_models"].items():
    native = mlflow.pytorch.load_model(path)
    predicted = mlflow.pyfunc.load_model(path).predict(X.to_numpy() if "pt2" in name else X)
    result[name] = {"native": type(native).__name__, "pyfunc": np.asarray(predicted).tolist()}
for name in ("mlflow-pickle", "mlflow-pt2"):
    data = X if name == "mlflow-pickle" else X.to_numpy()
    predicted = mlflow.pyfunc.load_model(out / name).predict(data)
    result[name] = {"pyfunc": np.asarray(predicted).tolist()}
state = mlflow.pytorch.load_state_dict(request["envkit_state_dict"])
result["envkit-state-dict"] = sorted(state)
print(json.dumps(result))
"""


@pytest.fixture(scope="session")
def mlflow_torch(
    mlflow_torch_python, torch_model, torch_pt2_model, torch_net, tmp_path_factory
) -> dict:
    """``out``: where MLflow saved its models; ``results``: what MLflow predicted."""
    root = tmp_path_factory.mktemp("pytorch-mlflow")
    envkit.pytorch.save_state_dict(torch_net.state_dict(), root / "envkit-state-dict")
    request = root / "request.json"
    request.write_text(
        json.dumps(
            {
                "out": str(root),
                "mlflow_save": torch_models.MLFLOW_SAVE,
                "envkit_models": {"envkit": str(torch_model), "envkit-pt2": str(torch_pt2_model)},
                "envkit_state_dict": str(root / "envkit-state-dict"),
                "X": X.to_dict(orient="split"),
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [str(mlflow_torch_python), "-c", textwrap.dedent(INTEROP), str(request)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {"out": root, "results": json.loads(done.stdout.strip().splitlines()[-1])}


def test_mlflow_is_not_installed_in_the_test_environment():
    import importlib.util

    assert importlib.util.find_spec("mlflow") is None


@pytest.mark.mlflow
def test_envkit_writes_the_sections_and_files_mlflow_writes(torch_model, mlflow_torch):
    theirs = mlflow_torch["out"] / "mlflow-pickle"
    mine, mlflows = _mlmodel(torch_model), _mlmodel(theirs)
    assert mine["flavors"]["pytorch"] == mlflows["flavors"]["pytorch"]
    for key in ("data", "config", "env", "python_version"):
        assert mine["flavors"]["python_function"][key] == mlflows["flavors"]["python_function"][key]
    assert mlflows["flavors"]["python_function"]["pickle_module_name"] == (
        "mlflow.pytorch.pickle_module"
    )
    assert mine["signature"] == mlflows["signature"]
    assert {p.name for p in theirs.iterdir()} <= {p.name for p in torch_model.iterdir()}
    assert {p.name for p in (theirs / "data").iterdir()} == {
        p.name for p in (torch_model / "data").iterdir()
    }


@pytest.mark.mlflow
def test_envkit_writes_the_pt2_sections_mlflow_writes(torch_pt2_model, mlflow_torch):
    theirs = mlflow_torch["out"] / "mlflow-pt2"
    mine, mlflows = _mlmodel(torch_pt2_model), _mlmodel(theirs)
    assert mine["flavors"]["pytorch"] == mlflows["flavors"]["pytorch"]
    assert mine["signature"]["inputs"] == mlflows["signature"]["inputs"]
    assert {p.name for p in (theirs / "data").iterdir()} == {"model.pt2"}


@pytest.mark.mlflow
@pytest.mark.parametrize(("name", "native"), [("envkit", "Sequential"), ("envkit-pt2", None)])
def test_mlflow_loads_envkit_models_and_predicts_the_same(torch_net, mlflow_torch, name, native):
    loaded = mlflow_torch["results"][name]
    if native:
        assert loaded["native"] == native
    np.testing.assert_allclose(np.asarray(loaded["pyfunc"]), _expected(torch_net, X), rtol=1e-6)


@pytest.mark.mlflow
def test_mlflow_loads_envkits_state_dict(torch_net, mlflow_torch):
    assert mlflow_torch["results"]["envkit-state-dict"] == sorted(torch_net.state_dict())


@pytest.mark.mlflow
@pytest.mark.parametrize("name", ["mlflow-pickle", "mlflow-pt2"])
def test_envkit_loads_mlflow_models_without_mlflow(mlflow_torch, name):
    """MLflow's pickled module (its pickle module read as envkit's) and its torch.export one
    (MLflow's default format)."""
    path = mlflow_torch["out"] / name
    expected = np.asarray(mlflow_torch["results"][name]["pyfunc"])
    pyfunc = envkit.pyfunc.load_model(path)
    assert pyfunc.loader_module == "mlflow.pytorch"
    data = X if name == "mlflow-pickle" else X.to_numpy()
    np.testing.assert_allclose(np.asarray(pyfunc.predict(data)), expected, rtol=1e-6)
    native = envkit.pytorch.load_model(path)
    np.testing.assert_allclose(_expected(native, X), expected, rtol=1e-6)
    assert "mlflow" not in sys.modules


@pytest.mark.mlflow
def test_envkit_loads_mlflows_state_dict(mlflow_torch, torch_net):
    state = envkit.pytorch.load_state_dict(mlflow_torch["out"] / "mlflow-state-dict")
    assert sorted(state) == sorted(torch_net.state_dict())


# --- validate and serve --------------------------------------------------------------------------


@pytest.mark.timeout(1500)
def test_validate_and_serve_rebuild_the_cpu_build_of_torch(torch_model, torch_net, shared_cache):
    """`envkit validate` rebuilds the environment with torch==2.13.0+cpu (uv finds it in the
    find-links) and predicts the input example; `envkit serve` answers what envkit predicts."""
    proc = envkit_cli("validate", str(torch_model), "--format", "json", home=shared_cache)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json_report(proc)
    assert report["ok"] and report["input"]["source"] == "input_example"
    assert f"torch=={torch.__version__}" in report["spec"]["requirements"]

    server = Server(torch_model, env={**os.environ, "ENVKIT_HOME": str(shared_cache)})
    try:
        server.wait_ready(timeout=900)
        status, body = post_json(
            server.port, {"dataframe_split": X.head(4).to_dict(orient="split")}
        )
        assert status == 200, body
        predicted = [list(row.values()) for row in body["predictions"]]
        np.testing.assert_allclose(predicted, _expected(torch_net, X.head(4)), rtol=1e-5)
    finally:
        assert server.stop() == 0, server.output()
