"""A tiny scikit-learn model: LogisticRegression fitted on twelve rows of iris."""

from __future__ import annotations

from pathlib import Path


def save_envkit(path: str | Path) -> None:
    """Fit on twelve iris rows (four of each class) and save with envkit, three as example."""
    import envkit.sklearn

    X, y = _data()
    envkit.sklearn.save_model(_fit(X, y), path, input_example=X.head(3))


def _data():
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True, as_frame=True)
    rows = [*range(4), *range(50, 54), *range(100, 104)]
    return X.iloc[rows].reset_index(drop=True), y.iloc[rows].reset_index(drop=True)


def _fit(X, y):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=200).fit(X, y)


MLFLOW_SAVE = """
import sys

import mlflow.sklearn
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

X, y = load_iris(return_X_y=True, as_frame=True)
rows = [*range(4), *range(50, 54), *range(100, 104)]
X, y = X.iloc[rows].reset_index(drop=True), y.iloc[rows].reset_index(drop=True)
model = LogisticRegression(max_iter=200).fit(X, y)
mlflow.sklearn.save_model(model, sys.argv[1], input_example=X.head(3))
"""
