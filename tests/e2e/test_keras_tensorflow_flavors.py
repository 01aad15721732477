"""The keras (Keras 3) and tensorflow flavors end to end: save/load of a Keras model (its own
``.keras`` file; exported as a SavedModel), of a ``tf.Module`` (SavedModel), the pyfunc on
arrays and DataFrames, custom objects (cloudpickled as MLflow does, scanned), a Lambda layer's
bytecode refused by the scan, the backend the capture records (``torch``, not ``tensorflow``,
for a torch-backed Keras model, and validate loads it on torch), interop both ways with real
MLflow (its own virtualenv with the same TensorFlow and Keras), and ``envkit validate`` /
``envkit serve`` in a rebuilt environment.

The models are tests/flavor_models/keras.py's, trained in the session; without TensorFlow and
Keras (tensorflow-cpu has wheels for Linux x86_64 only) the module is skipped."""

from __future__ import annotations

import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import yaml

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from flavor_models import keras as keras_models  # noqa: E402
from flavor_models import tensorflow as tf_models  # noqa: E402
from test_serve import Server, post_json  # noqa: E402
from test_validate import envkit_cli, json_report  # noqa: E402

import envkit.keras  # noqa: E402
import envkit.pyfunc  # noqa: E402
import envkit.tensorflow  # noqa: E402
from envkit.errors import UnsafeModelError, UsageError  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.heavy]

REPO = Path(__file__).resolve().parents[2]
X = keras_models.features()
MLFLOW_SAVES = {
    "mlflow-keras": keras_models.MLFLOW_SAVE,
    "mlflow-tf-keras": tf_models.MLFLOW_SAVE_KERAS,
    "mlflow-tf-module": tf_models.MLFLOW_SAVE,
}
TF_PIN = f"tensorflow-cpu=={version('tensorflow-cpu')}"
KERAS_PIN = f"keras=={keras.__version__}"


@pytest.fixture(scope="session")
def net():
    return keras_models.sequential()


@pytest.fixture(scope="session")
def expected(net) -> np.ndarray:
    return net.predict(X, verbose=0)


@pytest.fixture(scope="session")
def keras_model(tmp_path_factory, net) -> Path:
    path = tmp_path_factory.mktemp("keras-envkit") / "net"
    envkit.keras.save_model(net, path, input_example=X[:3])
    return path


@pytest.fixture(scope="session")
def keras_exported_model(tmp_path_factory, net) -> Path:
    path = tmp_path_factory.mktemp("keras-envkit-exported") / "net"
    envkit.keras.save_model(net, path, save_exported_model=True, input_example=X[:3])
    return path


@pytest.fixture(scope="session")
def tf_keras_model(tmp_path_factory, net) -> Path:
    path = tmp_path_factory.mktemp("tf-envkit-keras") / "net"
    envkit.tensorflow.save_model(net, path, input_example=X[:3])
    return path


@pytest.fixture(scope="session")
def tf_module_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tf-envkit-module") / "scaler"
    tf_models.save_envkit(path)
    return path


def _mlmodel(path: Path) -> dict:
    return yaml.safe_load((path / "MLmodel").read_text())


def _module_expected(data) -> np.ndarray:
    return tf_models.module()(tf.constant(np.asarray(data, dtype=np.float32))).numpy()


# --- keras: save, load, predict -----------------------------------------------------------------


def test_the_keras_model_directory_has_mlflows_layout(keras_model):
    flavors = _mlmodel(keras_model)["flavors"]
    assert flavors["keras"] == {
        "data": "data", "keras_version": keras.__version__, "keras_backend": "tensorflow",
        "save_exported_model": False,
    }  # fmt: skip
    assert flavors["python_function"]["loader_module"] == "envkit.keras"
    assert "data" not in flavors["python_function"]  # as MLflow's: the loader gets the model
    assert (keras_model / "data" / "model.keras").is_file()
    assert (keras_model / "data" / "keras_module.txt").read_text() == "keras"
    assert not list(keras_model.rglob("*.pkl"))  # Keras' own format: config and weights


def test_keras_load_model_and_the_pyfunc_predict_as_the_model(keras_model, net, expected):
    loaded = envkit.keras.load_model(keras_model)
    assert isinstance(loaded, keras.Model)
    np.testing.assert_allclose(loaded.predict(X, verbose=0), expected, rtol=1e-6)
    pyfunc = envkit.pyfunc.load_model(keras_model)
    np.testing.assert_allclose(pyfunc.predict(X[:5]), expected[:5], rtol=1e-6)
    # a tf.Tensor passes the tensor signature as its array, and the loaded implementation
    # (no signature to check) takes it too
    np.testing.assert_allclose(pyfunc.predict(tf.constant(X[:5])), expected[:5], rtol=1e-6)
    raw = envkit.keras._load_pyfunc(str(keras_model))
    np.testing.assert_allclose(raw.predict(tf.constant(X[:5])), expected[:5], rtol=1e-6)
    with pytest.raises(TypeError, match="not str"):
        raw.predict("x")


def test_the_keras_pyfunc_keeps_a_dataframes_index(keras_model, expected):
    model = envkit.keras._load_pyfunc(str(keras_model))  # no signature: the wrapper's own rule
    frame = keras_models.frame(4).set_index(np.array([10, 11, 12, 13]))
    predicted = model.predict(frame)
    assert list(predicted.index) == [10, 11, 12, 13]
    np.testing.assert_allclose(predicted.to_numpy(), expected[:4], rtol=1e-6)


def test_an_exported_keras_model_is_a_savedmodel_served_by_its_endpoint(
    keras_exported_model, expected
):
    assert _mlmodel(keras_exported_model)["flavors"]["keras"]["save_exported_model"] is True
    assert (keras_exported_model / "data" / "model" / "saved_model.pb").is_file()
    loaded = envkit.keras.load_model(keras_exported_model)
    np.testing.assert_allclose(loaded.serve(X[:5]).numpy(), expected[:5], rtol=1e-5)
    predicted = envkit.pyfunc.load_model(keras_exported_model).predict(X[:5])
    np.testing.assert_allclose(predicted, expected[:5], rtol=1e-5)


def test_exporting_with_a_column_signature_is_a_usage_error(tmp_path, net):
    from envkit.models.signature import infer_signature

    signature = infer_signature(keras_models.frame(3), np.zeros((3, 3), dtype=np.float32))
    with pytest.raises(UsageError, match="tensor inputs"):
        envkit.keras.save_model(net, tmp_path / "m", save_exported_model=True, signature=signature)
    assert not (tmp_path / "m").exists()


def test_not_a_keras_model_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match=r"keras\.Model"):
        envkit.keras.save_model({"not": "a model"}, tmp_path / "m")
    with pytest.raises(UsageError, match=r"tf\.Module"):
        envkit.tensorflow.save_model({"not": "a model"}, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_the_capture_records_keras_and_the_tensorflow_build_it_runs_on(keras_model):
    lines = (keras_model / "requirements.txt").read_text().splitlines()
    assert KERAS_PIN in lines and TF_PIN in lines
    names = {line.split("==")[0] for line in lines}
    assert not names & {"torch", "jax", "tensorflow"}  # the CPU build, by its own name


def test_the_default_requirements_name_the_backend_mlflows_forget():
    assert envkit.keras.get_default_pip_requirements() == [KERAS_PIN, TF_PIN]
    assert envkit.tensorflow.get_default_pip_requirements() == [TF_PIN]


def test_importing_the_flavors_imports_neither_keras_nor_tensorflow():
    code = (
        "import sys, envkit.keras, envkit.tensorflow\n"
        "assert not {'keras', 'tensorflow'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_log_model_saves_into_the_run_and_loads_by_runs_uri(tmp_path, net, expected):
    envkit.set_tracking_dir(tmp_path / "runs")
    try:
        with envkit.start_run():
            info = envkit.keras.log_model(net, name="net", pip_requirements=[KERAS_PIN, TF_PIN])
        assert info.model_uri.startswith("runs:/") and "keras" in info.flavors
        predicted = envkit.pyfunc.load_model(info.model_uri).predict(X[:3])
        np.testing.assert_allclose(predicted, expected[:3], rtol=1e-6)
    finally:
        envkit.set_tracking_dir(None)


# --- a Lambda layer's bytecode -------------------------------------------------------------------


@pytest.fixture(scope="session")
def lambda_model(tmp_path_factory) -> Path:
    """A Keras model with a Lambda layer built from a Python lambda (its bytecode in the
    config), saved with envkit."""
    path = tmp_path_factory.mktemp("keras-lambda") / "lambda"
    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2.0)])
    envkit.keras.save_model(model, path, pip_requirements=[KERAS_PIN, TF_PIN])
    return path


def test_a_lambda_layers_bytecode_is_refused_unless_trusted(lambda_model):
    from envkit.models.scan import KERAS_LAMBDA, scan_model

    scan = scan_model(lambda_model)
    assert scan.verdict == "dangerous"
    assert [(f.path, f.dangerous) for f in scan.dangerous] == [
        ("data/model.keras:config.json", [KERAS_LAMBDA])
    ]
    with pytest.raises(UnsafeModelError, match=r"keras\.layers\.Lambda"):
        envkit.keras.load_model(lambda_model)
    with pytest.raises(UnsafeModelError):
        envkit.pyfunc.load_model(lambda_model)
    trusted = envkit.keras.load_model(lambda_model, trusted_types=[KERAS_LAMBDA])
    np.testing.assert_allclose(trusted.predict(X[:2], verbose=0), X[:2] * 2.0)
    assert envkit.keras.load_model(lambda_model, trust_model=True) is not None


def test_envkit_scan_reports_the_lambda_with_exit_1(lambda_model, tmp_path):
    proc = envkit_cli("scan", str(lambda_model), "--format", "json", home=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["verdict"] == "dangerous"
    trusted = envkit_cli(
        "scan", str(lambda_model), "--trust-type", "keras.layers.Lambda", home=tmp_path
    )
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr


# --- tensorflow: a Keras model and a tf.Module ---------------------------------------------------


def test_the_tensorflow_keras_model_has_mlflows_layout(tf_keras_model):
    flavors = _mlmodel(tf_keras_model)["flavors"]
    assert flavors["tensorflow"] == {
        "code": None, "data": "data", "model_type": "keras", "keras_version": tf.__version__,
        "save_format": "tf",
    }  # fmt: skip
    assert flavors["python_function"]["loader_module"] == "envkit.tensorflow"
    assert flavors["python_function"]["data"] == "data"
    data = tf_keras_model / "data"
    assert sorted(p.name for p in data.iterdir()) == [
        "keras_module.txt", "model.keras", "save_format.txt",
    ]  # fmt: skip
    assert (data / "keras_module.txt").read_text() == "tensorflow.keras"
    lines = (tf_keras_model / "requirements.txt").read_text().splitlines()
    assert TF_PIN in lines


def test_the_tensorflow_keras_model_loads_and_predicts(tf_keras_model, expected):
    loaded = envkit.tensorflow.load_model(tf_keras_model)
    np.testing.assert_allclose(loaded.predict(X, verbose=0), expected, rtol=1e-6)
    predicted = envkit.pyfunc.load_model(tf_keras_model).predict(X[:5])
    np.testing.assert_allclose(predicted, expected[:5], rtol=1e-6)


def test_a_tf_module_is_a_savedmodel_and_its_pyfunc_calls_it(tf_module_model):
    flavors = _mlmodel(tf_module_model)["flavors"]
    assert flavors["tensorflow"] == {
        "code": None, "saved_model_dir": "tf2model", "model_type": "tf2-module",
    }  # fmt: skip
    assert "data" not in flavors["python_function"]
    assert (tf_module_model / "tf2model" / "saved_model.pb").is_file()
    loaded = envkit.tensorflow.load_model(tf_module_model)
    np.testing.assert_allclose(loaded(tf.constant(X[:3])).numpy(), _module_expected(X[:3]))
    pyfunc = envkit.pyfunc.load_model(tf_module_model)
    np.testing.assert_allclose(pyfunc.predict(X[:4]), _module_expected(X[:4]), rtol=1e-6)
    predicted = pyfunc.predict(tf.constant(X[:4]))
    np.testing.assert_allclose(predicted, _module_expected(X[:4]), rtol=1e-6)


H5_MLMODEL = """
flavors:
  python_function:
    data: data
    env:
      virtualenv: python_env.yaml
    loader_module: mlflow.tensorflow
    python_version: {python}
  tensorflow:
    code: null
    data: data
    keras_version: {keras}
    model_type: keras
    save_format: h5
mlflow_version: 2.9.2
utc_time_created: '2023-12-01 10:00:00.000000'
"""


def test_an_mlflow_2_keras_model_in_the_h5_format_loads(tmp_path, net, expected):
    """MLflow 2.x wrote a Keras model as data/model.h5 with save_format.txt 'h5' when asked
    (save_format="h5"); Keras 3 still reads that legacy format."""
    data = tmp_path / "data"
    data.mkdir()
    net.save(data / "model.h5")
    (data / "keras_module.txt").write_text("tensorflow.keras")
    (data / "save_format.txt").write_text("h5")
    python = platform.python_version()
    (tmp_path / "MLmodel").write_text(H5_MLMODEL.format(python=python, keras=keras.__version__))
    (tmp_path / "python_env.yaml").write_text(f"python: {python}\nbuild_dependencies: []\n")
    (tmp_path / "requirements.txt").write_text(f"{TF_PIN}\n{KERAS_PIN}\n")

    loaded = envkit.tensorflow.load_model(tmp_path)
    np.testing.assert_allclose(loaded.predict(X, verbose=0), expected, rtol=1e-5)
    predicted = envkit.pyfunc.load_model(tmp_path).predict(X[:5])
    np.testing.assert_allclose(predicted, expected[:5], rtol=1e-5)


def test_a_keras_2_savedmodel_on_keras_3_is_a_format_error_that_says_what_to_do(tmp_path):
    """MLflow 2.x's default for a Keras model was Keras 2's SavedModel directory (data/model/,
    save_format.txt 'tf'), which Keras 3 cannot read; the layout is written here with
    tf.saved_model (Keras 3 cannot write Keras 2's)."""
    from envkit.errors import ModelFormatError

    data = tmp_path / "data"
    tf.saved_model.save(tf_models.module(), str(data / "model"))
    (data / "keras_module.txt").write_text("tensorflow.keras")
    (data / "save_format.txt").write_text("tf")
    python = platform.python_version()
    mlmodel = H5_MLMODEL.format(python=python, keras="2.12.0").replace("h5", "tf")
    (tmp_path / "MLmodel").write_text(mlmodel)
    (tmp_path / "python_env.yaml").write_text(f"python: {python}\nbuild_dependencies: []\n")
    (tmp_path / "requirements.txt").write_text("tensorflow==2.12.0\n")
    message = r"data/model/ is a SavedModel written by Keras 2, which Keras 3\.\d+\.\d+ cannot"
    with pytest.raises(ModelFormatError, match=message):
        envkit.tensorflow.load_model(tmp_path)
    with pytest.raises(ModelFormatError, match="TensorFlow 2.15 or older"):
        envkit.pyfunc.load_model(tmp_path)


CUSTOM_SAVE = """
import sys
import keras, numpy as np
import envkit.tensorflow

def scaled_tanh(x):  # defined here, in __main__: cloudpickle keeps it by value
    return 2.0 * keras.ops.tanh(x)

keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation=scaled_tanh)])
envkit.tensorflow.save_model(
    model, sys.argv[1], custom_objects={"scaled_tanh": scaled_tanh}, pip_requirements=sys.argv[2:]
)
x = np.linspace(0, 1, 8, dtype="float32").reshape(2, 4)
print(model.predict(x, verbose=0).tolist())
"""

CUSTOM_LOAD = """
import sys
import numpy as np
import envkit.pyfunc

x = np.linspace(0, 1, 8, dtype="float32").reshape(2, 4)
print(envkit.pyfunc.load_model(sys.argv[1]).predict(x).tolist())
"""


def test_custom_objects_are_kept_beside_the_model_and_load_in_a_fresh_process(tmp_path):
    path = tmp_path / "custom"
    run = {"capture_output": True, "text": True, "timeout": 300}
    saved = subprocess.run([sys.executable, "-c", CUSTOM_SAVE, str(path), KERAS_PIN, TF_PIN], **run)
    assert saved.returncode == 0, saved.stderr[-3000:]
    assert (path / "data" / "custom_objects.cloudpickle").is_file()
    loaded = subprocess.run([sys.executable, "-c", CUSTOM_LOAD, str(path)], **run)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    last = [line for line in saved.stdout.splitlines() if line.startswith("[")][-1]
    assert json.loads(loaded.stdout.strip().splitlines()[-1]) == json.loads(last)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo custom objects ran",))


def test_a_malicious_custom_objects_pickle_is_refused_before_it_runs(tf_keras_model, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(tf_keras_model, copy)
    (copy / "data" / "custom_objects.cloudpickle").write_bytes(pickle.dumps({"x": _Exploit()}))
    with pytest.raises(UnsafeModelError, match=r"custom_objects\.cloudpickle"):
        envkit.tensorflow.load_model(copy)
    with pytest.raises(UnsafeModelError):
        envkit.pyfunc.load_model(copy)


def test_an_unknown_keras_module_is_refused(tf_keras_model, tmp_path):
    from envkit.errors import ModelFormatError

    copy = tmp_path / "model"
    shutil.copytree(tf_keras_model, copy)
    (copy / "data" / "keras_module.txt").write_text("os")
    with pytest.raises(ModelFormatError, match="keras module 'os'"):
        envkit.tensorflow.load_model(copy)


# --- the backend the capture records -------------------------------------------------------------

TORCH_SAVE = """
import sys
sys.path.insert(0, sys.argv[2])
from flavor_models import keras as keras_models
import envkit.keras

envkit.keras.save_model(keras_models.sequential(), sys.argv[1],
                        input_example=keras_models.features()[:3])
"""


@pytest.fixture(scope="session")
def torch_backed_model(tmp_path_factory) -> Path:
    """The sequential model trained and saved on Keras' torch backend (KERAS_BACKEND=torch)."""
    pytest.importorskip("torch")
    path = tmp_path_factory.mktemp("keras-torch") / "net"
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    saved = subprocess.run(
        [sys.executable, "-c", TORCH_SAVE, str(path), str(REPO / "tests")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert saved.returncode == 0, saved.stderr[-3000:]
    return path


def test_the_capture_records_the_torch_backend_not_tensorflow(torch_backed_model):
    import torch

    assert _mlmodel(torch_backed_model)["flavors"]["keras"]["keras_backend"] == "torch"
    lines = (torch_backed_model / "requirements.txt").read_text().splitlines()
    assert f"torch=={torch.__version__}" in lines and KERAS_PIN in lines
    assert not any(line.startswith(("tensorflow", "jax")) for line in lines)


@pytest.mark.timeout(1500)
def test_validate_loads_a_torch_backed_model_on_torch(torch_backed_model, shared_cache):
    """No KERAS_BACKEND reaches the sandbox (the host's variables are hidden) and its
    environment has no TensorFlow: the model loads because envkit selects the recorded
    backend."""
    proc = envkit_cli("validate", str(torch_backed_model), "--format", "json", home=shared_cache)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json_report(proc)
    assert report["ok"]
    assert not any(r.startswith("tensorflow") for r in report["spec"]["requirements"])


# --- MLflow, both ways ---------------------------------------------------------------------------

INTEROP = """
import json, sys
from pathlib import Path

request = json.loads(Path(sys.argv[1]).read_text())
out = Path(request["out"])
namespace = {}
for name, script in request["mlflow_saves"].items():
    sys.argv = ["-c", str(out / name)]
    namespace = {"__name__": "__main__"}
    exec(compile(script, f"<{name}>", "exec"), namespace)

import keras, mlflow.keras, mlflow.pyfunc, mlflow.tensorflow, yaml
import numpy as np

x = namespace["features"]()[:5]
result = {}
models = dict(request["envkit_models"])
models.update({name: str(out / name) for name in request["mlflow_saves"]})
for name, path in models.items():
    flavors = yaml.safe_load(Path(path, "MLmodel").read_text())["flavors"]
    native = (mlflow.keras if "keras" in flavors else mlflow.tensorflow).load_model(path)
    if hasattr(native, "predict"):
        native_out = native.predict(x, verbose=0)
    elif hasattr(native, "serve"):
        native_out = native.serve(x).numpy()
    else:
        native_out = native(x).numpy()
    result[name] = {
        "native": np.asarray(native_out).tolist(),
        "pyfunc": np.asarray(mlflow.pyfunc.load_model(path).predict(x)).tolist(),
    }
print(json.dumps(result))
"""


@pytest.fixture(scope="session")
def mlflow_tf(
    tmp_path_factory, keras_model, keras_exported_model, tf_keras_model, tf_module_model,
    mlflow_tf_python,
) -> dict:  # fmt: skip
    """``out``: where MLflow saved its models; ``results``: what MLflow predicted with each."""
    root = tmp_path_factory.mktemp("tf-mlflow")
    request = root / "request.json"
    envkit_models = {
        "envkit-keras": str(keras_model), "envkit-keras-exported": str(keras_exported_model),
        "envkit-tf-keras": str(tf_keras_model), "envkit-tf-module": str(tf_module_model),
    }  # fmt: skip
    request.write_text(
        json.dumps(
            {"out": str(root), "mlflow_saves": MLFLOW_SAVES, "envkit_models": envkit_models}
        )
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [str(mlflow_tf_python), "-c", textwrap.dedent(INTEROP), str(request)],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return {"out": root, "results": json.loads(done.stdout.strip().splitlines()[-1])}


@pytest.mark.mlflow
@pytest.mark.parametrize(
    ("mine", "theirs", "flavor"),
    [("keras_model", "mlflow-keras", "keras"), ("tf_keras_model", "mlflow-tf-keras", "tensorflow"),
     ("tf_module_model", "mlflow-tf-module", "tensorflow")],
)  # fmt: skip
def test_envkit_writes_the_sections_and_files_mlflow_writes(
    request, mlflow_tf, mine, theirs, flavor
):
    ours = request.getfixturevalue(mine)
    their_path = mlflow_tf["out"] / theirs
    assert _mlmodel(ours)["flavors"][flavor] == _mlmodel(their_path)["flavors"][flavor]
    ours_pyfunc = _mlmodel(ours)["flavors"]["python_function"]
    their_pyfunc = _mlmodel(their_path)["flavors"]["python_function"]
    for key in ("data", "env", "python_version"):
        assert ours_pyfunc.get(key) == their_pyfunc.get(key), key
    their_signature = _mlmodel(their_path).get("signature")
    if their_signature is None:  # mlflow.keras infers none from the example; envkit does
        assert flavor == "keras" and "tensor-spec" in _mlmodel(ours)["signature"]["inputs"]
    else:
        assert _mlmodel(ours)["signature"] == their_signature

    def files(root: Path) -> list[str]:
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

    data = "tf2model" if flavor == "tensorflow" and "module" in mine else "data"
    assert files(ours / data) == files(their_path / data)


@pytest.mark.mlflow
@pytest.mark.parametrize(
    "name", ["envkit-keras", "envkit-keras-exported", "envkit-tf-keras", "envkit-tf-module"]
)
def test_mlflow_loads_envkits_models_and_predicts_the_same(mlflow_tf, expected, name):
    result = mlflow_tf["results"][name]
    want = _module_expected(X[:5]) if name.endswith("module") else expected[:5]
    np.testing.assert_allclose(result["native"], want, rtol=1e-5)
    np.testing.assert_allclose(result["pyfunc"], want, rtol=1e-5)


@pytest.mark.mlflow
@pytest.mark.parametrize("name", ["mlflow-keras", "mlflow-tf-keras", "mlflow-tf-module"])
def test_envkit_loads_mlflows_models_without_mlflow(mlflow_tf, name):
    path = mlflow_tf["out"] / name
    want = mlflow_tf["results"][name]["pyfunc"]
    pyfunc = envkit.pyfunc.load_model(path)
    assert pyfunc.loader_module.startswith("mlflow.")
    np.testing.assert_allclose(pyfunc.predict(X[:5]), want, rtol=1e-5)
    flavor = envkit.keras if name == "mlflow-keras" else envkit.tensorflow
    native = flavor.load_model(path)
    native_out = native(tf.constant(X[:5])).numpy() if name.endswith("module") else (
        native.predict(X[:5], verbose=0)
    )  # fmt: skip
    np.testing.assert_allclose(native_out, want, rtol=1e-5)


# --- validate and serve --------------------------------------------------------------------------


@pytest.mark.timeout(1500)
def test_validate_and_serve_rebuild_tensorflow_cpu(keras_model, tf_module_model, expected,
                                                   shared_cache):  # fmt: skip
    """`envkit validate` rebuilds the environment with tensorflow-cpu and predicts the input
    example (the keras model, then the tf.Module: the same requirements, the same cached
    environment); `envkit serve` answers what the model predicts."""
    for model in (keras_model, tf_module_model):
        proc = envkit_cli("validate", str(model), "--format", "json", home=shared_cache)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        report = json_report(proc)
        assert report["ok"] and report["input"]["source"] == "input_example"
        assert TF_PIN in report["spec"]["requirements"]

    server = Server(keras_model, env={**os.environ, "ENVKIT_HOME": str(shared_cache)})
    try:
        server.wait_ready(timeout=900)
        status, body = post_json(server.port, {"inputs": X[:4].tolist()})
        assert status == 200, body
        np.testing.assert_allclose(body["predictions"], expected[:4], rtol=1e-5)
    finally:
        assert server.stop() == 0, server.output()


# --- MLflow 1.x's TF1 estimator models -----------------------------------------------------------

TF1_MLMODEL = """\
artifact_path: model
flavors:
  python_function:
    env: conda.yaml
    loader_module: mlflow.tensorflow
    python_version: 3.8.10
  tensorflow:
    meta_graph_tags:
    - serve
    saved_model_dir: tfmodel
    signature_def_key: predict
utc_time_created: '2021-06-01 10:00:00.000000'
"""


def test_an_mlflow_1_estimator_model_loads_by_its_signature(tmp_path):
    """MLflow 1.x wrote no model_type: a SavedModel read by its tags and signature key, its
    pyfunc fed the signature's named inputs from a DataFrame's columns (or a dict)."""
    import pandas as pd

    class Doubler(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def predict(self, x):
            return {"y": x * 2.0, "pair": tf.stack([x, x + 1.0], axis=1)}

    module = Doubler()
    tf.saved_model.save(module, str(tmp_path / "tfmodel"), signatures={"predict": module.predict})
    here = platform.python_version()  # (a model of another Python gets a mismatch warning)
    (tmp_path / "MLmodel").write_text(TF1_MLMODEL.replace("3.8.10", here))
    (tmp_path / "conda.yaml").write_text(f"name: mlflow-env\ndependencies:\n- python={here}\n")

    predicted = envkit.pyfunc.load_model(tmp_path).predict(pd.DataFrame({"x": [1.0, 2.5]}))
    assert predicted["y"].tolist() == [2.0, 5.0]
    assert predicted["pair"].tolist() == [[1.0, 2.0], [2.5, 3.5]]
    infer = envkit.tensorflow.load_model(tmp_path)
    assert infer(x=tf.constant([3.0]))["y"].numpy().tolist() == [6.0]
    broken = tmp_path.parent / f"{tmp_path.name}-wrong-key"
    shutil.copytree(tmp_path, broken)
    (broken / "MLmodel").write_text(
        (tmp_path / "MLmodel")
        .read_text()
        .replace("signature_def_key: predict", "signature_def_key: x")
    )
    from envkit.errors import ModelFormatError

    with pytest.raises(ModelFormatError, match=r"no signature 'x' \(it has: predict\)"):
        envkit.pyfunc.load_model(broken)
