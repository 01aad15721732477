"""A tiny statsmodels model: OLS with a constant fitted on twelve rows."""

from __future__ import annotations

import inspect
from pathlib import Path


def data():
    """(X, y): twelve rows of two features and a constant, y exactly linear in them plus noise."""
    import numpy as np
    import pandas as pd

    x1 = np.arange(12.0)
    x2 = np.array([0.3, -1.2, 0.8, 0.1, -0.4, 1.5, -0.9, 0.2, 0.7, -0.3, 1.1, -0.6])
    X = pd.DataFrame({"const": 1.0, "x1": x1, "x2": x2})
    y = 1.0 + 2.0 * x1 + 0.5 * x2 + np.sin(x1) / 10
    return X, y


def pyfunc_input():
    """What the tests predict on: the first five rows."""
    return data()[0].head(5)


def save_envkit(path: str | Path) -> None:
    """Fit OLS on the twelve rows and save with envkit, three rows as the input example."""
    import statsmodels.api as sm

    import envkit.statsmodels

    X, y = data()
    envkit.statsmodels.save_model(sm.OLS(y, X).fit(), path, input_example=X.head(3))


MLFLOW_SAVE = (
    inspect.getsource(data)
    + """
import sys

import mlflow.statsmodels
import statsmodels.api as sm

X, y = data()
mlflow.statsmodels.save_model(sm.OLS(y, X).fit(), sys.argv[1], input_example=X.head(3))
"""
)
