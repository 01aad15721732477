"""The h2o flavor: an H2O GLM saved in MLflow's layout (``model.h2o/h2o.yaml``), its pyfunc,
the Java it records (and ``envkit validate`` checking it), MLflow interop both ways, and
validate and serve in a rebuilt environment. One H2O cluster per test process (``h2o_cluster``)."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from flavor_models import h2o as h2o_models
from java_check import assert_validate_exits_3_without_the_java

pytestmark = [
    pytest.mark.slow,
    # h2o's as_data_frame, single-threaded without polars and pyarrow: all a few rows need
    pytest.mark.filterwarnings("ignore::h2o.exceptions.H2ODependencyWarning"),
    # h2o.init leaves the log files of the JVM it starts to the garbage collector: h2o's
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def h2o_model(h2o_cluster, tmp_path_factory):
    """A GLM trained in the session's cluster, saved with envkit.h2o (the cluster's h2o.init
    arguments as its ``init``); its predictions on the training rows."""
    import h2o

    import envkit.h2o

    rows = h2o_models.training_data()
    glm = h2o_models.glm(rows)
    features = rows[h2o_models.FEATURES]
    expected = glm.predict(h2o.H2OFrame(features)).as_data_frame(use_multi_thread=False)
    path = tmp_path_factory.mktemp("h2o-flavor") / "model"
    envkit.h2o.save_model(glm, path, settings={"init": h2o_cluster}, input_example=features.head(3))
    return path, features, expected["predict"].tolist()


@pytest.mark.timeout(300)
def test_save_load_and_pyfunc_in_mlflow_layout(h2o_cluster, h2o_model):
    import h2o
    from h2o.estimators.estimator_base import H2OEstimator

    import envkit.h2o
    import envkit.pyfunc
    from envkit.errors import SchemaEnforcementError

    path, features, expected = h2o_model
    mlmodel = yaml.safe_load((path / "MLmodel").read_text())
    section = mlmodel["flavors"]["h2o"]
    assert section["h2o_version"] == h2o.__version__
    assert section["data"] == "model.h2o"
    assert section["java_major_version"] == 17  # the machine's openjdk-17
    pyfunc_section = mlmodel["flavors"]["python_function"]
    assert (pyfunc_section["loader_module"], pyfunc_section["data"]) == ("envkit.h2o", "model.h2o")
    settings = yaml.safe_load((path / "model.h2o" / "h2o.yaml").read_text())
    assert settings["init"] == h2o_cluster
    assert (path / "model.h2o" / settings["model_file"]).is_file()
    requirements = (path / "requirements.txt").read_text().splitlines()
    assert f"h2o=={h2o.__version__}" in requirements
    loaded = envkit.h2o.load_model(path)
    assert isinstance(loaded, H2OEstimator)
    again = loaded.predict(h2o.H2OFrame(features)).as_data_frame(use_multi_thread=False)
    assert again["predict"].tolist() == expected
    pyfunc = envkit.pyfunc.load_model(path)
    predicted = pyfunc.predict(features.set_axis(range(100, 130)))
    assert list(predicted.index) == list(range(100, 130))
    assert predicted["predict"].tolist() == expected
    with pytest.raises(SchemaEnforcementError, match="pandas DataFrame only"):
        pyfunc._model_impl.predict(features.to_numpy())


@pytest.mark.timeout(300)
def test_validate_exits_3_when_the_java_the_model_needs_is_missing(h2o_model, tmp_path):
    """Checked before anything is built: a JVM too old and no JVM at all."""
    words = "h2o flavor runs on Java 99"
    assert_validate_exits_3_without_the_java(h2o_model[0], "h2o", tmp_path, words)


_MLFLOW_H2O = f"""
import json, sys
from typing import Any

import h2o, pandas as pd
import mlflow.h2o, mlflow.pyfunc

{h2o_models._SOURCE}

envkit_model, out, init = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
h2o.init(**init, verbose=False)  # joins the test session's cluster
h2o.no_progress()
rows = training_data()
features = rows[["a", "b"]]
model = glm(rows)
# (its requirements given: MLflow's inference would load the model in one more process)
mlflow.h2o.save_model(
    model, out + "/mlflow-model", settings={{"init": init}}, input_example=features.head(3),
    pip_requirements=["h2o==" + h2o.__version__, "pandas==" + pd.__version__],
)

def column(frame):
    return frame.as_data_frame()["predict"].tolist()

result = {{
    "mlflow_expected": column(model.predict(h2o.H2OFrame(features))),
    "envkit_by_mlflow_h2o": column(
        mlflow.h2o.load_model(envkit_model).predict(h2o.H2OFrame(features))
    ),
}}
assert "envkit" not in sys.modules  # mlflow.h2o read envkit's files on its own
# (the pyfunc's loader_module is envkit.h2o, as MLflow's is mlflow.h2o: envkit is importable)
result["envkit_by_mlflow_pyfunc"] = (
    mlflow.pyfunc.load_model(envkit_model).predict(features)["predict"].tolist()
)
json.dump(result, open(out + "/result.json", "w"))
"""


@pytest.mark.mlflow
@pytest.mark.timeout(1500)
def test_mlflow_interop_both_ways(h2o_cluster, h2o_model, mlflow_h2o_python, tmp_path):
    """One MLflow subprocess, in the session's cluster: MLflow loads envkit's model (mlflow.h2o
    and pyfunc) and saves one with mlflow.h2o, which envkit then loads (envkit.h2o, pyfunc)."""
    import h2o

    import envkit.h2o
    import envkit.pyfunc

    path, features, expected = h2o_model
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    script = textwrap.dedent(_MLFLOW_H2O)
    init = json.dumps(h2o_cluster)
    done = subprocess.run(
        [str(mlflow_h2o_python), "-c", script, str(path), str(tmp_path), init],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["envkit_by_mlflow_h2o"] == expected
    assert result["envkit_by_mlflow_pyfunc"] == expected

    theirs = tmp_path / "mlflow-model"
    mlmodel = yaml.safe_load((theirs / "MLmodel").read_text())
    assert mlmodel["flavors"]["h2o"]["data"] == "model.h2o"
    assert mlmodel["flavors"]["python_function"]["loader_module"] == "mlflow.h2o"
    settings = yaml.safe_load((theirs / "model.h2o" / "h2o.yaml").read_text())
    assert settings["init"] == h2o_cluster and "model_file" in settings
    loaded = envkit.h2o.load_model(theirs)
    ours = loaded.predict(h2o.H2OFrame(features)).as_data_frame(use_multi_thread=False)
    assert ours["predict"].tolist() == result["mlflow_expected"]
    pyfunc = envkit.pyfunc.load_model(theirs)
    assert pyfunc.predict(features)["predict"].tolist() == result["mlflow_expected"]


@pytest.mark.timeout(1500)
def test_validate_and_serve_in_the_rebuilt_environment(h2o_model, shared_cache):
    """h2o from the index in a fresh environment; `envkit validate` predicts the input example
    (contained: the sandbox's h2o.init starts its own JVM on its loopback), and `envkit serve`
    answers what the model predicts."""
    from test_serve import Server, post_json

    import envkit

    path, features, expected = h2o_model
    report = envkit.validate(path, cache_dir=shared_cache)
    assert report.ok, report.headline
    assert report.to_dict()["containment"]["network"]["held"]

    server = Server(path, env={**os.environ, "ENVKIT_HOME": str(shared_cache)})
    try:
        server.wait_ready(timeout=900)
        payload = {"dataframe_split": features.head(4).to_dict(orient="split")}
        status, body = post_json(server.port, payload)
        assert status == 200, body
        got = [row["predict"] for row in body["predictions"]]
        np.testing.assert_allclose(got, expected[:4], rtol=1e-9)
    finally:
        assert server.stop() == 0, server.output()
