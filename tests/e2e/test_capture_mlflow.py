"""Capture against real MLflow (in its own virtualenv): re-inferring models MLflow wrote, and
the environment variable MLflow 3.17.2 does not record for its own documented example."""

from __future__ import annotations

import json

import pytest
import yaml

import envkit.pyfunc
from envkit.cli import main

pytestmark = [pytest.mark.mlflow, pytest.mark.slow]


@pytest.fixture(scope="module")
def mlflow_seed_model(run_in_mlflow, tmp_path_factory):
    """MLflow's documented example of a model that reads an environment variable."""
    root = tmp_path_factory.mktemp("mlflow-capture")
    run_in_mlflow(
        """
        import os, sys
        import pandas as pd
        import mlflow.pyfunc

        out = sys.argv[1]
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
    return root / "seed"


def test_infer_on_an_mlflow_model_keeps_mlflow_and_mlflow_still_loads_it(
    mlflow_models, run_in_mlflow, tmp_path, capsys
):
    import shutil

    model = tmp_path / "sk"
    shutil.copytree(mlflow_models / "sk_skops", model)
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
    mlflow_seed_model, tmp_path, monkeypatch
):
    import pandas as pd

    assert not (mlflow_seed_model / "environment_variables.txt").exists()

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


def test_infer_on_an_mlflow_pyfunc_model_records_mlflow_not_what_mlflow_imports(
    mlflow_seed_model, run_in_mlflow, tmp_path
):
    """A cloudpickled mlflow.pyfunc.PythonModel loads only through MLflow's loader (run where
    MLflow is installed): the model needs mlflow, cloudpickle and pandas (it predicts on a
    DataFrame), not the ~30 packages MLflow itself imports while loading."""
    import shutil

    model = tmp_path / "seed"
    shutil.copytree(mlflow_seed_model, model)
    out = run_in_mlflow(
        """
        import json, os, sys
        os.environ["TEST_API_KEY"] = "secret-value-123"
        from envkit.cli import main
        main(["infer", sys.argv[1], "--write", "--format", "json"])
        """,
        str(model),
        with_envkit=True,
    )
    result = json.loads(out)
    names = {line.split("==")[0] for line in result["inferred"]}
    assert result["inferred"][0] == "mlflow==3.17.2"
    assert "cloudpickle" in names
    for not_the_models in ("fastapi", "starlette", "opentelemetry-api", "databricks-sdk", "flask"):
        assert not_the_models not in names
    assert len(names) <= 6, result["inferred"]
    written = (model / "requirements.txt").read_text().splitlines()
    assert written == result["inferred"]
    assert (model / "environment_variables.txt").read_text().splitlines()[-1] == "TEST_API_KEY"
