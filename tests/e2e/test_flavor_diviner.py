"""The diviner flavor end to end, in a virtualenv of its own.

diviner 0.1.1 (its last release) fails with pandas 3, which this interpreter has, and MLflow 3
has no ``mlflow.diviner`` any more: the flavor's peer is MLflow 2.12. So one virtualenv, frozen
at May 2024 like ``mlflow2_python`` (uv --exclude-newer: pandas 2.2, numpy 1.26, diviner 0.1.1,
MLflow 2.12.2), gets envkit from this checkout (editable; picklescan is the one distribution
allowed past the freeze date, envkit needs a later one), and ONE script there trains a tiny
GroupedPmdarima and GroupedProphet, saves each with envkit.diviner and with mlflow.diviner, and
reads each side's models with the other's loaders. This interpreter then compares what came
out, validates envkit's model (a sandbox built from the pins captured in that virtualenv) and
serves it with that virtualenv's envkit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_serve import Server, post_json

KINDS = ("GroupedPmdarima", "GroupedProphet")

pytestmark = [pytest.mark.slow, pytest.mark.mlflow]  # MLflow 2.12 runs in every fixture


# Run in the diviner virtualenv: argv = output directory, the tests directory.
SCRIPT = """
import json, sys, warnings
from importlib.metadata import PackageNotFoundError, requires
from pathlib import Path

warnings.simplefilter("ignore")  # MLflow 2.12's, diviner's and pandas' deprecation warnings
out, tests = Path(sys.argv[1]), Path(sys.argv[2])
sys.path.insert(0, str(tests))
import mlflow.diviner, mlflow.models, mlflow.pyfunc
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import envkit, envkit.diviner, envkit.pyfunc
from diviner_models import KINDS, example, fit, plain, subset

# MLflow's requirement inference (a subprocess loading the model) is not what is tested here.
mlflow.models.infer_pip_requirements = lambda path, flavor, fallback=None, **kw: fallback or []


def declared(*names):
    found, todo = set(), list(names)
    while todo:
        name = str(canonicalize_name(todo.pop()))
        if name in found:
            continue
        try:
            lines = requires(name) or []
        except PackageNotFoundError:
            continue
        found.add(name)
        for line in lines:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return sorted(found)


results = {"declared": declared("diviner", "envkit")}
for kind in KINDS:
    model = fit(kind)
    ours, theirs = out / "envkit" / kind, out / "mlflow" / kind
    envkit.diviner.save_model(model, ours, input_example=example(kind))
    mlflow.diviner.save_model(model, str(theirs), input_example=example(kind))
    results[kind] = {
        "trained": plain(envkit.diviner._DivinerModelWrapper(model).predict(example(kind))),
        "envkit_native": type(envkit.diviner.load_model(ours)).__name__,
        "envkit": plain(envkit.pyfunc.load_model(ours).predict(example(kind))),
        "envkit_subset": plain(envkit.diviner._load_pyfunc(str(ours)).predict(subset(kind))),
        "envkit_reads_mlflow_native": type(envkit.diviner.load_model(theirs)).__name__,
        "envkit_reads_mlflow": plain(envkit.pyfunc.load_model(theirs).predict(example(kind))),
        "mlflow_native": type(mlflow.diviner.load_model(str(theirs))).__name__,
        "mlflow": plain(mlflow.pyfunc.load_model(str(theirs)).predict(example(kind))),
        "mlflow_subset": plain(mlflow.diviner._load_pyfunc(str(theirs)).predict(subset(kind))),
        "mlflow_reads_envkit_native": type(mlflow.diviner.load_model(str(ours))).__name__,
        "mlflow_reads_envkit": plain(mlflow.pyfunc.load_model(str(ours)).predict(example(kind))),
        "mlflow_wrapper_reads_envkit": plain(
            mlflow.diviner._load_pyfunc(str(ours / "model.div")).predict(example(kind))
        ),
    }
# log_model into a run (no capture: the requirements given), loaded back by its runs:/ URI
envkit.set_tracking_dir(out / "runs")
info = envkit.diviner.log_model(
    fit("GroupedPmdarima"), name="grouped", pip_requirements=["diviner==0.1.1"]
)
results["logged"] = [info.model_uri, type(envkit.diviner.load_model(info.model_uri)).__name__]
envkit.set_tracking_dir(None)
# requirements that miss diviner (envkit warns): its validation must name the package
envkit.diviner.save_model(
    fit("GroupedPmdarima"), out / "no-diviner", input_example=example("GroupedPmdarima"),
    pip_requirements=["pandas==2.2.2", "numpy==1.26.4"],
)
(out / "results.json").write_text(json.dumps(results))
"""


@pytest.fixture(scope="session")
def diviner_models(diviner_python, tmp_path_factory, repo_root) -> tuple[Path, dict]:
    """Both sides' models and what each side made of them (one subprocess)."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    out = base / "diviner-models"
    with FileLock(str(out) + ".lock", timeout=1200):
        if not (out / "results.json").exists():
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            proc = subprocess.run(
                [str(diviner_python), "-c", SCRIPT, str(out), str(repo_root / "tests")],
                capture_output=True,
                text=True,
                env=env,
                timeout=600,
            )
            assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text())


def assert_same(got: dict[str, list], expected: dict[str, list]) -> None:
    assert list(got) == list(expected)
    for column, values in expected.items():
        if values and isinstance(values[0], float):
            np.testing.assert_allclose(got[column], values, rtol=1e-9, err_msg=column)
        else:
            assert got[column] == values, column


@pytest.mark.timeout(900)
@pytest.mark.parametrize("kind", KINDS)
def test_envkit_saves_loads_and_forecasts_every_group(diviner_models, kind):
    _, results = diviner_models
    ours = results[kind]
    assert ours["envkit_native"] == kind
    assert_same(ours["envkit"], ours["trained"])
    assert ours["envkit"]["region"] == ["north"] * 3 + ["south"] * 3
    assert ours["envkit"]["ds"][:3] == ["2024-01-31", "2024-02-01", "2024-02-02"]
    # groups: a subset, as JSON gives it (lists, not tuples)
    assert set(ours["envkit_subset"]["region"]) == {"south"}
    assert_same(ours["envkit_subset"], ours["mlflow_subset"])


@pytest.mark.timeout(900)
def test_log_model_saves_into_the_run_and_loads_by_its_uri(diviner_models):
    uri, kind = diviner_models[1]["logged"]
    assert uri.startswith("runs:/") and kind == "GroupedPmdarima"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("kind", KINDS)
def test_mlflow2_models_load_in_envkit_and_envkit_models_in_mlflow2(diviner_models, kind):
    _, results = diviner_models
    both = results[kind]
    assert both["envkit_reads_mlflow_native"] == kind
    assert_same(both["envkit_reads_mlflow"], both["mlflow"])
    assert both["mlflow_reads_envkit_native"] == kind
    assert_same(both["mlflow_reads_envkit"], both["envkit"])
    assert_same(both["mlflow_wrapper_reads_envkit"], both["envkit"])
    assert_same(both["mlflow"], both["envkit"])  # the same fit, saved by either


@pytest.mark.timeout(900)
@pytest.mark.parametrize("kind", KINDS)
def test_envkit_writes_the_keys_and_files_mlflow2_writes(diviner_models, kind):
    out, _ = diviner_models
    ours = yaml.safe_load((out / "envkit" / kind / "MLmodel").read_text())["flavors"]
    theirs = yaml.safe_load((out / "mlflow" / kind / "MLmodel").read_text())["flavors"]
    assert ours["diviner"] == theirs["diviner"]
    assert ours["diviner"]["fit_with_spark"] is False
    assert ours["python_function"].pop("loader_module") == "envkit.diviner"
    assert theirs["python_function"].pop("loader_module") == "mlflow.diviner"
    assert ours["python_function"] == theirs["python_function"]
    for side in ("envkit", "mlflow"):
        assert (out / side / kind / "model.div").is_file()


def _names(model: Path) -> set[str]:
    from envkit.deps.requirements import requirement_name

    lines = (model / "requirements.txt").read_text().splitlines()
    return {str(requirement_name(line)) for line in lines if requirement_name(line)}


@pytest.mark.timeout(900)
def test_capture_records_diviner_and_only_what_it_declares(diviner_models):
    out, results = diviner_models
    names = _names(out / "envkit" / "GroupedPmdarima")
    assert {"diviner", "pmdarima", "pandas", "numpy", "envkit"} <= names
    # MLflow, its server stack and envkit's scoring server are installed there, not needed
    assert not names & {"mlflow", "sqlalchemy", "flask", "starlette", "uvicorn"}
    assert names <= set(results["declared"]), names - set(results["declared"])
    pins = (out / "envkit" / "GroupedPmdarima" / "requirements.txt").read_text().splitlines()
    assert "diviner==0.1.1" in pins
    assert any(p.startswith("pandas==2.") for p in pins)  # diviner's pandas, not this one's


@pytest.mark.timeout(900)
def test_validate_rebuilds_the_environment_and_runs_the_example(diviner_models, shared_cache):
    model = diviner_models[0] / "envkit" / "GroupedPmdarima"
    proc = subprocess.run(
        [sys.executable, "-m", "envkit", "validate", str(model), "--format", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, "ENVKIT_HOME": str(shared_cache)},
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["ok"] and report["input"]["source"] == "input_example"
    assert "diviner==0.1.1" in report["spec"]["requirements"]


@pytest.mark.timeout(900)
def test_a_model_whose_requirements_miss_diviner_fails_validate_naming_it(
    diviner_models, shared_cache
):
    model = diviner_models[0] / "no-diviner"
    proc = subprocess.run(
        [sys.executable, "-m", "envkit", "validate", str(model)],
        capture_output=True,
        text=True,
        env={**os.environ, "ENVKIT_HOME": str(shared_cache)},
        timeout=900,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "the diviner flavor needs the package 'diviner'" in proc.stdout + proc.stderr


@pytest.mark.timeout(600)
def test_serve_answers_with_every_groups_forecast(diviner_models, diviner_python):
    out, results = diviner_models
    model = out / "envkit" / "GroupedPmdarima"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    server = Server(model, "--env-manager", "local", env=env, python=diviner_python)
    try:
        server.wait_ready(timeout=180)
        example = json.loads((model / "serving_input_example.json").read_text())
        status, body = post_json(server.port, example)
        # the flavor's own rule: a positive number of periods
        none = {"dataframe_split": {"columns": ["n_periods"], "data": [[0]]}}
        bad_status, bad = post_json(server.port, none)
    finally:
        server.stop()
    output = server.output()
    assert status == 200, (body, output[-2000:])
    predictions = body["predictions"]
    expected = results["GroupedPmdarima"]["envkit"]
    assert [row["region"] for row in predictions] == expected["region"]
    np.testing.assert_allclose([row["yhat"] for row in predictions], expected["yhat"], rtol=1e-9)
    assert bad_status == 400, bad
    assert "`n_periods` or `horizon`" in bad["message"]
