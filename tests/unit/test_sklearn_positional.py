"""The positional predictor of scikit-learn models (envkit.sklearn._positional): offered only
where the bare array answers exactly what the DataFrame answers, declined everywhere else."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from envkit.sklearn._positional import positional_predictor


def rows(X: pd.DataFrame) -> pd.DataFrame:
    """Rows as the compiled reader builds them: a DataFrame from one 2-D array."""
    values = np.array(X.sample(30, random_state=3).values.tolist())
    return pd.DataFrame(values, columns=list(X.columns))


@pytest.mark.parametrize("predict_fn", ["predict", "predict_proba", "decision_function"])
def test_a_pipeline_of_positional_steps_answers_the_same_to_the_last_bit(
    iris, iris_pipeline, predict_fn
):
    X, _ = iris
    predict = positional_predictor(iris_pipeline, predict_fn, list(X.columns))
    assert predict is not None
    frame = rows(X)
    expected = getattr(iris_pipeline, predict_fn)(frame)
    for array in (frame.to_numpy(), np.ascontiguousarray(frame.to_numpy())):
        got = predict(array)  # and no "X does not have valid feature names" warning
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert got.tobytes() == expected.tobytes()


def test_an_ensemble_of_positional_estimators_is_positional(iris):
    X, y = iris
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    predict = positional_predictor(forest, "predict_proba", list(X.columns))
    assert predict is not None
    frame = rows(X)
    np.testing.assert_array_equal(predict(frame.to_numpy()), forest.predict_proba(frame))


class _UserLogisticRegression(LogisticRegression):
    """A subclass in user code: what it does with a DataFrame is its own business."""


def declined(X: pd.DataFrame, y: pd.Series, case: str) -> object:
    by_name = ColumnTransformer([("scale", StandardScaler(), ["petal length (cm)"])])
    models = {
        "a ColumnTransformer": lambda: make_pipeline(by_name, LogisticRegression()).fit(X, y),
        "a FunctionTransformer": lambda: make_pipeline(
            FunctionTransformer(lambda frame: frame), LogisticRegression(max_iter=200)
        ).fit(X, y),
        "pandas output": lambda: make_pipeline(
            StandardScaler().set_output(transform="pandas"), LogisticRegression(max_iter=200)
        ).fit(X, y),
        "a class of user code": lambda: make_pipeline(
            StandardScaler(), _UserLogisticRegression(max_iter=200)
        ).fit(X, y),
        "no column names": lambda: make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=200)
        ).fit(X.to_numpy(), y),
    }
    return models[case]()


@pytest.mark.parametrize(
    "case",
    [
        "a ColumnTransformer",
        "a FunctionTransformer",
        "pandas output",
        "a class of user code",
        "no column names",
    ],
)
def test_anything_that_may_read_columns_by_name_is_declined(iris, case):
    X, y = iris
    assert positional_predictor(declined(X, y, case), "predict", list(X.columns)) is None


def test_other_columns_or_another_order_or_a_method_that_is_not_row_wise_are_declined(
    iris, iris_pipeline
):
    X, _ = iris
    columns = list(X.columns)
    assert positional_predictor(iris_pipeline, "predict", columns[::-1]) is None
    assert positional_predictor(iris_pipeline, "predict", columns[:3]) is None
    assert positional_predictor(iris_pipeline, "score", columns) is None


def test_estimators_in_object_arrays_are_looked_at_too(iris):
    """GradientBoosting keeps its trees in an object array: a part of user code there counts."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.tree import DecisionTreeRegressor

    X, y = iris
    boosted = GradientBoostingClassifier(n_estimators=3, random_state=0).fit(X, y)
    columns = list(X.columns)
    assert positional_predictor(boosted, "predict_proba", columns) is not None

    class _UserTree(DecisionTreeRegressor):
        pass

    boosted.estimators_[0, 0].__class__ = _UserTree
    assert positional_predictor(boosted, "predict_proba", columns) is None
