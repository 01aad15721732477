"""python_function: custom models, context, config, streaming, inputs, models from code."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

import envkit.pyfunc
from envkit.errors import ModelFailedError, UsageError
from envkit.pyfunc import PythonModel


class Echo(PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


class AddN(PythonModel):
    def load_context(self, context):
        self.n = context.model_config["n"]
        self.offset = float(Path(context.artifacts["offset"]).read_text())

    def predict(self, context, model_input, params=None):
        return [x + self.n + self.offset for x in model_input]


class Streamer(PythonModel):
    def predict(self, context, model_input, params=None):
        return "regular"

    def predict_stream(self, context, model_input, params=None):
        yield from ["a", "b", "c"]


class NoContext(PythonModel):
    def predict(self, model_input, params=None):
        return {"got": model_input, "params": params}


def _mlmodel(path: Path) -> dict:
    return yaml.safe_load((path / "MLmodel").read_text())


def _save_add_n(tmp_path: Path, offset: str) -> Path:
    """AddN saved at tmp_path/model with n=1 in its config and ``offset`` as its artifact."""
    offset_file = tmp_path / "offset.txt"
    offset_file.write_text(offset)
    path = tmp_path / "model"
    envkit.pyfunc.save_model(
        path, python_model=AddN(), artifacts={"offset": offset_file}, model_config={"n": 1}
    )
    return path


def test_custom_model_with_artifacts_and_config(tmp_path):
    path = _save_add_n(tmp_path, "0.5")
    conf = _mlmodel(path)["flavors"]["python_function"]
    assert conf["loader_module"] == "envkit.pyfunc.model"
    assert conf["python_model"] == "python_model.pkl"
    assert conf["config"] == {"n": 1}
    assert conf["artifacts"]["offset"]["path"] == "artifacts/offset.txt"
    assert conf["streamable"] is False
    assert conf["env"] == {"conda": "conda.yaml", "virtualenv": "python_env.yaml"}
    assert (path / "artifacts" / "offset.txt").read_text() == "0.5"

    model = envkit.pyfunc.load_model(path)
    assert model.predict([1, 2]) == [2.5, 3.5]
    assert model.model_config == {"n": 1}
    assert isinstance(model.unwrap_python_model(), AddN)
    assert model.metadata.flavors["python_function"]["config"] == {"n": 1}


def test_model_config_override_replaces_and_warns_once_about_unknown_keys(tmp_path):
    path = _save_add_n(tmp_path, "0")
    with pytest.warns(UserWarning, match=r"model_config key\(s\) bogus, other ignored") as record:
        model = envkit.pyfunc.load_model(path, model_config={"n": 10, "bogus": 1, "other": 2})
    assert len([w for w in record if "model_config" in str(w.message)]) == 1
    assert model.model_config == {"n": 10}
    assert model.predict([1]) == [11.0]


def test_model_config_from_a_yaml_file(tmp_path):
    path = _save_add_n(tmp_path, "0")
    config_file = tmp_path / "config.yaml"
    config_file.write_text("n: 5\n")
    assert envkit.pyfunc.load_model(path, model_config=config_file).predict([0]) == [5.0]


def test_predict_stream_returns_a_generator(tmp_path):
    envkit.pyfunc.save_model(tmp_path / "m", python_model=Streamer())
    assert _mlmodel(tmp_path / "m")["flavors"]["python_function"]["streamable"] is True
    model = envkit.pyfunc.load_model(tmp_path / "m")
    stream = model.predict_stream("hello")
    assert next(stream) == "a"
    assert list(stream) == ["b", "c"]
    assert model.predict("hello") == "regular"


def test_predict_stream_on_a_model_without_it_is_a_clear_error(tmp_path):
    envkit.pyfunc.save_model(tmp_path / "m", python_model=Echo())
    model = envkit.pyfunc.load_model(tmp_path / "m")
    with pytest.raises(UsageError, match="does not support predict_stream"):
        model.predict_stream("x")


def test_predict_without_context_argument_and_params(tmp_path):
    envkit.pyfunc.save_model(tmp_path / "m", python_model=NoContext())
    model = envkit.pyfunc.load_model(tmp_path / "m")
    assert model.predict("x", params={"k": 1}) == {"got": "x", "params": {"k": 1}}


def test_a_plain_function_can_be_the_model(tmp_path):
    envkit.pyfunc.save_model(tmp_path / "m", python_model=lambda data: len(data))
    assert envkit.pyfunc.load_model(tmp_path / "m").predict([1, 2, 3]) == 3


def test_predict_accepts_every_documented_input_type(tmp_path):
    import numpy as np
    import pandas as pd
    from scipy.sparse import csc_matrix, csr_matrix

    envkit.pyfunc.save_model(tmp_path / "m", python_model=Echo())
    model = envkit.pyfunc.load_model(tmp_path / "m")
    df = pd.DataFrame({"a": [1, 2]})
    inputs = [
        df,
        df["a"],
        np.array([[1.0, 2.0]]),
        csr_matrix(np.eye(2)),
        csc_matrix(np.eye(2)),
        [1, 2],
        {"a": [1, 2]},
        "text",
    ]
    for data in inputs:
        result = model.predict(data)
        assert type(result) is type(data)


def test_models_from_code_are_stored_as_code_not_pickle(tmp_path):
    code = tmp_path / "my_model.py"
    code.write_text(
        textwrap.dedent(
            """
            from envkit.models import set_model
            from envkit.pyfunc import PythonModel

            class Upper(PythonModel):
                def predict(self, context, model_input, params=None):
                    return [s.upper() for s in model_input] + [context.model_config.get("x")]

            set_model(Upper())
            """
        )
    )
    path = tmp_path / "m"
    envkit.pyfunc.save_model(path, python_model=str(code), model_config={"x": 1})
    conf = _mlmodel(path)["flavors"]["python_function"]
    assert conf["model_code_path"] == "my_model.py"
    assert "python_model" not in conf
    assert not list(path.glob("*.pkl"))
    assert (path / "my_model.py").read_text() == code.read_text()
    code.unlink()  # loading uses the copy inside the model
    assert envkit.pyfunc.load_model(path).predict(["a"]) == ["A", 1]


@pytest.mark.parametrize(
    ("source", "error", "message"),
    [
        ("x = 1\n", UsageError, "does not define a model"),
        ("raise RuntimeError('boom at import')\n", ModelFailedError, "boom at import"),
    ],
    ids=["without_set_model", "that_raises"],
)
def test_a_models_from_code_file_is_refused_at_save(tmp_path, source, error, message):
    code = tmp_path / "model_code.py"
    code.write_text(source)
    with pytest.raises(error, match=message):
        envkit.pyfunc.save_model(tmp_path / "m", python_model=str(code))
    assert not (tmp_path / "m").exists()


def test_code_paths_are_copied_and_importable_at_load(tmp_path, monkeypatch):
    helpers = tmp_path / "src" / "my_helpers.py"
    helpers.parent.mkdir()
    helpers.write_text("def double(x):\n    return 2 * x\n")
    code = tmp_path / "model_code.py"
    code.write_text(
        textwrap.dedent(
            """
            from envkit.models import set_model
            from envkit.pyfunc import PythonModel

            class UsesHelper(PythonModel):
                def predict(self, context, model_input, params=None):
                    import my_helpers
                    return my_helpers.double(model_input)

            set_model(UsesHelper())
            """
        )
    )
    path = tmp_path / "m"
    envkit.pyfunc.save_model(path, python_model=str(code), code_paths=[str(helpers)])
    assert (path / "code" / "my_helpers.py").is_file()
    assert _mlmodel(path)["flavors"]["python_function"]["code"] == "code"
    helpers.unlink()
    monkeypatch.setattr(sys, "path", list(sys.path))
    sys.modules.pop("my_helpers", None)
    assert envkit.pyfunc.load_model(path).predict(21) == 42
    assert str(path / "code") in sys.path
    sys.modules.pop("my_helpers", None)


def test_get_model_dependencies_returns_the_file_paths(tmp_path):
    envkit.pyfunc.save_model(tmp_path / "m", python_model=Echo())
    pip_file = envkit.pyfunc.get_model_dependencies(tmp_path / "m")
    conda_file = envkit.pyfunc.get_model_dependencies(tmp_path / "m", format="conda")
    assert Path(pip_file).name == "requirements.txt"
    assert Path(conda_file).name == "conda.yaml"
    with pytest.raises(UsageError, match="format must be"):
        envkit.pyfunc.get_model_dependencies(tmp_path / "m", format="poetry")


def test_metadata_directory_copies_mlmodel_and_env_files(tmp_path):
    envkit.pyfunc.save_model(tmp_path / "m", python_model=Echo())
    meta = tmp_path / "m" / "metadata"
    for name in ("MLmodel", "conda.yaml", "python_env.yaml", "requirements.txt"):
        assert (meta / name).read_bytes() == (tmp_path / "m" / name).read_bytes()


def test_model_size_bytes_counts_the_model_files(tmp_path):
    envkit.pyfunc.save_model(tmp_path / "m", python_model=Echo())
    mlmodel = _mlmodel(tmp_path / "m")
    pickle_size = (tmp_path / "m" / "python_model.pkl").stat().st_size
    assert mlmodel["model_size_bytes"] == pickle_size


def test_info_json_is_serializable(tmp_path):
    from envkit.deps.describe import describe_model

    envkit.pyfunc.save_model(tmp_path / "m", python_model=Echo())
    info = describe_model(tmp_path / "m")
    json.dumps(info)
    assert {f["path"] for f in info["files"]} >= {"MLmodel", "python_model.pkl"}


def test_a_typed_function_gets_its_signature_from_its_hints(tmp_path):
    def reverse(model_input: list[str]) -> list[str]:
        return [s[::-1] for s in model_input]

    envkit.pyfunc.save_model(tmp_path / "m", python_model=reverse, input_example=["abc"])
    mlmodel = _mlmodel(tmp_path / "m")
    assert mlmodel["is_signature_from_type_hint"] is True
    assert envkit.pyfunc.load_model(tmp_path / "m").predict(["xyz"]) == ["zyx"]


def test_output_signature_is_inferred_through_the_pyfunc_path(tmp_path):
    # As in MLflow: the list example is enforced (to a DataFrame) before predict, so an echoing
    # model returns a column named 0.
    envkit.pyfunc.save_model(tmp_path / "m", python_model=Echo(), input_example=["ab", "cd"])
    signature = _mlmodel(tmp_path / "m")["signature"]
    assert signature["inputs"] == '[{"type": "string", "required": true}]'
    assert signature["outputs"] == '[{"type": "string", "name": 0, "required": true}]'


def test_models_from_code_run_once_in_the_saving_process(tmp_path):
    import os

    log = tmp_path / "runs.log"
    code = tmp_path / "counted.py"
    code.write_text(
        textwrap.dedent(
            f"""
            import os
            from envkit.models import set_model
            from envkit.pyfunc import PythonModel

            with open({str(log)!r}, "a") as f:
                f.write(str(os.getpid()) + "\\n")

            class Echo(PythonModel):
                def predict(self, context, model_input: list[str], params=None) -> list[str]:
                    return model_input

            set_model(Echo())
            """
        )
    )
    envkit.pyfunc.save_model(tmp_path / "m", python_model=str(code), input_example=["a"])
    pids = log.read_text().split()
    assert pids.count(str(os.getpid())) == 1  # (the capture subprocess runs it once more)


def test_a_failing_input_example_is_reported_once(tmp_path):
    class Fails(PythonModel):
        def predict(self, context, model_input, params=None):
            raise RuntimeError("no predictions today")

    with pytest.warns(UserWarning) as record:
        envkit.pyfunc.save_model(tmp_path / "m", python_model=Fails(), input_example=["x"])
    about_example = [w for w in record if "no predictions today" in str(w.message)]
    assert len(about_example) == 1, [str(w.message) for w in record]
    assert "failed to predict on its input example" in str(about_example[0].message)
