"""Tiny diviner models: a GroupedPmdarima (AR(1) per group) and a GroupedProphet, each on two
groups of thirty daily points. diviner needs pandas < 3: these run in the diviner virtualenv of
tests/e2e/test_flavor_diviner.py, never in the test interpreter, which is why this module is not
one of tests/flavor_models (benchmarks/validate.py runs those in the test interpreter)."""

from __future__ import annotations

KINDS = ("GroupedPmdarima", "GroupedProphet")


def data():
    """Two regions, thirty days each: a slow trend with a wave, the south's shifted."""
    import numpy as np
    import pandas as pd

    t = np.arange(30.0)
    frames = [
        pd.DataFrame(
            {
                "region": region,
                "ds": pd.date_range("2024-01-01", periods=30, freq="D"),
                "y": np.sin(t / 3 + shift) + t / 10 + shift,
            }
        )
        for region, shift in (("north", 0.0), ("south", 1.5))
    ]
    return pd.concat(frames, ignore_index=True)


def fit(kind):
    """``kind`` (GroupedPmdarima or GroupedProphet) fit on :func:`data`; ARIMA(1, 0, 0) needs no
    order search and Prophet runs without uncertainty sampling, so both fit in about a second."""
    import logging
    import warnings

    for noisy in ("cmdstanpy", "prophet"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    import diviner

    if kind == "GroupedPmdarima":
        import pmdarima

        model = diviner.GroupedPmdarima(pmdarima.ARIMA(order=(1, 0, 0)))
        extra = {"silence_warnings": True}
    else:
        model = diviner.GroupedProphet(uncertainty_samples=0)
        extra = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' and pandas' warnings
        return model.fit(
            data(), group_key_columns=["region"], y_col="y", datetime_col="ds", **extra
        )


def example(kind):
    """MLflow's configuration DataFrame: three periods (daily, for Prophet)."""
    import pandas as pd

    if kind == "GroupedPmdarima":
        return pd.DataFrame({"n_periods": [3]})
    return pd.DataFrame({"horizon": [3], "frequency": ["D"]})


def subset(kind):
    """:func:`example` for the south only, its ``groups`` as JSON gives them (lists)."""
    frame = example(kind)
    frame["groups"] = [[["south"]]]
    return frame


def plain(forecast):
    """A forecast as JSON-able columns: floats, dates as ISO strings, group keys as lists."""
    import numpy as np

    columns = {}
    for column, values in forecast.to_dict("list").items():
        columns[str(column)] = [_plain(v, np) for v in values]
    return columns


def _plain(value, np):
    if isinstance(value, (tuple, list)):
        return [_plain(v, np) for v in value]
    if isinstance(value, str):
        return value
    if hasattr(value, "isoformat"):
        return value.date().isoformat() if hasattr(value, "date") else value.isoformat()
    return float(value) if isinstance(value, (float, int, np.number)) else str(value)
