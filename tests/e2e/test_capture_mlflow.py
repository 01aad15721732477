"""Capture against real MLflow (in its own virtualenv): re-inferring models MLflow wrote, and
the environment variable MLflow 3.17.2 does not record for its own documented example."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

import envkit.pyfunc
from envkit.cli import main

pytestmark = [pytest.mark.mlflow, pytest.mark.slow]


def run_in_mlflow(python: Path, script: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [str(python), "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="module")
def mlflow_written(mlflow_python, tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-capture")
    run_in_mlflow(
        mlflow_python,
        """
        import os, sys
        import pandas as pd
        import mlflow.pyfunc, mlflow.sklearn
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        out = sys.argv[1]
        X, y = load_iris(return_X_y=True, as_frame=True)
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(X, y)
        mlflow.sklearn.save_model(clf, f"{out}/sk", input_example=X.head(3))

        os.environ["TEST_API_KEY"] = "secret-value-123"
        class MyModel(mlflow.pyfunc.PythonModel):
            def predict(self, context, model_input, params=None):
                import os
                if os.environ.get("TEST_API_KEY"):
                    return model_input
                raise Exception("API key not found")
        mlflow.pyfunc.save_model(
            f"{out}/seed", python_model=MyModel(),
            input_example=pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}),
        )
        """,
        str(root),
    )
    return root


def test_infer_on_an_mlflow_model_keeps_mlflow_and_mlflow_still_loads_it(
    mlflow_written, mlflow_python, tmp_path, capsys
):
    import shutil

    model = tmp_path / "sk"
    shutil.copytree(mlflow_written / "sk", model)
    before = (model / "requirements.txt").read_text().splitlines()
    assert main(["infer", str(model), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["recorded"] == before
    assert result["inferred"][0] == "mlflow==3.17.2"  # the model's framework stays first
    added = {c["name"] for c in result["changes"] if c["kind"] == "added"}
    assert {"joblib", "threadpoolctl"} <= added  # imported and declared by scikit-learn
    assert not any(c["kind"] == "removed" for c in result["changes"])

    assert main(["infer", str(model), "--write"]) == 0
    capsys.readouterr()
    written = (model / "requirements.txt").read_text().splitlines()
    assert written == result["inferred"]
    assert not (model / "metadata").exists()  # MLflow's save_model writes none; envkit adds none
    assert (model / "requirements.provenance.json").is_file()
    out = run_in_mlflow(
        mlflow_python,
        """
        import sys, mlflow.pyfunc
        from sklearn.datasets import load_iris
        X, _ = load_iris(return_X_y=True, as_frame=True)
        print(mlflow.pyfunc.load_model(sys.argv[1]).predict(X.head(2)).tolist())
        """,
        str(model),
    )
    assert out.strip() == "[0, 0]"


def test_mlflow_misses_the_seed_env_var_and_envkit_records_it(
    mlflow_written, tmp_path, monkeypatch
):
    import pandas as pd

    assert not (mlflow_written / "seed" / "environment_variables.txt").exists()

    class MyModel(envkit.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            import os

            if os.environ.get("TEST_API_KEY"):
                return model_input
            raise Exception("API key not found")

    monkeypatch.setenv("TEST_API_KEY", "secret-value-123")
    envkit.pyfunc.save_model(
        tmp_path / "seed",
        python_model=MyModel(),
        input_example=pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}),
    )
    lines = (tmp_path / "seed" / "environment_variables.txt").read_text().splitlines()
    assert lines[-1] == "TEST_API_KEY"
    assert yaml.safe_load((tmp_path / "seed" / "MLmodel").read_text())["env_vars"] == [
        "TEST_API_KEY"
    ]
