"""Older MLflow models: unpinned build dependencies held to the model's time (uv
--exclude-newer), and the hint for ``pkg_resources``, which setuptools 81 dropped.

The models here are envkit's with the two things an MLflow 2.12 model has edited in: unpinned
``build_dependencies`` (pip, setuptools, wheel) and an older ``utc_time_created``; the model's
code imports ``pkg_resources`` (as libraries of that time did).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.timeout(900)


def envkit_cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "envkit", *args], capture_output=True, text=True,
        env={**os.environ, "ENVKIT_HOME": str(home)}, timeout=900,
    )  # fmt: skip


def old_model(path: Path, created: str) -> Path:
    import envkit.pyfunc

    class UsesPkgResources(envkit.pyfunc.PythonModel):  # pickled by value (a local class)
        def predict(self, context, model_input, params=None):
            import pkg_resources

            return [pkg_resources.__name__ for _ in range(len(model_input))]

    with warnings.catch_warnings():
        # The host's own setuptools may be >= 81 too (the test extra's libraries pull the
        # newest): the example then fails here as well, which is not what the tests look at.
        warnings.filterwarnings("ignore", message="the model failed to predict on its input")
        envkit.pyfunc.save_model(
            path, python_model=UsesPkgResources(), input_example=["a"], pip_requirements=["pandas"]
        )
    env_file = path / "python_env.yaml"
    env = yaml.safe_load(env_file.read_text())
    env["build_dependencies"] = ["pip", "setuptools", "wheel"]  # as MLflow 2.x writes them
    env_file.write_text(yaml.safe_dump(env))
    mlmodel = yaml.safe_load((path / "MLmodel").read_text())
    mlmodel["utc_time_created"] = created
    (path / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    return path


def test_unpinned_build_dependencies_are_those_of_the_models_time(tmp_path):
    model = old_model(tmp_path / "m", "2024-04-16 09:12:31.123456")
    result = envkit_cli("validate", str(model), "--format", "json", home=tmp_path / "home")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["spec"]["exclude_newer"] == "2024-04-16T09:12:31Z"
    assert any("uv --exclude-newer" in n and "2024-04-16" in n for n in report["spec_notes"])
    [site] = Path(report["cache"]["path"]).glob("lib/python*/site-packages")
    [setuptools] = site.glob("setuptools-*.dist-info")
    major = int(setuptools.name.split("-")[1].split(".")[0])
    assert major < 70, setuptools.name  # released before April 2024


def test_pkg_resources_missing_gets_the_setuptools_hint_and_the_override_fixes_it(tmp_path):
    # Made "now": the newest setuptools comes in, without pkg_resources (setuptools >= 81).
    model = old_model(tmp_path / "m", "2099-01-01 00:00:00")
    home = tmp_path / "home"
    result = envkit_cli("validate", str(model), "--format", "json", home=home)
    report = json.loads(result.stdout)
    [site] = Path(report["cache"]["path"]).glob("lib/python*/site-packages")
    [setuptools] = site.glob("setuptools-*.dist-info")
    if int(setuptools.name.split("-")[1].split(".")[0]) < 81:
        pytest.skip(f"the index has no setuptools >= 81 ({setuptools.name})")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "--override 'setuptools<81'" in report["headline"]
    fixed = envkit_cli("validate", str(model), "--override", "setuptools<81", home=home)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr


# --- models written by a real MLflow 2.12 (its own virtualenv, frozen at May 2024) -------------

_SAVE_WITH_MLFLOW2 = """
import sys
import numpy as np, pandas as pd
import mlflow.pyfunc, mlflow.sklearn
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

out = sys.argv[1]
X, y = load_iris(return_X_y=True, as_frame=True)
mlflow.sklearn.save_model(
    LogisticRegression(max_iter=500).fit(X, y), f"{out}/sk", input_example=X.head(3)
)

class Doubler(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input * 2

mlflow.pyfunc.save_model(
    f"{out}/frame", python_model=Doubler(), input_example=pd.DataFrame({"x": [1.0, 2.0]})
)
mlflow.pyfunc.save_model(  # MLflow 2.x writes {"inputs": ...} with format: tf-serving
    f"{out}/tensor", python_model=Doubler(), input_example=np.array([[1.0, 2.0], [3.0, 4.0]])
)
"""


@pytest.fixture(scope="session")
def mlflow2_models(mlflow2_python, tmp_path_factory) -> Path:
    """Three models as MLflow 2.12.2 writes them: sklearn, and a cloudpickled PythonModel with
    a DataFrame and with a tensor input example. Each MLmodel's creation time is set back to
    May 2024, when that MLflow was current (what a user's model of that time says)."""
    root = tmp_path_factory.mktemp("mlflow2-models")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [str(mlflow2_python), "-c", _SAVE_WITH_MLFLOW2, str(root)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    for name in ("sk", "frame", "tensor"):
        mlmodel = yaml.safe_load((root / name / "MLmodel").read_text())
        assert mlmodel["mlflow_version"] == "2.12.2"
        mlmodel["utc_time_created"] = "2024-05-14 10:20:30.000000"
        (root / name / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    return root


def test_an_mlflow_2_sklearn_model_validates_with_envkits_loader(mlflow2_models, tmp_path):
    result = envkit_cli(
        "validate", str(mlflow2_models / "sk"), "--format", "json", home=tmp_path / "home"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["loader"] == "envkit.pyfunc.load_model"
    assert report["output"]["shape"] == [3]


def test_mlflow_2_python_models_validate_with_build_tools_of_their_time(mlflow2_models, tmp_path):
    """MLflow 2.12 imports pkg_resources; the unpinned setuptools of May 2024 still has it.
    The MLflow 2.x tensor example ({"inputs": ...}, format tf-serving) is read as a tensor."""
    home = tmp_path / "home"
    frame = envkit_cli("validate", str(mlflow2_models / "frame"), "--format", "json", home=home)
    assert frame.returncode == 0, frame.stdout + frame.stderr
    report = json.loads(frame.stdout)
    assert report["spec"]["exclude_newer"] == "2024-05-14T10:20:30Z"
    assert report["output"]["type"] == "pandas.DataFrame"
    tensor = envkit_cli("validate", str(mlflow2_models / "tensor"), "--format", "json", home=home)
    assert tensor.returncode == 0, tensor.stdout + tensor.stderr
    report = json.loads(tensor.stdout)
    assert report["cache"]["hit"]  # the same requirements: one environment for both
    assert report["output"]["shape"] == [2, 2] and "[[2., 4.]" in report["output"]["preview"]


def test_mlflow_2_made_today_fails_with_the_setuptools_hint_not_mlflow_missing(
    mlflow2_models, tmp_path
):
    """The same MLflow 2.12 model, dated today: the newest setuptools has no pkg_resources, so
    MLflow (installed) cannot be imported; the report says so and gives the override."""
    model = tmp_path / "frame"
    shutil.copytree(mlflow2_models / "frame", model)
    mlmodel = yaml.safe_load((model / "MLmodel").read_text())
    mlmodel["utc_time_created"] = "2099-01-01 00:00:00.000000"
    (model / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    home = tmp_path / "home"
    result = envkit_cli("validate", str(model), "--format", "json", home=home)
    report = json.loads(result.stdout)
    [site] = Path(report["cache"]["path"]).glob("lib/python*/site-packages")
    [setuptools] = site.glob("setuptools-*.dist-info")
    if int(setuptools.name.split("-")[1].split(".")[0]) < 81:
        pytest.skip(f"the index has no setuptools >= 81 ({setuptools.name})")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "MLflow is installed but cannot be imported" in report["headline"]
    assert "--override 'setuptools<81'" in report["headline"]
