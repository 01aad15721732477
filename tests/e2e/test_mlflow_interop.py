"""Interop with real MLflow, which lives in its own virtualenv (envkit never imports it here).

Both directions: models MLflow wrote load in envkit without MLflow installed, and models envkit
wrote load with MLflow's own loaders and predict the same values.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

import envkit.pyfunc
import envkit.sklearn
from envkit.errors import LoaderImportError

pytestmark = [pytest.mark.mlflow, pytest.mark.slow]


def test_mlflow_is_not_installed_in_the_test_environment():
    # The "without MLflow" half of the interop tests depends on this.
    assert importlib.util.find_spec("mlflow") is None


@pytest.mark.parametrize("name", ["sk_skops", "sk_pickle"])
def test_mlflow_sklearn_models_load_in_envkit_without_mlflow(mlflow_models, iris, name):
    X, _ = iris
    expected = json.loads((mlflow_models / "expected.json").read_text())["sk"]
    pyfunc = envkit.pyfunc.load_model(mlflow_models / name)
    assert pyfunc.loader_module == "mlflow.sklearn"
    np.testing.assert_array_equal(pyfunc.predict(X.head(10)), expected)
    estimator = envkit.sklearn.load_model(mlflow_models / name)
    np.testing.assert_array_equal(estimator.predict(X.head(10)), expected)
    assert "mlflow" not in __import__("sys").modules


def test_mlflow_signature_and_example_are_read(mlflow_models):
    model = envkit.pyfunc.load_model(mlflow_models / "sk_skops")
    names = [c.name for c in model.metadata.signature.inputs.inputs]
    assert names == [
        "sepal length (cm)",
        "sepal width (cm)",
        "petal length (cm)",
        "petal width (cm)",
    ]
    assert model.metadata.saved_input_example_info["type"] == "dataframe"


def test_mlflow_python_model_without_mlflow_is_a_clear_error(mlflow_models):
    from envkit.deps.mismatch import DependencyMismatchWarning

    with pytest.warns(DependencyMismatchWarning, match="mlflow"):
        with pytest.raises(LoaderImportError) as excinfo:
            envkit.pyfunc.load_model(mlflow_models / "py_model")
    message = str(excinfo.value)
    assert "cloudpickled mlflow.pyfunc.PythonModel" in message
    assert "pip install mlflow==3.17.2" in message


def test_mlflow_python_model_is_delegated_to_mlflow_when_importable(run_in_mlflow, mlflow_models):
    out = run_in_mlflow(
        """
        import sys, envkit.pyfunc
        model = envkit.pyfunc.load_model(sys.argv[1])
        print(model.predict([1, 2, 3]))
        """,
        str(mlflow_models / "py_model"),
        with_envkit=True,
    )
    assert out.strip() == "[2, 4, 6]"


@pytest.mark.parametrize("fmt", ["cloudpickle", "pickle", "skops"])
def test_envkit_sklearn_models_load_with_mlflow(run_in_mlflow, tmp_path, iris, iris_pipeline, fmt):
    X, _ = iris
    path = tmp_path / fmt
    envkit.sklearn.save_model(iris_pipeline, path, serialization_format=fmt)
    # mlflow.sklearn.load_model reads the sklearn flavor: envkit need not be installed there.
    out = run_in_mlflow(
        """
        import json, sys
        import mlflow.sklearn
        from sklearn.datasets import load_iris
        X, _ = load_iris(return_X_y=True, as_frame=True)
        model = mlflow.sklearn.load_model(sys.argv[1])
        print(json.dumps(model.predict(X.head(10)).tolist()))
        """,
        str(path),
    )
    assert json.loads(out) == iris_pipeline.predict(X.head(10)).tolist()


def test_envkit_models_load_with_mlflow_pyfunc_when_envkit_is_installed(
    run_in_mlflow, tmp_path, iris, iris_pipeline
):
    X, _ = iris
    envkit.sklearn.save_model(iris_pipeline, tmp_path / "sk")

    class Tripler(envkit.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return [3 * x for x in model_input]

    envkit.pyfunc.save_model(tmp_path / "py", python_model=Tripler())
    out = run_in_mlflow(
        """
        import json, sys
        import mlflow.pyfunc
        from sklearn.datasets import load_iris
        X, _ = load_iris(return_X_y=True, as_frame=True)
        sk = mlflow.pyfunc.load_model(sys.argv[1])
        py = mlflow.pyfunc.load_model(sys.argv[2])
        print(json.dumps([sk.predict(X.head(10)).tolist(), py.predict([1, 2])]))
        """,
        str(tmp_path / "sk"),
        str(tmp_path / "py"),
        with_envkit=True,
    )
    sk, py = json.loads(out)
    assert sk == iris_pipeline.predict(X.head(10)).tolist()
    assert py == [3, 6]


def test_log_model_goes_into_the_active_mlflow_run(run_in_mlflow, tmp_path):
    out = run_in_mlflow(
        """
        import json, os, sys
        import mlflow
        import envkit.pyfunc, envkit.sklearn
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression

        mlflow.set_tracking_uri("sqlite:///" + sys.argv[1] + ".db")
        X, y = load_iris(return_X_y=True, as_frame=True)
        clf = LogisticRegression(max_iter=200).fit(X, y)
        with mlflow.start_run() as run:
            info = envkit.sklearn.log_model(clf, name="model")
        files = [a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "model")]
        loaded = envkit.pyfunc.load_model(info.model_uri)
        print(json.dumps({
            "uri": info.model_uri,
            "run_id": run.info.run_id,
            "files": files,
            "pred": loaded.predict(X.head(3)).tolist(),
            "expected": clf.predict(X.head(3)).tolist(),
            "envkit_runs": os.path.exists("envkit-runs"),
        }))
        """,
        str(tmp_path / "mlruns"),
        with_envkit=True,
        cwd=tmp_path,
    )
    result = json.loads(out.strip().splitlines()[-1])
    assert result["uri"] == f"runs:/{result['run_id']}/model"
    assert "model/MLmodel" in result["files"]
    assert result["pred"] == result["expected"]
    assert result["envkit_runs"] is False


TYPE_HINTED_MODEL = """
import pydantic

import envkit.models
import envkit.pyfunc


class Request(pydantic.BaseModel):
    text: str


class Echo(envkit.pyfunc.PythonModel):
    def predict(self, context, model_input: list[Request], params=None) -> list[str]:
        return [request.text.upper() for request in model_input]


envkit.models.set_model(Echo())
"""


def test_a_type_hinted_envkit_model_checks_its_input_under_mlflow_too(run_in_mlflow, tmp_path):
    """MLflow skips signature enforcement for a signature from type hints (its PythonModel class
    does the checking): envkit's pyfunc wrapper converts and checks the input itself."""
    pytest.importorskip("pydantic")
    code = tmp_path / "echo.py"
    code.write_text(TYPE_HINTED_MODEL)
    envkit.pyfunc.save_model(tmp_path / "m", python_model=str(code))
    assert envkit.pyfunc.load_model(tmp_path / "m").predict([{"text": "hi"}]) == ["HI"]
    out = run_in_mlflow(
        """
        import json, sys
        import mlflow.pyfunc
        model = mlflow.pyfunc.load_model(sys.argv[1])
        results = [model.predict([{"text": "hi"}])]
        try:
            model.predict([{"wrong": 1}])
        except Exception as exc:
            results.append(type(exc).__name__ + ": " + str(exc))
        print(json.dumps(results))
        """,
        str(tmp_path / "m"),
        with_envkit=True,
    )
    converted, refused = json.loads(out)
    assert converted == ["HI"]
    assert refused.startswith("SchemaEnforcementError: input does not match the predict type hint")
