"""The spacy flavor end to end: save/load of a pipeline (spaCy's own ``to_disk``), the pyfunc
MLflow gives it (one text column in, each text's ``cats`` out), what the capture records,
interop both ways with real MLflow (its own virtualenv with this spaCy), and ``envkit
validate`` / ``envkit serve`` in a rebuilt environment.

The model is tests/flavor_models/spacy.py's: a blank English pipeline with a text categorizer
trained on eight sentences; without spaCy the module is skipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

spacy = pytest.importorskip("spacy")

from flavor_models import spacy as spacy_models  # noqa: E402
from test_serve import Server, post_json  # noqa: E402
from test_validate import envkit_cli, json_report  # noqa: E402

import envkit.pyfunc  # noqa: E402
import envkit.spacy  # noqa: E402
from envkit.errors import SchemaEnforcementError  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.heavy]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def nlp():
    return spacy_models.pipeline()


@pytest.fixture(scope="session")
def spacy_model(tmp_path_factory, nlp) -> Path:
    path = tmp_path_factory.mktemp("spacy-envkit") / "textcat"
    envkit.spacy.save_model(nlp, path, input_example=spacy_models.texts())
    return path


def _cats(nlp, frame) -> list[dict]:
    return [nlp(text).cats for text in frame.iloc[:, 0]]


def _mlmodel(path: Path) -> dict:
    return yaml.safe_load((path / "MLmodel").read_text())


def test_the_model_directory_has_mlflows_layout(spacy_model):
    mlmodel = _mlmodel(spacy_model)
    assert mlmodel["flavors"]["spacy"] == {
        "spacy_version": spacy.__version__, "data": "model.spacy", "code": None,
    }  # fmt: skip
    assert mlmodel["flavors"]["python_function"]["loader_module"] == "envkit.spacy"
    assert mlmodel["flavors"]["python_function"]["data"] == "model.spacy"
    assert (spacy_model / "model.spacy" / "config.cfg").is_file()
    assert not list(spacy_model.rglob("*.pkl"))  # spaCy's own format: no pickle


def test_load_model_and_the_pyfunc_give_each_texts_cats(spacy_model, nlp):
    frame = spacy_models.texts(5)
    loaded = envkit.spacy.load_model(spacy_model)
    assert loaded.pipe_names == ["textcat"]
    assert _cats(loaded, frame) == _cats(nlp, frame)
    predicted = envkit.pyfunc.load_model(spacy_model).predict(frame)
    assert list(predicted.columns) == ["predictions"]
    assert list(predicted["predictions"]) == _cats(nlp, frame)


def test_the_pyfunc_takes_one_text_column_only(spacy_model):
    import pandas as pd

    model = envkit.spacy._load_pyfunc(str(spacy_model))  # no signature: the wrapper's own rule
    with pytest.raises(SchemaEnforcementError, match="one text column"):
        model.predict(pd.DataFrame({"a": ["x"], "b": ["y"]}))


def test_a_pipeline_without_a_text_categorizer_saves_no_pyfunc(tmp_path, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="envkit.spacy"):
        envkit.spacy.save_model(spacy.blank("en"), tmp_path / "blank")
    assert "no text categorizer" in caplog.text
    assert set(_mlmodel(tmp_path / "blank")["flavors"]) == {"spacy"}
    provenance = json.loads((tmp_path / "blank" / "requirements.provenance.json").read_text())
    assert provenance["capture"]["status"] == "skipped"  # nothing a capture process could load
    assert f"spacy=={spacy.__version__}" in (tmp_path / "blank" / "requirements.txt").read_text()
    assert envkit.spacy.load_model(tmp_path / "blank").pipe_names == []


def test_not_a_pipeline_is_a_usage_error(tmp_path):
    from envkit.errors import UsageError

    with pytest.raises(UsageError, match=r"spacy\.Language"):
        envkit.spacy.save_model({"not": "a pipeline"}, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_code_paths_go_into_code_named_by_both_sections(tmp_path, nlp):
    module = tmp_path / "textcat_labels.py"
    module.write_text("LABELS = ('POSITIVE', 'NEGATIVE')\n")
    path = tmp_path / "with-code"
    envkit.spacy.save_model(nlp, path, code_paths=[module], pip_requirements=["spacy"])
    flavors = _mlmodel(path)["flavors"]
    assert flavors["spacy"]["code"] == flavors["python_function"]["code"] == "code"
    assert (path / "code" / "textcat_labels.py").is_file()
    frame = spacy_models.texts(2)
    assert _cats(envkit.spacy.load_model(path), frame) == _cats(nlp, frame)


CUSTOM_COMPONENT = """
from spacy.language import Language

@Language.component("shout_marker")
def shout_marker(doc):
    doc.user_data["shout"] = doc.text.isupper()
    return doc
"""


def test_a_custom_component_in_code_paths_is_not_imported_at_load(tmp_path):
    """As MLflow's loader (the README says so): code/ is put on sys.path, and spaCy imports
    nothing from it, so the factory is missing in a fresh process."""
    (tmp_path / "shout.py").write_text(CUSTOM_COMPONENT)
    save = (
        "import sys, warnings; sys.path.insert(0, sys.argv[1]); import shout, envkit.spacy\n"
        "from flavor_models.spacy import pipeline\n"
        "nlp = pipeline(); nlp.add_pipe('shout_marker')\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    here = sys.argv[1]\n"
        "    envkit.spacy.save_model(nlp, here + '/m', code_paths=[here + '/shout.py'])\n"
        "print([type(w.message).__name__ for w in caught])\n"
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    saved = subprocess.run(
        [sys.executable, "-c", save, str(tmp_path)], capture_output=True, text=True, env=env,
        timeout=300,
    )  # fmt: skip
    assert saved.returncode == 0, saved.stderr[-2000:]
    assert "CaptureWarning" in saved.stdout  # the capture process could not load it
    assert (tmp_path / "m" / "code" / "shout.py").is_file()
    load = "import sys, envkit.spacy; envkit.spacy.load_model(sys.argv[1])"
    loaded = subprocess.run(
        [sys.executable, "-c", load, str(tmp_path / "m")], capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert loaded.returncode != 0 and "E002" in loaded.stderr


def test_log_model_saves_into_the_run_and_loads_by_runs_uri(tmp_path, nlp):
    envkit.set_tracking_dir(tmp_path / "runs")
    try:
        with envkit.start_run():
            info = envkit.spacy.log_model(nlp, name="textcat", pip_requirements=["spacy"])
        assert info.model_uri.startswith("runs:/") and "spacy" in info.flavors
        frame = spacy_models.texts(3)
        assert _cats(envkit.spacy.load_model(info.model_uri), frame) == _cats(nlp, frame)
        predicted = envkit.pyfunc.load_model(info.model_uri).predict(frame)
        assert list(predicted["predictions"]) == _cats(nlp, frame)
    finally:
        envkit.set_tracking_dir(None)


def test_importing_the_flavor_imports_no_spacy():
    code = "import sys, envkit.spacy; assert 'spacy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_capture_records_spacy_and_not_the_other_heavy_libraries(spacy_model):
    lines = (spacy_model / "requirements.txt").read_text().splitlines()
    assert f"spacy=={spacy.__version__}" in lines
    names = {line.split("==")[0].lower() for line in lines}
    assert not names & {
        "torch",
        "transformers",
        "tensorflow",
        "tensorflow-cpu",
        "keras",
        "scikit-learn",
    }


# --- MLflow, both ways ---------------------------------------------------------------------------

INTEROP = """
import json, sys
from pathlib import Path

request = json.loads(Path(sys.argv[1]).read_text())
out = Path(request["out"])
sys.argv = ["-c", str(out / "mlflow-textcat")]
saved = {"__name__": "__main__"}
exec(compile(request["mlflow_save"], "<MLFLOW_SAVE>", "exec"), saved)

import mlflow.pyfunc, mlflow.spacy

frame = saved["texts"](5)
result = {}
models = {"envkit": request["envkit_model"], "mlflow": str(out / "mlflow-textcat")}
for name, path in models.items():
    native = mlflow.spacy.load_model(path)
    predicted = mlflow.pyfunc.load_model(path).predict(frame)
    result[name] = {
        "native": [native(text).cats for text in frame["text"]],
        "pyfunc": list(predicted["predictions"]),
    }
print(json.dumps(result))
"""


@pytest.fixture(scope="session")
def mlflow_spacy(tmp_path_factory, spacy_model, mlflow_spacy_python) -> dict:
    """``out``: where MLflow saved its model; ``results``: what MLflow predicted."""
    python = mlflow_spacy_python
    root = tmp_path_factory.mktemp("spacy-mlflow")
    request = root / "request.json"
    request.write_text(
        json.dumps(
            {"out": str(root), "mlflow_save": spacy_models.MLFLOW_SAVE,
             "envkit_model": str(spacy_model)}
        )
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [str(python), "-c", textwrap.dedent(INTEROP), str(request)],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return {"out": root, "results": json.loads(done.stdout.strip().splitlines()[-1])}


@pytest.mark.mlflow
def test_envkit_writes_the_sections_mlflow_writes(spacy_model, mlflow_spacy):
    theirs = _mlmodel(mlflow_spacy["out"] / "mlflow-textcat")
    mine = _mlmodel(spacy_model)
    assert mine["flavors"]["spacy"] == theirs["flavors"]["spacy"]
    for key in ("data", "env", "python_version"):
        assert mine["flavors"]["python_function"][key] == theirs["flavors"]["python_function"][key]
    assert theirs["flavors"]["python_function"]["loader_module"] == "mlflow.spacy"
    assert mine["signature"] == theirs["signature"]


@pytest.mark.mlflow
def test_mlflow_loads_envkits_model_and_predicts_the_same(nlp, mlflow_spacy):
    frame = spacy_models.texts(5)
    loaded = mlflow_spacy["results"]["envkit"]
    assert loaded["native"] == loaded["pyfunc"] == _cats(nlp, frame)


@pytest.mark.mlflow
def test_envkit_loads_mlflows_model_without_mlflow(mlflow_spacy):
    path = mlflow_spacy["out"] / "mlflow-textcat"
    frame = spacy_models.texts(5)
    expected = mlflow_spacy["results"]["mlflow"]["pyfunc"]
    pyfunc = envkit.pyfunc.load_model(path)
    assert pyfunc.loader_module == "mlflow.spacy"
    assert list(pyfunc.predict(frame)["predictions"]) == expected
    assert _cats(envkit.spacy.load_model(path), frame) == expected
    assert "mlflow" not in sys.modules


# --- validate and serve --------------------------------------------------------------------------


@pytest.mark.timeout(1500)
def test_validate_and_serve_in_the_rebuilt_environment(spacy_model, nlp, shared_cache):
    proc = envkit_cli("validate", str(spacy_model), "--format", "json", home=shared_cache)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json_report(proc)
    assert report["ok"] and report["input"]["source"] == "input_example"
    assert f"spacy=={spacy.__version__}" in report["spec"]["requirements"]
    assert report["network"] == []

    frame = spacy_models.texts(4)
    server = Server(spacy_model, env={**os.environ, "ENVKIT_HOME": str(shared_cache)})
    try:
        server.wait_ready(timeout=900)
        status, body = post_json(server.port, {"dataframe_split": frame.to_dict(orient="split")})
        assert status == 200, body
        got = [row["predictions"] for row in body["predictions"]]
        expected = _cats(nlp, frame)
        assert [sorted(g) for g in got] == [sorted(e) for e in expected]
        for g, e in zip(got, expected):
            assert all(abs(g[k] - e[k]) < 1e-6 for k in e)
    finally:
        assert server.stop() == 0, server.output()
