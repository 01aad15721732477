"""Parity with MLflow's public API (issue 14, "Parity"): constants, conda_env, params."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import envkit.pyfunc
import envkit.sklearn
from envkit.errors import UsageError
from envkit.pyfunc import PythonModel


class Echo(PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def test_pyfunc_constants_have_mlflows_values(tmp_path):
    # The values of mlflow/pyfunc/__init__.py (and mlflow.pyfunc.model.MODEL_CONFIG) in 3.17.2.
    assert envkit.pyfunc.FLAVOR_NAME == "python_function"
    assert envkit.pyfunc.MODEL_CONFIG == "config"
    assert envkit.pyfunc.MAIN == "loader_module"
    assert envkit.pyfunc.CODE == "code"
    assert envkit.pyfunc.DATA == "data"
    assert envkit.pyfunc.ENV == "env"
    assert envkit.pyfunc.PY_VERSION == "python_version"
    model = envkit.pyfunc.save_model(tmp_path / "m", Echo(), model_config={"n": 1})
    conf = model.flavors[envkit.pyfunc.FLAVOR_NAME]
    assert conf[envkit.pyfunc.MODEL_CONFIG] == {"n": 1}
    assert conf[envkit.pyfunc.MAIN] == "envkit.pyfunc.model"
    assert envkit.pyfunc.PY_VERSION in conf and envkit.pyfunc.ENV in conf


def test_sklearn_constants_have_mlflows_values():
    assert envkit.sklearn.FLAVOR_NAME == "sklearn"
    assert envkit.sklearn.SERIALIZATION_FORMAT_PICKLE == "pickle"
    assert envkit.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE == "cloudpickle"
    assert envkit.sklearn.SERIALIZATION_FORMAT_SKOPS == "skops"
    assert set(envkit.sklearn.SUPPORTED_SERIALIZATION_FORMATS) == {"pickle", "cloudpickle", "skops"}


CONDA = {
    "name": "mine",
    "channels": ["conda-forge"],
    "dependencies": ["python=3.11", "pip", {"pip": ["cloudpickle", "ektest-a==1.0"]}],
}


def _read(model_dir: Path) -> tuple[list[str], dict, dict]:
    reqs = (model_dir / "requirements.txt").read_text().splitlines()
    conda = yaml.safe_load((model_dir / "conda.yaml").read_text())
    python_env = yaml.safe_load((model_dir / "python_env.yaml").read_text())
    return reqs, conda, python_env


@pytest.mark.parametrize("as_file", [False, True])
def test_pyfunc_conda_env_sets_conda_yaml_and_drives_requirements(tmp_path, as_file):
    conda_env = CONDA
    if as_file:
        conda_env = tmp_path / "env.yaml"
        conda_env.write_text(yaml.safe_dump(CONDA))
    envkit.pyfunc.save_model(tmp_path / "m", Echo(), conda_env=conda_env)
    reqs, conda, python_env = _read(tmp_path / "m")
    assert "ektest-a==1.0" in reqs and "cloudpickle" in reqs
    assert conda["name"] == "mine" and "python=3.11" in conda["dependencies"]
    assert {"pip": reqs} in conda["dependencies"]
    assert "-r requirements.txt" in python_env["dependencies"]


def test_sklearn_conda_env_sets_conda_yaml(tmp_path, iris_pipeline):
    from importlib.metadata import version

    pins = [f"{d}=={version(d)}" for d in ("scikit-learn", "cloudpickle")]
    conda_env = {**CONDA, "dependencies": ["python=3.11", {"pip": [*pins, "ektest-a==1.0"]}]}
    envkit.sklearn.save_model(iris_pipeline, tmp_path / "m", conda_env=conda_env)
    reqs, conda, _ = _read(tmp_path / "m")
    assert "ektest-a==1.0" in reqs
    assert conda["name"] == "mine"


@pytest.mark.parametrize("other", ["pip_requirements", "extra_pip_requirements"])
def test_conda_env_with_pip_requirements_is_a_clear_error(tmp_path, other, iris_pipeline):
    with pytest.raises(UsageError, match="Only one of `conda_env`"):
        envkit.pyfunc.save_model(tmp_path / "p", Echo(), conda_env=CONDA, **{other: ["x"]})
    with pytest.raises(UsageError, match="Only one of `conda_env`"):
        envkit.sklearn.save_model(iris_pipeline, tmp_path / "s", conda_env=CONDA, **{other: ["x"]})
    assert not (tmp_path / "p").exists() and not (tmp_path / "s").exists()


DOC_MLMODEL = """time_created: 2018-05-25T17:28:53.35
flavors:
  sklearn:
    sklearn_version: 0.19.1
    pickled_model: model.pkl
  python_function:
    loader_module: mlflow.sklearn
"""


def _envkit_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "envkit", *args], capture_output=True, text=True, timeout=120
    )


def test_info_shows_the_recorded_time_created_and_invents_no_uuid(tmp_path):
    # The documentation's abbreviated MLmodel: time_created, no utc_time_created, no uuid.
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "MLmodel").write_text(DOC_MLMODEL)
    (tmp_path / "m" / "model.pkl").write_bytes(b"")
    first = _envkit_cli("info", str(tmp_path / "m"), "--trust-model")
    assert first.returncode == 0, first.stderr
    assert "created: 2018-05-25T17:28:53.350000 (as recorded in time_created)" in first.stdout
    assert "uuid: unknown (not recorded)" in first.stdout
    data = json.loads(_envkit_cli("info", str(tmp_path / "m"), "--format", "json").stdout)
    assert data["model_uuid"] is None and data["utc_time_created"] is None
    assert data["time_created"] == "2018-05-25T17:28:53.350000"
    (tmp_path / "m" / "MLmodel").write_text("flavors:\n  python_function: {}\n")
    bare = _envkit_cli("info", str(tmp_path / "m"))
    assert "created: unknown (not recorded)" in bare.stdout, bare.stderr


def test_predict_ignores_an_undeclared_param_with_one_warning(tmp_path, monkeypatch):
    from envkit.models.enforcement import IgnoredParamsWarning
    from envkit.models.signature import infer_signature

    monkeypatch.delenv("ENVKIT_STRICT_PARAMS", raising=False)
    signature = infer_signature(["a"], ["a"], params={"k": 1})
    envkit.pyfunc.save_model(tmp_path / "m", Echo(), signature=signature)
    model = envkit.pyfunc.load_model(tmp_path / "m")
    with pytest.warns(IgnoredParamsWarning, match="'other' are not in the model signature") as w:
        out = model.predict(["x"], params={"k": 2, "other": 3})
    assert list(out.iloc[:, 0]) == ["x"]
    assert len(w) == 1 and w[0].filename == __file__
    from envkit.errors import SchemaEnforcementError

    with pytest.raises(SchemaEnforcementError, match="'other' is not in the model signature"):
        model.predict(["x"], params={"other": 3}, strict_params=True)
