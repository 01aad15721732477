"""A tiny pmdarima model: an AR(1) fitted on twenty-four points."""

from __future__ import annotations

import inspect
from pathlib import Path


def data():
    """Twenty-four points of a slow trend with a wave."""
    import numpy as np

    t = np.arange(24.0)
    return np.sin(t / 3) + t / 10


def fit(series):
    """ARIMA(1, 0, 0): no order search, so it fits in a fraction of a second."""
    import warnings

    import pmdarima

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' start-parameter warnings
        return pmdarima.ARIMA(order=(1, 0, 0)).fit(series)


def pyfunc_input():
    """MLflow's configuration DataFrame: four periods ahead."""
    import pandas as pd

    return pd.DataFrame({"n_periods": [4]})


def save_envkit(path: str | Path) -> None:
    """Fit on the twenty-four points and save with envkit; ``n_periods=3`` is the example."""
    import pandas as pd

    import envkit.pmdarima

    envkit.pmdarima.save_model(fit(data()), path, input_example=pd.DataFrame({"n_periods": [3]}))


MLFLOW_SAVE = (
    inspect.getsource(data)
    + inspect.getsource(fit)
    + """
import sys
import warnings

import pandas as pd

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the flavor's deprecation warning
    import mlflow.pmdarima

mlflow.pmdarima.save_model(
    fit(data()), sys.argv[1], input_example=pd.DataFrame({"n_periods": [3]})
)
"""
)
