"""What the forecasting flavors' tests share with the MLflow virtualenv (tests/e2e/
test_flavors_forecast.py runs one script there): the models' pyfunc inputs, a statsmodels
time-series model, and predictions as plain columns. Only numpy, pandas and the flavor
libraries are imported, so the module imports in either interpreter.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

FLAVORS = ("statsmodels", "prophet", "pmdarima")
# The models: one per flavor (tests/flavor_models), and a statsmodels ARIMA, whose pyfunc input
# is MLflow's start/end row for time-series results.
FLAVOR_OF = {**{flavor: flavor for flavor in FLAVORS}, "arima": "statsmodels"}


def builder(flavor: str) -> Any:
    """The tests/flavor_models module of ``flavor``."""
    return importlib.import_module(f"flavor_models.{flavor}")


def arima_window() -> Any:
    """Forecast positions 24 to 27: the four steps after the series."""
    import pandas as pd

    return pd.DataFrame({"start": [24], "end": [27]})


def fit_arima() -> Any:
    """statsmodels' ARIMA(1, 0, 0) on the pmdarima builder's twenty-four daily points."""
    import pandas as pd
    from statsmodels.tsa.arima.model import ARIMA

    index = pd.date_range("2024-01-01", periods=24, freq="D")
    series = pd.Series(builder("pmdarima").data(), index=index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' start-parameter warning
        return ARIMA(series, order=(1, 0, 0)).fit()


def pyfunc_input(name: str) -> Any:
    """What the tests predict on with the model ``name`` (a key of FLAVOR_OF)."""
    return arima_window() if name == "arima" else builder(name).pyfunc_input()


def plain(prediction: Any) -> dict[str, list]:
    """A prediction as columns of floats (datetimes as ISO strings, strings as they are), for
    comparing."""
    import numpy as np
    import pandas as pd

    if isinstance(prediction, pd.DataFrame):
        frame = prediction
    else:
        frame = pd.DataFrame({"prediction": np.asarray(prediction, dtype=float)})
    return {
        str(column): [_plain(v) for v in values] for column, values in frame.to_dict("list").items()
    }


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return value
    return value.isoformat() if hasattr(value, "isoformat") else float(value)
