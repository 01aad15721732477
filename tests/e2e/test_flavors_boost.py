"""The gradient boosting flavors end to end: what the capture records, interop both ways with
real MLflow (one subprocess of its virtualenv for the whole family), and `envkit validate` and
`envkit serve` of one model per flavor in rebuilt environments.

The models are tests/flavor_models' (twelve rows, three float columns): an xgboost Booster, an
LGBMClassifier (skops) and a CatBoostClassifier, plus the other API of xgboost
(XGBClassifier, json) and of lightgbm (Booster), saved by envkit here and by MLflow there.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from flavor_models import catboost as cb_models
from flavor_models import lightgbm as lgb_models
from flavor_models import xgboost as xgb_models
from test_serve import Server, post_json
from test_validate import envkit_cli, json_report

import envkit.catboost
import envkit.lightgbm
import envkit.pyfunc
import envkit.xgboost

pytestmark = pytest.mark.slow

# catboost imported as envkit does, keeping this process's recursion limit (see envkit.catboost)
envkit.catboost._catboost()

FLAVORS = {"xgboost": xgb_models, "lightgbm": lgb_models, "catboost": cb_models}
X, Y = xgb_models.training_data()
# The other API of xgboost and lightgbm (the flavor_models modules save the first one).
VARIANTS = ("xgboost-classifier", "lightgbm-booster")


def _source(*functions) -> str:
    return "\n\n".join(textwrap.dedent(inspect.getsource(f)) for f in functions)


# Run in the MLflow venv like MLFLOW_SAVE: the same two variants, saved with mlflow.
MLFLOW_VARIANTS = {
    "xgboost-classifier": f"""
import sys
from importlib.metadata import packages_distributions, version
from typing import Any

import mlflow.xgboost

{_source(xgb_models.training_data, xgb_models.classifier)}

names = (packages_distributions()["xgboost"][0], "scikit-learn", "pandas", "numpy")
X, y = training_data()
mlflow.xgboost.save_model(
    classifier(X, y), sys.argv[1], input_example=X.head(3), model_format="json",
    pip_requirements=[f"{{name}}=={{version(name)}}" for name in names],
)
""",
    "lightgbm-booster": f"""
import sys
from importlib.metadata import version
from typing import Any

import mlflow.lightgbm

{_source(lgb_models.training_data, lgb_models.booster)}

X, y = training_data()
mlflow.lightgbm.save_model(
    booster(X, y), sys.argv[1], input_example=X.head(3),
    pip_requirements=[f"{{name}}=={{version(name)}}" for name in ("lightgbm", "pandas", "numpy")],
)
""",
}

# One process of the MLflow venv: save every model with mlflow, then load every model (its own
# and envkit's) with mlflow.<flavor>.load_model and mlflow.pyfunc.load_model and predict.
INTEROP = """
import json, sys
from pathlib import Path

request = json.loads(Path(sys.argv[1]).read_text())
for name, source in request["scripts"].items():
    sys.argv = ["-c", request["mlflow_models"][name]]
    exec(compile(source, f"<MLFLOW_SAVE {name}>", "exec"), {"__name__": "__main__"})

import numpy as np
import pandas as pd
import mlflow
import mlflow.catboost, mlflow.lightgbm, mlflow.pyfunc, mlflow.xgboost

X = pd.DataFrame(request["X"]["data"], columns=request["X"]["columns"])
result = {}
for path in [*request["mlflow_models"].values(), *request["envkit_models"].values()]:
    flavor = Path(path).name.split("-")[0]
    native = getattr(mlflow, flavor).load_model(path)
    predictions = mlflow.pyfunc.load_model(path).predict(X)
    result[path] = {"native": type(native).__name__, "pyfunc": np.asarray(predictions).tolist()}
print(json.dumps(result))
"""


@pytest.fixture(scope="session")
def boost_models(tmp_path_factory) -> dict[str, Path]:
    """Name -> an envkit-saved model, requirements captured: a flavor name for its
    flavor_models model, or a VARIANTS name."""
    root = tmp_path_factory.mktemp("boost-envkit")
    models = {}
    for flavor, module in FLAVORS.items():
        module.save_envkit(root / flavor)
        models[flavor] = root / flavor
    models["xgboost-classifier"] = root / "xgboost-classifier"
    envkit.xgboost.save_model(
        xgb_models.classifier(X, Y),
        models["xgboost-classifier"],
        model_format="json",
        input_example=X.head(3),
    )
    models["lightgbm-booster"] = root / "lightgbm-booster"
    envkit.lightgbm.save_model(
        lgb_models.booster(X, Y), models["lightgbm-booster"], input_example=X.head(3)
    )
    return models


@pytest.fixture(scope="session")
def mlflow_boost(run_in_mlflow, boost_models, tmp_path_factory) -> dict:
    """``models``: name -> the same model saved by MLflow; ``results``: model path -> what
    MLflow loaded from it (``native`` class name, ``pyfunc`` predictions on X)."""
    root = tmp_path_factory.mktemp("boost-mlflow")
    scripts = {flavor: module.MLFLOW_SAVE for flavor, module in FLAVORS.items()}
    scripts.update(MLFLOW_VARIANTS)
    models = {name: root / name for name in scripts}
    request = root / "request.json"
    request.write_text(
        json.dumps(
            {
                "scripts": scripts,
                "mlflow_models": {name: str(path) for name, path in models.items()},
                "envkit_models": {name: str(path) for name, path in boost_models.items()},
                "X": X.to_dict(orient="split"),
            }
        )
    )
    # envkit on the path: mlflow.pyfunc.load_model imports envkit's loader modules.
    out = run_in_mlflow(INTEROP, str(request), with_envkit=True)
    return {"models": models, "results": json.loads(out.strip().splitlines()[-1])}


def _mlmodel(path: Path) -> dict:
    return yaml.safe_load((path / "MLmodel").read_text())


def _requirement_names(path: Path) -> set[str]:
    from envkit.deps.requirements import requirement_name

    return {requirement_name(line) for line in (path / "requirements.txt").read_text().split()}


def _provider(module: str) -> str:
    from importlib.metadata import packages_distributions

    return packages_distributions()[module][0].lower()


# --- capture ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "present", "absent"),
    [
        ("xgboost", {"xgboost"}, {"scikit-learn", "cloudpickle", "joblib"}),
        ("xgboost-classifier", {"xgboost", "scikit-learn"}, set()),
        ("lightgbm-booster", {"lightgbm"}, {"scikit-learn", "skops", "cloudpickle"}),
        ("lightgbm", {"lightgbm", "scikit-learn", "skops"}, set()),
        ("catboost", {"catboost"}, {"scikit-learn", "ipython", "traitlets"}),
    ],
)
def test_capture_records_the_library_and_only_what_the_model_needs(
    boost_models, name, present, absent
):
    """The library by the distribution that provides its import (xgboost-cpu here), pinned;
    scikit-learn only for the scikit-learn API, though every one of these libraries imports
    it (or IPython, for catboost) when it is installed."""
    recorded = _requirement_names(boost_models[name])
    for library in present:
        dist = _provider(library) if library in FLAVORS else library
        assert dist in recorded, recorded
    assert not absent & recorded, recorded
    assert "mlflow" not in recorded


# --- interop with MLflow -------------------------------------------------------------------------


def test_mlflow_is_not_installed_in_the_test_environment():
    assert importlib.util.find_spec("mlflow") is None


@pytest.mark.mlflow
@pytest.mark.parametrize("name", [*FLAVORS, *VARIANTS])
def test_envkit_writes_the_flavor_section_and_files_mlflow_writes(boost_models, mlflow_boost, name):
    ours, theirs = boost_models[name], mlflow_boost["models"][name]
    flavor = name.split("-")[0]
    mine, mlflows = _mlmodel(ours)["flavors"], _mlmodel(theirs)["flavors"]
    for section in (mine[flavor], mlflows[flavor]):
        if section.get("skops_trusted_types"):
            section["skops_trusted_types"] = sorted(section["skops_trusted_types"])
    assert mine[flavor] == mlflows[flavor]
    assert mine["python_function"]["loader_module"] == f"envkit.{flavor}"
    assert mlflows["python_function"]["loader_module"] == f"mlflow.{flavor}"
    for key in ("data", "env", "python_version"):
        assert mine["python_function"][key] == mlflows["python_function"][key]
    mlflow_files = {p.name for p in theirs.iterdir()}
    assert mlflow_files <= {p.name for p in ours.iterdir()}


@pytest.mark.mlflow
@pytest.mark.parametrize("name", [*FLAVORS, *VARIANTS])
def test_mlflow_loads_envkit_models_and_predicts_the_same(boost_models, mlflow_boost, name):
    path = boost_models[name]
    flavor = name.split("-")[0]
    loaded_by_mlflow = mlflow_boost["results"][str(path)]
    native = getattr(envkit, flavor).load_model(path)
    assert loaded_by_mlflow["native"] == type(native).__name__
    ours = envkit.pyfunc.load_model(path).predict(X)
    np.testing.assert_allclose(np.asarray(loaded_by_mlflow["pyfunc"]), ours, rtol=1e-6)


@pytest.mark.mlflow
@pytest.mark.parametrize("name", [*FLAVORS, *VARIANTS])
def test_envkit_loads_mlflow_models_without_mlflow(mlflow_boost, name):
    path = mlflow_boost["models"][name]
    flavor = name.split("-")[0]
    loaded_by_mlflow = mlflow_boost["results"][str(path)]
    pyfunc = envkit.pyfunc.load_model(path)
    assert pyfunc.loader_module == f"mlflow.{flavor}"
    np.testing.assert_allclose(pyfunc.predict(X), np.asarray(loaded_by_mlflow["pyfunc"]), rtol=1e-6)
    assert type(getattr(envkit, flavor).load_model(path)).__name__ == loaded_by_mlflow["native"]
    assert "mlflow" not in sys.modules


# --- validate and serve --------------------------------------------------------------------------


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("flavor", list(FLAVORS))
def test_validate_and_serve_one_model_of_each_flavor(boost_models, shared_cache, flavor):
    """`envkit validate` rebuilds the model's environment and predicts its input example;
    `envkit serve` (its rebuilt environment plus the server) answers what envkit predicts."""
    model = boost_models[flavor]
    proc = envkit_cli("validate", str(model), "--format", "json", home=shared_cache)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json_report(proc)
    assert report["ok"] and report["input"]["source"] == "input_example"
    assert report["output"]["shape"] == [3]
    assert any(r.startswith(f"{_provider(flavor)}==") for r in report["spec"]["requirements"])

    expected = envkit.pyfunc.load_model(model).predict(X.head(4))
    server = Server(model, env={**os.environ, "ENVKIT_HOME": str(shared_cache)})
    try:
        server.wait_ready(timeout=900)
        payload = {"dataframe_split": X.head(4).to_dict(orient="split")}
        status, body = post_json(server.port, payload)
        assert status == 200, body
        np.testing.assert_allclose(np.asarray(body["predictions"]), expected, rtol=1e-6)
    finally:
        assert server.stop() == 0, server.output()


@pytest.mark.timeout(900)
def test_a_model_whose_requirements_miss_the_library_fails_validate_naming_it(
    boost_models, shared_cache, tmp_path
):
    model = tmp_path / "no-xgboost"
    shutil.copytree(boost_models["xgboost"], model)
    requirements = model / "requirements.txt"
    provider = _provider("xgboost")
    lines = requirements.read_text().splitlines()
    requirements.write_text(
        "\n".join(line for line in lines if not line.lower().startswith(provider)) + "\n"
    )
    proc = envkit_cli("validate", str(model), home=shared_cache)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "the xgboost flavor needs the package 'xgboost'" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
