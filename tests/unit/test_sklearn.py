"""The sklearn flavor: serialization formats, predict_fn, MLflow's flavor keys."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

import envkit.pyfunc
import envkit.sklearn
from envkit.errors import UsageError


@pytest.mark.parametrize(
    ("fmt", "file_name"),
    [("cloudpickle", "model.pkl"), ("pickle", "model.pkl"), ("skops", "model.skops")],
)
def test_each_serialization_format_round_trips(tmp_path, iris, iris_pipeline, fmt, file_name):
    X, _ = iris
    path = tmp_path / fmt
    envkit.sklearn.save_model(iris_pipeline, path, serialization_format=fmt)
    mlmodel = yaml.safe_load((path / "MLmodel").read_text())
    import sklearn

    assert mlmodel["flavors"]["sklearn"] == {
        "pickled_model": file_name,
        "serialization_format": fmt,
        "sklearn_version": sklearn.__version__,
        "code": None,
        "skops_trusted_types": None,
    }
    assert mlmodel["flavors"]["python_function"]["loader_module"] == "envkit.sklearn"
    assert mlmodel["flavors"]["python_function"]["model_path"] == file_name
    expected = iris_pipeline.predict(X.head(5))
    estimator = envkit.sklearn.load_model(path)
    np.testing.assert_array_equal(estimator.predict(X.head(5)), expected)
    pyfunc = envkit.pyfunc.load_model(path)
    np.testing.assert_array_equal(pyfunc.predict(X.head(5)), expected)
    assert pyfunc.get_raw_model().__class__ is iris_pipeline.__class__


def test_predict_fn_predict_proba(tmp_path, iris, iris_pipeline):
    X, _ = iris
    envkit.sklearn.save_model(iris_pipeline, tmp_path / "m", pyfunc_predict_fn="predict_proba")
    proba = envkit.pyfunc.load_model(tmp_path / "m").predict(X.head(2))
    assert proba.shape == (2, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


@pytest.mark.parametrize("name", ["__reduce__", "__class__", "_private", "not a name", "nope"])
def test_a_predict_fn_in_mlmodel_must_name_a_public_method(tmp_path, iris_pipeline, name):
    """MLmodel is input: predict_fn cannot reach dunder attributes of the wrapper."""
    import yaml

    from envkit.errors import ModelFormatError

    envkit.sklearn.save_model(iris_pipeline, tmp_path / "m")
    mlmodel = tmp_path / "m" / "MLmodel"
    data = yaml.safe_load(mlmodel.read_text())
    data["flavors"]["python_function"]["predict_fn"] = name
    mlmodel.write_text(yaml.safe_dump(data))
    with pytest.raises(ModelFormatError, match="predict_fn"):
        envkit.pyfunc.load_model(tmp_path / "m")


def test_default_requirements_pin_the_flavor_and_envkit(tmp_path, iris_pipeline):
    import sklearn

    from envkit import __version__

    envkit.sklearn.save_model(iris_pipeline, tmp_path / "m")
    reqs = (tmp_path / "m" / "requirements.txt").read_text().splitlines()
    assert f"scikit-learn=={sklearn.__version__}" in reqs
    assert f"envkit=={__version__}" in reqs


def test_bad_arguments_are_refused_before_writing(tmp_path, iris_pipeline):
    with pytest.raises(UsageError, match="serialization_format must be one of"):
        envkit.sklearn.save_model(iris_pipeline, tmp_path / "a", serialization_format="joblib")
    with pytest.raises(UsageError, match="pyfunc_predict_fn must be one of"):
        envkit.sklearn.save_model(iris_pipeline, tmp_path / "b", pyfunc_predict_fn="fit")
    from sklearn.linear_model import LinearRegression

    regressor = LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])
    with pytest.raises(UsageError, match="no predict_proba"):
        envkit.sklearn.save_model(regressor, tmp_path / "c", pyfunc_predict_fn="predict_proba")
    assert list(tmp_path.iterdir()) == []


class CustomScaler:
    """An estimator type skops does not know: it must not be trusted silently."""

    def fit(self, X, y=None):
        return self

    def predict(self, X):
        return np.asarray(X).sum(axis=1)


def test_skops_refuses_untrusted_types_and_leaves_nothing(tmp_path):
    with pytest.raises(UsageError, match="types skops does not trust"):
        envkit.sklearn.save_model(CustomScaler(), tmp_path / "m", serialization_format="skops")
    assert not (tmp_path / "m").exists()
    assert list(tmp_path.iterdir()) == []


def test_signature_from_a_dataframe_example_is_the_one_mlflow_writes(tmp_path, iris, iris_pipeline):
    # MLflow 3.17.2 wrote tests/data/mlflow-3.17.2/sk_example for this pipeline.
    from pathlib import Path

    samples = Path(__file__).resolve().parents[1] / "data" / "mlflow-3.17.2"
    expected = yaml.safe_load((samples / "sk_example" / "MLmodel").read_text())
    X, _ = iris
    envkit.sklearn.save_model(iris_pipeline, tmp_path / "m", input_example=X.head(3))
    written = yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())
    assert written["signature"] == expected["signature"]
    assert written["saved_input_example_info"] == expected["saved_input_example_info"]
