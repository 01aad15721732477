"""The statistics and forecasting flavors end to end: statsmodels, prophet, pmdarima.

Against real MLflow 3.17.2 in its own virtualenv, both ways, in ONE subprocess for the family
(it saves each flavor's model with mlflow.<flavor> and reads each of envkit's); then one
``envkit validate`` (a rebuilt environment) and one ``envkit serve`` per flavor. The models are
the tiny ones of tests/flavor_models, built once per session and shared by the xdist workers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import RUNTIME_PINS  # (tests/e2e/conftest.py)
from flavor_models import prophet as prophet_models
from forecast_cases import FLAVOR_OF, FLAVORS, arima_window, builder, fit_arima, plain, pyfunc_input
from test_serve import Server, post_json

import envkit.pmdarima
import envkit.prophet
import envkit.pyfunc
import envkit.statsmodels

MODELS = tuple(FLAVOR_OF)

pytestmark = [
    pytest.mark.slow,
    *(pytest.mark.filterwarnings(f) for f in prophet_models.PANDAS_DEPRECATIONS),
]


def assert_same(got: dict[str, list], expected: dict[str, list]) -> None:
    assert list(got) == list(expected)
    for column, values in expected.items():
        if values and isinstance(values[0], str):
            assert got[column] == values, column
        else:
            np.testing.assert_allclose(got[column], values, rtol=1e-9, err_msg=column)


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable) -> Path:
    """``build(directory)`` once for the whole session, shared by every xdist worker."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    target = base / name
    with FileLock(str(target) + ".lock", timeout=1200):
        if not (target / ".complete").exists():
            target.mkdir(parents=True, exist_ok=True)
            build(target)
            (target / ".complete").write_text("")
    return target


@pytest.fixture(scope="session")
def forecast_models(tmp_path_factory) -> Path:
    """The tiny models of tests/flavor_models saved by envkit (requirements captured), and an
    ARIMA results object (its requirements given, which skips the capture)."""

    def build(root: Path) -> None:
        for flavor in FLAVORS:
            builder(flavor).save_envkit(root / flavor)
        envkit.statsmodels.save_model(
            fit_arima(),
            root / "arima",
            input_example=arima_window(),
            pip_requirements=[f"{name}=={version(name)}" for name in ("statsmodels", "pandas")],
        )

    return built_once(tmp_path_factory, "forecast-envkit-models", build)


# Run in the MLflow virtualenv: argv = output directory, envkit's models, the tests directory.
INTEROP = """
import json, os, sys, warnings
from pathlib import Path

os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"  # statsmodels and pmdarima pickle
out, envkit_models, tests = (Path(a) for a in sys.argv[1:4])
sys.path.insert(0, str(tests))
import mlflow.models, mlflow.pyfunc, mlflow.prophet, mlflow.statsmodels
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the flavor's deprecation warning
    import mlflow.pmdarima
from forecast_cases import FLAVOR_OF, FLAVORS, arima_window, builder, fit_arima, plain, pyfunc_input

# MLflow's requirement inference (a subprocess loading each model) is not what is tested here.
mlflow.models.infer_pip_requirements = lambda path, flavor, fallback=None, **kw: fallback or []

for flavor in FLAVORS:
    sys.argv = ["mlflow-save", str(out / flavor)]
    code = compile(builder(flavor).MLFLOW_SAVE, f"flavor_models/{flavor}.py:MLFLOW_SAVE", "exec")
    exec(code, {"__name__": "__main__"})
mlflow.statsmodels.save_model(fit_arima(), str(out / "arima"), input_example=arima_window())

flavor_module = {"statsmodels": mlflow.statsmodels, "prophet": mlflow.prophet,
                 "pmdarima": mlflow.pmdarima}
results = {"mlflow_model": {}, "native": {}, "mlflow_wrapper": {}, "mlflow_pyfunc": {}}
for name, flavor in FLAVOR_OF.items():
    data = pyfunc_input(name)
    module = flavor_module[flavor]
    results["mlflow_model"][name] = plain(mlflow.pyfunc.load_model(str(out / name)).predict(data))
    ours = envkit_models / name
    native = module.load_model(str(ours))
    results["native"][name] = type(native).__module__ + "." + type(native).__name__
    pyfunc = mlflow.pyfunc.load_model(str(ours))  # its loader_module: envkit.<flavor>
    results["mlflow_pyfunc"][name] = plain(pyfunc.predict(data.copy()))
    data_file = pyfunc.metadata.flavors["python_function"]["data"]
    wrapper = module._load_pyfunc(str(ours / data_file))  # MLflow's own pyfunc wrapper
    results["mlflow_wrapper"][name] = plain(wrapper.predict(data.copy()))
(out / "results.json").write_text(json.dumps(results))
"""


@pytest.fixture(scope="session")
def mlflow_forecast(
    run_in_mlflow, forecast_models, tmp_path_factory, repo_root
) -> tuple[Path, dict]:
    """MLflow's models of the family and what MLflow made of envkit's (one subprocess)."""

    def build(out: Path) -> None:
        run_in_mlflow(
            INTEROP, str(out), str(forecast_models), str(repo_root / "tests"), with_envkit=True
        )

    out = built_once(tmp_path_factory, "forecast-mlflow-models", build)
    return out, json.loads((out / "results.json").read_text())


def envkit_prediction(model: Path, name: str) -> dict[str, list]:
    return plain(envkit.pyfunc.load_model(model).predict(pyfunc_input(name)))


# --- MLflow interop -----------------------------------------------------------------------------


@pytest.mark.mlflow
@pytest.mark.parametrize("name", MODELS)
def test_mlflow_models_load_in_envkit_without_mlflow(mlflow_forecast, name):
    out, results = mlflow_forecast
    flavor = FLAVOR_OF[name]
    pyfunc = envkit.pyfunc.load_model(out / name)
    assert pyfunc.loader_module == f"mlflow.{flavor}"
    assert_same(plain(pyfunc.predict(pyfunc_input(name))), results["mlflow_model"][name])
    native = getattr(envkit, flavor).load_model(out / name)
    assert type(native).__module__.split(".")[0] == flavor
    assert "mlflow" not in sys.modules


@pytest.mark.mlflow
@pytest.mark.parametrize("name", MODELS)
def test_mlflow_reads_envkit_models_and_predicts_the_same(mlflow_forecast, forecast_models, name):
    _, results = mlflow_forecast
    ours = envkit_prediction(forecast_models / name, name)
    assert results["native"][name].split(".")[0] == FLAVOR_OF[name]
    assert_same(results["mlflow_wrapper"][name], ours)
    assert_same(results["mlflow_pyfunc"][name], ours)


@pytest.mark.mlflow
@pytest.mark.parametrize("name", MODELS)
def test_envkit_writes_the_keys_and_files_mlflow_writes(mlflow_forecast, forecast_models, name):
    out, _ = mlflow_forecast
    flavor = FLAVOR_OF[name]
    theirs = yaml.safe_load((out / name / "MLmodel").read_text())
    ours = yaml.safe_load((forecast_models / name / "MLmodel").read_text())
    assert ours["flavors"][flavor] == theirs["flavors"][flavor]
    pyfunc_ours, pyfunc_theirs = (
        ours["flavors"]["python_function"],
        theirs["flavors"]["python_function"],
    )
    assert pyfunc_ours.pop("loader_module") == f"envkit.{flavor}"
    assert pyfunc_theirs.pop("loader_module") == f"mlflow.{flavor}"
    assert pyfunc_ours == pyfunc_theirs
    assert ours["signature"] == theirs["signature"]
    assert (forecast_models / name / pyfunc_ours["data"]).is_file()


# --- capture ------------------------------------------------------------------------------------


def declared_closure(*names: str) -> set[str]:
    """``names`` and what they declare, transitively, as installed here (canonical names)."""
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: set[str] = set()
    todo = list(names)
    while todo:
        name = str(canonicalize_name(todo.pop()))
        if name in found:
            continue
        try:
            declared = requires(name) or []
        except PackageNotFoundError:
            continue
        found.add(name)
        for line in declared:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return found


def _names(model: Path) -> set[str]:
    from envkit.deps.requirements import requirement_name

    lines = (model / "requirements.txt").read_text().splitlines()
    return {str(requirement_name(line)) for line in lines if requirement_name(line)}


@pytest.mark.parametrize(
    ("flavor", "needed", "not_needed"),
    [
        ("statsmodels", {"statsmodels", "scipy", "patsy"}, {"scikit-learn", "matplotlib"}),
        ("prophet", {"prophet", "cmdstanpy", "holidays"}, {"statsmodels", "scikit-learn"}),
        # pmdarima imports matplotlib without declaring it: an optional import, left out
        ("pmdarima", {"pmdarima", "statsmodels", "scikit-learn"}, {"matplotlib"}),
    ],
)
def test_capture_records_the_library_and_what_it_declares(
    forecast_models, flavor, needed, not_needed
):
    names = _names(forecast_models / flavor)
    assert needed | {"envkit", "numpy", "pandas"} <= names
    assert not names & (not_needed | {"mlflow"})
    # Nothing beyond what the library and envkit declare, as installed here; pandas keeps
    # string columns in pyarrow when it is installed, and the OLS pickle holds such a column.
    declared = declared_closure(flavor, "envkit") | {"pyarrow"}
    assert names <= declared, names - declared


# --- validate and serve -------------------------------------------------------------------------


def envkit_cli(*args: str, home: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "envkit", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "ENVKIT_HOME": str(home)},
        timeout=timeout,
    )


@pytest.mark.timeout(900)
@pytest.mark.parametrize("flavor", FLAVORS)
def test_validate_rebuilds_the_environment_and_runs_the_example(
    forecast_models, shared_cache, flavor
):
    model = forecast_models / flavor
    proc = envkit_cli("validate", str(model), "--format", "json", home=shared_cache)
    report = json.loads(proc.stdout) if proc.stdout.strip() else {}
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert report["ok"] and report["backend"] == "uv"
    assert report["input"]["source"] == "input_example"
    assert any(r.startswith(f"{flavor}==") for r in report["spec"]["requirements"])


@pytest.mark.timeout(900)
def test_a_model_whose_requirements_miss_the_library_fails_validate_naming_it(
    tmp_path, shared_cache
):
    from envkit.deps.capture import RequirementWarning

    model = tmp_path / "no_statsmodels"
    with pytest.warns(RequirementWarning, match="does not list statsmodels"):
        envkit.statsmodels.save_model(
            fit_arima(), model, input_example=arima_window(), pip_requirements=RUNTIME_PINS
        )
    proc = envkit_cli("validate", str(model), home=shared_cache)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "the statsmodels flavor needs the package 'statsmodels'" in proc.stdout + proc.stderr


@pytest.mark.timeout(300)
@pytest.mark.parametrize("flavor", FLAVORS)
def test_serve_answers_the_serving_example_with_the_models_predictions(forecast_models, flavor):
    model = forecast_models / flavor
    server = Server(model, "--env-manager", "local")
    try:
        server.wait_ready(timeout=120)
        example = json.loads((model / "serving_input_example.json").read_text())
        status, body = post_json(server.port, example)
        if flavor == "pmdarima":  # the flavor's own input rule: one row
            rows = {"dataframe_split": {"columns": ["n_periods"], "data": [[1], [2]]}}
            bad_status, bad = post_json(server.port, rows)
            assert bad_status == 400, bad
            assert "Only 1 row should be supplied" in bad["message"]
    finally:
        server.stop()
    output = server.output()
    assert status == 200, (body, output[-2000:])
    from envkit.models.input_example import load_input_example

    pyfunc = envkit.pyfunc.load_model(model)
    example = load_input_example(model, pyfunc.metadata.saved_input_example_info)
    expected = plain(pyfunc.predict(example))
    predictions = body["predictions"]
    got = plain(pd.DataFrame(predictions) if isinstance(predictions[0], dict) else predictions)
    if "ds" in got:  # JSON carries the forecast's dates as ISO strings
        got["ds"] = [pd.Timestamp(v).isoformat() for v in got["ds"]]
    assert_same(got, expected)
