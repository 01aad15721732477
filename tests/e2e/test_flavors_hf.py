"""The Hugging Face flavors for real, on tiny models built in the session (no Hub download):
``envkit.transformers`` (five pipeline tasks) and ``envkit.sentence_transformers``. Their
layout and keys against the files real MLflow writes, MLflow reading envkit's models and envkit
reading MLflow's (one subprocess of MLflow's own virtualenv does MLflow's side), the capture
(torch with its local label), ``envkit validate`` and ``envkit serve``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.heavy]

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
sentence_transformers = pytest.importorskip("sentence_transformers")

from flavor_models import sentence_transformers as st_models  # noqa: E402
from flavor_models import transformers as hf_models  # noqa: E402

import envkit.pyfunc  # noqa: E402
import envkit.sentence_transformers  # noqa: E402
import envkit.transformers  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TASKS = (
    "text-classification",
    "feature-extraction",
    "token-classification",
    "fill-mask",
    "text-generation",
)
# What each pipeline predicts in the tests (fill-mask's hold a [MASK] each)
INPUTS = {
    "text-classification": ["the movie was great", "a boring film"],
    "feature-extraction": ["the movie was great", "a film"],
    "token-classification": ["john lives in paris", "the movie was great"],
    "fill-mask": ["i hated the [MASK] film", "the movie was [MASK]"],
    "text-generation": ["the movie was", "john lives in"],
    "sentence": st_models.SENTENCES,
}
# Greedy, 4 tokens, special tokens never generated (a random model would generate [SEP] only)
GENERATION = {"max_new_tokens": 4, "do_sample": False, "suppress_tokens": [0, 1, 2, 3, 4]}
CAPTURED = ("text-classification", "sentence")  # the others are saved with capture off


def example_of(task: str):
    """One sentence; text generation's with a param (its signature then declares it)."""
    if task == "text-generation":
        return (INPUTS[task][:1], {"max_new_tokens": GENERATION["max_new_tokens"]})
    return INPUTS[task][:1]


def _save(task: str, root: Path) -> Path:
    from envkit.deps.capture import capture_disabled

    path = root / task
    if task == "sentence":
        model = st_models.tiny_sentence_model(root / "build" / task)
        saving = envkit.sentence_transformers.save_model
        kwargs: dict = {}
    else:
        model = hf_models.tiny_pipeline(task, root / "build" / task)
        saving = envkit.transformers.save_model
        kwargs = {"model_config": GENERATION} if task == "text-generation" else {}
    example = example_of(task)
    if task in CAPTURED:
        saving(model, path, input_example=example, **kwargs)
    else:
        with capture_disabled("the capture is tested on the text-classification model"):
            saving(model, path, input_example=example, **kwargs)
    return path


@pytest.fixture(scope="session")
def hf_models_dir(tmp_path_factory) -> Path:
    """One envkit model per task (and ``sentence``), each with a one-sentence input example."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = tmp_path_factory.mktemp("envkit-hf")
    for task in (*TASKS, "sentence"):
        _save(task, root)
    return root


def plain(out) -> object:
    """A prediction as JSON data (DataFrame: its columns; array: nested lists)."""
    if isinstance(out, pd.DataFrame):
        return {"frame": out.to_dict(orient="list")}
    if isinstance(out, np.ndarray):
        return {"array": out.tolist()}
    return {"value": out}


# MLflow's side, in one process: save MLflow's models (requirements given: MLflow's inference
# would load each model once more) and read envkit's with mlflow.transformers,
# mlflow.sentence_transformers and mlflow.pyfunc (envkit importable: its loader modules).
MLFLOW_SIDE = f"""
import json, sys
from pathlib import Path

import numpy as np
import pandas as pd

import mlflow.pyfunc
import mlflow.sentence_transformers
import mlflow.transformers

{st_models.SOURCE}

{textwrap.dedent(__import__("inspect").getsource(plain))}

ours, theirs = Path(sys.argv[1]), Path(sys.argv[2])
inputs = {INPUTS!r}
tasks = {TASKS!r}
generation = {GENERATION!r}
reqs = ["torch==" + __import__("torch").__version__,
        "transformers==" + __import__("transformers").__version__]
for task in tasks:
    pipe = tiny_pipeline(task, theirs / "build" / task)
    config = generation if task == "text-generation" else None
    example = inputs[task][:1]
    if task == "text-generation":
        example = (example, {{"max_new_tokens": generation["max_new_tokens"]}})
    mlflow.transformers.save_model(pipe, str(theirs / task), input_example=example,
                                   model_config=config, pip_requirements=reqs)
model = tiny_sentence_model(theirs / "build" / "sentence")
mlflow.sentence_transformers.save_model(model, str(theirs / "sentence"),
                                        input_example=inputs["sentence"][:1],
                                        pip_requirements=reqs)
results = {{"ours": {{}}, "theirs": {{}}}}
for name in (*tasks, "sentence"):
    for side, root in (("ours", ours), ("theirs", theirs)):
        pyfunc = mlflow.pyfunc.load_model(str(root / name))
        entry = {{"pyfunc": plain(pyfunc.predict(inputs[name]))}}
        if name == "sentence":
            native = mlflow.sentence_transformers.load_model(str(root / name))
            entry["native"] = {{"type": type(native).__name__,
                               "encode": native.encode(inputs[name]).tolist()}}
        else:
            native = mlflow.transformers.load_model(str(root / name))
            entry["native"] = {{"type": type(native).__name__, "task": native.task}}
        results[side][name] = entry
print(json.dumps(results))
"""


@pytest.fixture(scope="session")
def mlflow_hf_side(mlflow_hf_python, hf_models_dir, tmp_path_factory) -> tuple[dict, Path]:
    theirs = tmp_path_factory.mktemp("mlflow-hf")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        PYTHONPATH=str(REPO),
        HF_HUB_OFFLINE="1",
        MLFLOW_HUGGINGFACE_DISABLE_ACCELERATE_FEATURES="true",
    )
    done = subprocess.run(
        [str(mlflow_hf_python), "-c", MLFLOW_SIDE, str(hf_models_dir), str(theirs)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), theirs


def assert_same(got: object, expected: object) -> None:
    """Equal predictions (floats to 1e-5: the same weights, the same torch)."""
    assert type(got) is type(expected), (got, expected)
    if isinstance(expected, dict):
        assert got.keys() == expected.keys()
        for key in expected:
            assert_same(got[key], expected[key])
    elif isinstance(expected, list):
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            assert_same(a, b)
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)
    else:
        assert got == expected


def _mlmodel(path: Path) -> dict:
    return yaml.safe_load((path / "MLmodel").read_text())


def test_pipelines_save_load_and_predict_in_mlflows_formats(hf_models_dir):
    tc = envkit.pyfunc.load_model(hf_models_dir / "text-classification")
    out = tc.predict(INPUTS["text-classification"])
    assert list(out.columns) == ["label", "score"] and len(out) == 2
    assert set(out["label"]) <= {"NEGATIVE", "POSITIVE"}
    pair = tc.predict({"text": "the movie", "text_pair": "was great"})
    assert list(pair["label"]) in (["NEGATIVE"], ["POSITIVE"])
    pipe = envkit.transformers.load_model(hf_models_dir / "text-classification")
    assert isinstance(pipe, transformers.TextClassificationPipeline)
    direct = pipe(INPUTS["text-classification"])
    assert out["score"].tolist() == pytest.approx([d["score"] for d in direct], rel=1e-6)

    features = envkit.pyfunc.load_model(hf_models_dir / "feature-extraction")
    vectors = features.predict("the movie was great")
    # MLflow's shape: the first input's token embeddings ([CLS] the movie was great [SEP])
    assert isinstance(vectors, np.ndarray) and vectors.shape == (6, 32)

    entities = envkit.pyfunc.load_model(hf_models_dir / "token-classification")
    tagged = entities.predict(INPUTS["token-classification"])
    raw = entities.get_raw_model()(INPUTS["token-classification"])
    assert tagged == [",".join(entity["entity"] for entity in group) for group in raw]
    assert set(",".join(tagged).split(",")) <= {"PER", "LOC"}  # "O" is not an entity

    masks = envkit.pyfunc.load_model(hf_models_dir / "fill-mask").predict(INPUTS["fill-mask"])
    assert len(masks) == 2 and set(masks) <= set(hf_models.WORDS)

    generator = envkit.pyfunc.load_model(hf_models_dir / "text-generation")
    assert generator.model_config == GENERATION
    texts = generator.predict(INPUTS["text-generation"])
    raw = generator.get_raw_model()(INPUTS["text-generation"], **GENERATION)
    assert texts == [group[0]["generated_text"].strip() for group in raw]
    assert all(len(t.split()) > len(p.split()) for t, p in zip(texts, INPUTS["text-generation"]))
    # params override the saved model_config for one call
    short = generator.predict("the movie was", params={"max_new_tokens": 1})
    assert len(short) == 1 and len(short[0]) < len(texts[0])

    parts = envkit.transformers.load_model(hf_models_dir / "fill-mask", return_type="components")
    assert parts["task"] == "fill-mask"
    assert type(parts["model"]).__name__ == "BertForMaskedLM"
    assert type(parts["tokenizer"]).__name__ == "BertTokenizer"


def test_sentence_transformer_saves_loads_and_embeds(hf_models_dir):
    path = hf_models_dir / "sentence"
    model = envkit.sentence_transformers.load_model(path)
    assert isinstance(model, sentence_transformers.SentenceTransformer)
    expected = model.encode(INPUTS["sentence"])
    pyfunc = envkit.pyfunc.load_model(path)
    got = pyfunc.predict(INPUTS["sentence"])
    assert got.shape == (3, 32)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    frame = pyfunc.predict(pd.DataFrame({"text": INPUTS["sentence"]}))
    np.testing.assert_allclose(frame, expected, rtol=1e-6)
    section = _mlmodel(path)["flavors"]
    assert section["python_function"]["data"] == "model.sentence_transformer"
    assert section["sentence_transformers"]["pipeline_model_type"] == "BertModel"


def test_the_capture_records_torch_with_its_local_label(hf_models_dir):
    for name, library in (("text-classification", "transformers"), ("sentence", None)):
        provenance = json.loads((hf_models_dir / name / "requirements.provenance.json").read_text())
        assert provenance["capture"]["status"] == "ok" and provenance["capture"]["predicted"]
        records = {r["name"]: r for r in provenance["requirements"]}
        # the backend the model ran on: torch, as installed here (2.13.0+cpu, not plain 2.13.0)
        assert records["torch"]["requirement"] == f"torch=={torch.__version__}"
        assert "torch" in records["torch"]["modules"]
        assert provenance["unresolved_modules"] == []  # torch.ops, torch's generated modules
        assert {"tensorflow", "jax", "flax", "mlflow"}.isdisjoint(records)  # torch only
        assert records["transformers"]["requirement"] == f"transformers=={transformers.__version__}"
        assert "tokenizers" in records and "safetensors" in records
        if library is None:
            version = sentence_transformers.__version__
            assert records["sentence-transformers"]["requirement"] == (
                f"sentence-transformers=={version}"
            )
    model = envkit.transformers.load_model(hf_models_dir / "text-classification").model
    assert envkit.transformers.get_default_pip_requirements(model) == [
        f"transformers=={transformers.__version__}",
        f"torch=={torch.__version__}",  # without capture too: the backend, with its label
    ]
    requirements = (hf_models_dir / "sentence" / "requirements.txt").read_text().splitlines()
    assert f"torch=={torch.__version__}" in requirements


def _section_keys(path: Path, flavor: str) -> dict:
    return _mlmodel(path)["flavors"][flavor]


@pytest.mark.mlflow
@pytest.mark.parametrize("name", [*TASKS, "sentence"])
def test_envkit_writes_the_keys_mlflow_writes(mlflow_hf_side, hf_models_dir, name):
    _, theirs = mlflow_hf_side
    flavor = "sentence_transformers" if name == "sentence" else "transformers"
    ours_conf = _section_keys(hf_models_dir / name, flavor)
    theirs_conf = _section_keys(theirs / name, flavor)
    assert sorted(ours_conf) == sorted(theirs_conf)
    varying = {"source_model_name"}  # the build directory of each side
    for key in set(theirs_conf) - varying:
        assert ours_conf[key] == theirs_conf[key], key
    ours_py = _section_keys(hf_models_dir / name, "python_function")
    theirs_py = _section_keys(theirs / name, "python_function")
    assert ours_py.get("config") == theirs_py.get("config")
    assert ours_py.get("data") == theirs_py.get("data")
    assert (
        _mlmodel(hf_models_dir / name)["signature"]["inputs"]
        == (_mlmodel(theirs / name)["signature"]["inputs"])
    )


@pytest.mark.mlflow
@pytest.mark.parametrize("name", [*TASKS, "sentence"])
def test_mlflow_reads_envkit_models_and_predicts_the_same(mlflow_hf_side, hf_models_dir, name):
    results, _ = mlflow_hf_side
    theirs = results["ours"][name]
    expected = plain(envkit.pyfunc.load_model(hf_models_dir / name).predict(INPUTS[name]))
    assert_same(theirs["pyfunc"], json.loads(json.dumps(expected)))
    if name == "sentence":
        assert theirs["native"]["type"] == "SentenceTransformer"
        np.testing.assert_allclose(theirs["native"]["encode"], expected["array"], rtol=1e-5)
    else:
        assert theirs["native"]["task"] == name
        native = envkit.transformers.load_model(hf_models_dir / name)
        assert theirs["native"]["type"] == type(native).__name__


@pytest.mark.mlflow
@pytest.mark.parametrize("name", [*TASKS, "sentence"])
def test_envkit_reads_mlflow_models_without_mlflow(mlflow_hf_side, name):
    results, theirs = mlflow_hf_side
    model = envkit.pyfunc.load_model(theirs / name)
    flavor = "sentence_transformers" if name == "sentence" else "transformers"
    assert model.loader_module == f"mlflow.{flavor}"
    got = json.loads(json.dumps(plain(model.predict(INPUTS[name]))))
    assert_same(got, results["theirs"][name]["pyfunc"])
    if name == "sentence":
        native = envkit.sentence_transformers.load_model(theirs / name)
        np.testing.assert_allclose(native.encode(INPUTS[name]), got["array"], rtol=1e-5)
    else:
        assert envkit.transformers.load_model(theirs / name).task == name
    assert "mlflow" not in sys.modules


def _envkit(*args: str, home: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "ENVKIT_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    argv = [sys.executable, "-m", "envkit", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", ["text-classification", "sentence"])
def test_validate_and_serve(hf_models_dir, shared_cache, name):
    from test_serve import Server, post_json

    model = hf_models_dir / name
    done = _envkit("validate", str(model), "--format", "json", home=shared_cache)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert f"torch=={torch.__version__}" in report["spec"]["requirements"]  # +cpu: no CUDA
    data = INPUTS[name]
    expected = envkit.pyfunc.load_model(model).predict(data)
    # served here (validate rebuilt the environment already; serving in it would build it
    # again with the scoring server added)
    server = Server(model, "--env-manager", "local", env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        server.wait_ready(timeout=300)
        status, body = post_json(server.port, {"inputs": data})
        assert status == 200, body
        predictions = body["predictions"]
        if name == "sentence":
            np.testing.assert_allclose(predictions, expected, rtol=1e-5)
        else:
            assert [row["label"] for row in predictions] == expected["label"].tolist()
            scores = [row["score"] for row in predictions]
            assert scores == pytest.approx(expected["score"].tolist(), rel=1e-5)
    finally:
        assert server.stop() == 0, server.output()


def test_what_envkit_does_not_load_is_refused_in_one_line(hf_models_dir, tmp_path):
    import shutil

    from envkit.errors import ModelFormatError, UsageError

    def edited(name: str, change) -> Path:
        path = tmp_path / name
        shutil.copytree(hf_models_dir / "text-classification", path)
        mlmodel = _mlmodel(path)
        change(mlmodel["flavors"]["transformers"])
        (path / "MLmodel").write_text(yaml.safe_dump(mlmodel))
        return path

    custom = edited("custom", lambda conf: conf.update(pipeline_model_type="MyRemoteModel"))
    with pytest.raises(ModelFormatError, match="custom model code is not loaded"):
        envkit.transformers.load_model(custom)

    def on_the_hub(conf: dict) -> None:
        del conf["model_binary"]
        conf.update(source_model_name="org/model", source_model_revision="abc123")

    with pytest.raises(ModelFormatError, match="saved without its weights.*org/model"):
        envkit.transformers.load_model(edited("hub", on_the_hub))
    with pytest.raises(UsageError, match="Pipeline or a dict"):
        envkit.transformers.save_model("bert-base-uncased", tmp_path / "nope")
    with pytest.raises(UsageError, match="task= is required"):
        envkit.transformers.save_model({"model": object()}, tmp_path / "nope")
    assert not (tmp_path / "nope").exists()


def test_log_model_into_a_run_and_load_it_by_its_uri(hf_models_dir, tmp_path):
    import envkit
    from envkit.deps.capture import capture_disabled

    pipe = envkit.transformers.load_model(hf_models_dir / "fill-mask")
    sentence = envkit.sentence_transformers.load_model(hf_models_dir / "sentence")
    envkit.set_tracking_dir(tmp_path / "runs")
    try:
        with capture_disabled("log_model is tested, not the capture"), envkit.start_run():
            logged = envkit.transformers.log_model(pipe, name="masker")
            embedder = envkit.sentence_transformers.log_model(sentence, name="embedder")
        assert logged.model_uri.startswith("runs:/")
        assert envkit.transformers.load_model(logged.model_uri).task == "fill-mask"
        got = envkit.pyfunc.load_model(embedder.model_uri).predict(INPUTS["sentence"])
        np.testing.assert_allclose(got, sentence.encode(INPUTS["sentence"]), rtol=1e-6)
    finally:
        envkit.set_tracking_dir(None)
