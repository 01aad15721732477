"""A tiny Prophet model: thirty days of a trend with a weekly wobble, no sampling."""

from __future__ import annotations

import inspect
from pathlib import Path

# prophet 1.5 under pandas 3.1 warns of pandas 4 deprecations in fit, predict and
# model_from_json (Pandas4Warning): pytest filters for the tests that run it (warnings are
# errors there).
PANDAS_DEPRECATIONS = [
    "ignore:The inplace keyword in DataFrame.drop is deprecated",
    "ignore:The 'convert_dates' keyword in read_json is deprecated",
]


def data():
    """Thirty daily rows (``ds``, ``y``)."""
    import numpy as np
    import pandas as pd

    days = np.arange(30.0)
    return pd.DataFrame(
        {
            "ds": pd.date_range("2024-01-01", periods=30, freq="D"),
            "y": 10.0 + 0.5 * days + np.sin(days * 2 * np.pi / 7),
        }
    )


def fit(history):
    """Prophet without uncertainty samples and with few changepoints: one quick MAP fit."""
    import logging

    from prophet import Prophet

    logging.getLogger("cmdstanpy").setLevel(logging.WARNING)
    return Prophet(uncertainty_samples=0, n_changepoints=5).fit(history)


def pyfunc_input():
    """What the tests predict on: the five days after the history."""
    import pandas as pd

    return pd.DataFrame({"ds": pd.date_range("2024-01-31", periods=5, freq="D")})


def save_envkit(path: str | Path) -> None:
    """Fit on the thirty days and save with envkit; the next three days are the example."""
    import envkit.prophet

    model = fit(data())
    example = model.make_future_dataframe(3, include_history=False)
    envkit.prophet.save_model(model, path, input_example=example)


MLFLOW_SAVE = (
    inspect.getsource(data)
    + inspect.getsource(fit)
    + """
import sys

import mlflow.prophet

model = fit(data())
example = model.make_future_dataframe(3, include_history=False)
mlflow.prophet.save_model(model, sys.argv[1], input_example=example)
"""
)
