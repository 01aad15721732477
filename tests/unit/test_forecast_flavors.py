"""The statistics and forecasting flavors: envkit.statsmodels, envkit.prophet, envkit.pmdarima.

Tiny models trained here on a few rows (tests/flavor_models), saved without the capture
subprocess (tests/unit/conftest.py). MLflow's side of the format is tested against real MLflow
in tests/e2e/test_flavors_forecast.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import yaml
from flavor_models import pmdarima as pmdarima_models
from flavor_models import prophet as prophet_models
from flavor_models import statsmodels as statsmodels_models

import envkit
import envkit.pmdarima
import envkit.prophet
import envkit.pyfunc
import envkit.statsmodels
from envkit.errors import SchemaEnforcementError, UsageError
from envkit.models.flavors import envkit_loader_for, registered_flavors
from envkit.pmdarima import ForecastRequest

FLAVORS = ("statsmodels", "prophet", "pmdarima")
pytestmark = [pytest.mark.filterwarnings(f) for f in prophet_models.PANDAS_DEPRECATIONS]


def _mlmodel(path) -> dict:
    return yaml.safe_load((path / "MLmodel").read_text())


def _arima():
    from statsmodels.tsa.arima.model import ARIMA

    index = pd.date_range("2024-01-01", periods=24, freq="D")
    series = pd.Series(pmdarima_models.data(), index=index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' start-parameter warning
        return ARIMA(series, order=(1, 0, 0)).fit()


@pytest.fixture(scope="module")
def ols():
    import statsmodels.api as sm

    X, y = statsmodels_models.data()
    return sm.OLS(y, X).fit()


@pytest.fixture(scope="module")
def prophet_model():
    return prophet_models.fit(prophet_models.data())


@pytest.fixture(scope="module")
def arima_pmd():
    return pmdarima_models.fit(pmdarima_models.data())


# --- registration and imports -----------------------------------------------------------------


@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_flavor_is_registered_and_stands_in_for_mlflows_loader(flavor):
    assert registered_flavors()[flavor] == f"envkit.{flavor}"
    assert envkit_loader_for(f"mlflow.{flavor}") == f"envkit.{flavor}"


def test_importing_the_flavors_imports_no_library():
    code = (
        "import sys, envkit, envkit.statsmodels, envkit.prophet, envkit.pmdarima; "
        "print([m for m in ('statsmodels', 'prophet', 'pmdarima', 'pandas', 'numpy', "
        "'cmdstanpy', 'sklearn') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("flavor", FLAVORS)
def test_default_requirements_are_the_library_pinned_as_mlflows(flavor):
    from importlib.metadata import version

    module = getattr(envkit, flavor)
    assert module.get_default_pip_requirements() == [f"{flavor}=={version(flavor)}"]
    conda = module.get_default_conda_env()
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert pip == [f"envkit=={envkit.__version__}", f"{flavor}=={version(flavor)}"]


def test_constants_have_mlflows_values():
    assert envkit.statsmodels.FLAVOR_NAME == "statsmodels"
    assert envkit.statsmodels.STATSMODELS_DATA_SUBPATH == "model.statsmodels"
    assert envkit.prophet.FLAVOR_NAME == "prophet"
    assert envkit.pmdarima.FLAVOR_NAME == "pmdarima"


# --- statsmodels --------------------------------------------------------------------------------


def test_statsmodels_writes_mlflows_keys_and_predicts_like_the_results(tmp_path, ols):
    path = tmp_path / "ols"
    statsmodels_models.save_envkit(path)
    flavors = _mlmodel(path)["flavors"]
    assert flavors["python_function"]["loader_module"] == "envkit.statsmodels"
    assert flavors["python_function"]["data"] == "model.statsmodels"
    import statsmodels

    assert flavors["statsmodels"] == {
        "statsmodels_version": statsmodels.__version__,
        "data": "model.statsmodels",
        "code": None,
    }
    assert (path / "model.statsmodels").is_file()
    X = statsmodels_models.pyfunc_input()
    expected = ols.predict(X)
    np.testing.assert_allclose(envkit.pyfunc.load_model(path).predict(X), expected)
    loaded = envkit.statsmodels.load_model(path)
    np.testing.assert_allclose(loaded.params, ols.params)
    requirements = (path / "requirements.txt").read_text().splitlines()
    assert requirements[0] == f"envkit=={envkit.__version__}"
    assert f"statsmodels=={statsmodels.__version__}" in requirements


def test_statsmodels_pyfunc_takes_an_ndarray(tmp_path, ols):
    envkit.statsmodels.save_model(ols, tmp_path / "ols")  # no example, no signature
    X = statsmodels_models.pyfunc_input().to_numpy()
    np.testing.assert_allclose(
        envkit.pyfunc.load_model(tmp_path / "ols").predict(X), ols.predict(X)
    )


def test_statsmodels_remove_data_still_predicts(tmp_path, ols):
    envkit.statsmodels.save_model(ols, tmp_path / "full")
    envkit.statsmodels.save_model(ols, tmp_path / "lean", remove_data=True)
    full = (tmp_path / "full" / "model.statsmodels").stat().st_size
    assert (tmp_path / "lean" / "model.statsmodels").stat().st_size < full
    X = statsmodels_models.pyfunc_input().to_numpy()
    np.testing.assert_allclose(
        envkit.pyfunc.load_model(tmp_path / "lean").predict(X), ols.predict(X)
    )


def test_a_time_series_model_forecasts_from_start_to_end(tmp_path):
    arima = _arima()
    path = tmp_path / "arima"
    window = pd.DataFrame({"start": [24], "end": [27]})
    envkit.statsmodels.save_model(arima, path, input_example=window)
    model = envkit.pyfunc.load_model(path)
    forecast = model.predict(window)
    np.testing.assert_allclose(forecast, arima.predict(start=24, end=27))
    assert len(forecast) == 4
    envkit.statsmodels.save_model(arima, tmp_path / "unsigned")  # the wrapper sees every input
    unsigned = envkit.pyfunc.load_model(tmp_path / "unsigned")
    np.testing.assert_allclose(unsigned.predict(window), forecast)
    for bad in (pd.DataFrame({"start": [24, 25], "end": [27, 28]}), pd.DataFrame({"n": [1]})):
        with pytest.raises(SchemaEnforcementError, match="exactly one row"):
            unsigned.predict(bad)


def test_statsmodels_refuses_an_unfitted_model_and_writes_nothing(tmp_path):
    import statsmodels.api as sm

    X, y = statsmodels_models.data()
    with pytest.raises(UsageError, match="fitted results object"):
        envkit.statsmodels.save_model(sm.OLS(y, X), tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_statsmodels_log_model_loads_by_runs_uri(tmp_path, ols):
    envkit.set_tracking_dir(tmp_path / "runs")
    try:
        info = envkit.statsmodels.log_model(ols, name="ols")
        assert info.model_uri.startswith("runs:/")
        np.testing.assert_allclose(envkit.statsmodels.load_model(info.model_uri).params, ols.params)
    finally:
        envkit.set_tracking_dir(None)


# --- prophet -----------------------------------------------------------------------------------


def test_prophet_writes_json_as_mlflow_and_forecasts(tmp_path, prophet_model):
    import prophet

    path = tmp_path / "prophet"
    future = prophet_models.pyfunc_input()
    envkit.prophet.save_model(prophet_model, path, input_example=future.head(3))
    flavors = _mlmodel(path)["flavors"]
    assert flavors["python_function"]["loader_module"] == "envkit.prophet"
    assert flavors["python_function"]["data"] == "model.pr"
    assert flavors["prophet"] == {
        "prophet_version": prophet.__version__,
        "code": None,
        "model_type": "Prophet",
        "data": "model.pr",
    }
    # MLflow json.dump()s the string model_to_json returns: a JSON string holding JSON.
    stored = json.loads((path / "model.pr").read_text())
    assert isinstance(stored, str) and json.loads(stored)["__prophet_version"]
    expected = prophet_model.predict(future)
    forecast = envkit.pyfunc.load_model(path).predict(future)
    assert list(forecast.columns) == list(expected.columns)
    assert {"ds", "yhat", "trend"} <= set(forecast.columns)
    np.testing.assert_allclose(forecast["yhat"], expected["yhat"])
    assert list(forecast["ds"]) == list(future["ds"])
    loaded = envkit.prophet.load_model(path)
    assert isinstance(loaded, prophet.Prophet)
    np.testing.assert_allclose(loaded.predict(future)["yhat"], expected["yhat"])


def test_prophet_refuses_an_unfitted_model_and_writes_nothing(tmp_path):
    from prophet import Prophet

    with pytest.raises(UsageError, match="cannot be saved"):
        envkit.prophet.save_model(Prophet(), tmp_path / "m")
    with pytest.raises(UsageError, match="fitted Prophet"):
        envkit.prophet.save_model(object(), tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_a_corrupt_prophet_file_is_a_format_error(tmp_path, prophet_model):
    from envkit.errors import ModelFormatError

    envkit.prophet.save_model(prophet_model, tmp_path / "p")
    (tmp_path / "p" / "model.pr").write_text("{not json")
    with pytest.raises(ModelFormatError, match=r"model\.pr cannot be deserialized"):
        envkit.prophet.load_model(tmp_path / "p")


# --- pmdarima ----------------------------------------------------------------------------------


def test_pmdarima_writes_mlflows_keys_and_forecasts(tmp_path, arima_pmd):
    import pmdarima

    path = tmp_path / "pmd"
    pmdarima_models.save_envkit(path)
    flavors = _mlmodel(path)["flavors"]
    assert flavors["python_function"]["loader_module"] == "envkit.pmdarima"
    assert flavors["python_function"]["data"] == "model.pmd"
    assert flavors["pmdarima"] == {
        "pmdarima_version": pmdarima.__version__,
        "code": None,
        "model_type": "ARIMA",
        "data": "model.pmd",
    }
    forecast = envkit.pyfunc.load_model(path).predict(pmdarima_models.pyfunc_input())
    assert list(forecast.columns) == ["yhat"]
    np.testing.assert_allclose(forecast["yhat"], arima_pmd.predict(n_periods=4))
    np.testing.assert_allclose(
        envkit.pmdarima.load_model(path).predict(n_periods=4), arima_pmd.predict(n_periods=4)
    )


def test_pmdarima_confidence_intervals_and_alpha(tmp_path, arima_pmd):
    envkit.pmdarima.save_model(arima_pmd, tmp_path / "pmd")  # no signature: every column
    model = envkit.pyfunc.load_model(tmp_path / "pmd")
    config = pd.DataFrame({"n_periods": [3], "return_conf_int": [True], "alpha": [0.2]})
    forecast = model.predict(config)
    assert list(forecast.columns) == ["yhat", "yhat_lower", "yhat_upper"]
    yhat, intervals = arima_pmd.predict(n_periods=3, return_conf_int=True, alpha=0.2)
    np.testing.assert_allclose(forecast["yhat"], yhat)
    np.testing.assert_allclose(forecast[["yhat_lower", "yhat_upper"]].to_numpy(), intervals)


def test_pmdarima_exogenous_regressors_in_column_x(tmp_path):
    y = pmdarima_models.data()
    X = np.column_stack([np.arange(24.0) % 5])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pmdarima

        arima = pmdarima.ARIMA(order=(1, 0, 0)).fit(y, X=X)
    envkit.pmdarima.save_model(arima, tmp_path / "pmd")
    future = [[1.0], [2.0], [3.0]]
    forecast = envkit.pyfunc.load_model(tmp_path / "pmd").predict(
        pd.DataFrame({"n_periods": [3], "X": [future]})
    )
    np.testing.assert_allclose(forecast["yhat"], arima.predict(n_periods=3, X=np.array(future)))


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"n_periods": [3, 4]}), "contains 2 rows. Only 1 row"),
        (pd.DataFrame({"periods": [3]}), "do not contain the required column `n_periods`"),
        (pd.DataFrame({"n_periods": [2.5]}), "must be an integer"),
        (pd.DataFrame({"n_periods": [True]}), "must be an integer"),
        ([3], "a DataFrame of one row with an n_periods column"),
    ],
)
def test_a_forecast_request_is_mlflows_configuration_frame(frame, message):
    with pytest.raises(SchemaEnforcementError, match=message):
        ForecastRequest.from_frame(frame)


def test_a_forecast_request_reads_the_optional_columns():
    request = ForecastRequest.from_frame(
        pd.DataFrame({"n_periods": [np.int64(5)], "return_conf_int": [True]}, index=[7])
    )
    assert request == ForecastRequest(n_periods=5, return_conf_int=True, alpha=0.05)
    assert type(request.n_periods) is int
