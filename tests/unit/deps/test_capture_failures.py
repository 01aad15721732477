"""When the capture subprocess cannot load the model: a warning saying why and the flavor's
defaults, or (strict) an error and nothing written. Never a silent fallback."""

from __future__ import annotations

import json
import sys
import types

import pytest
from capture_helpers import model_importing

import envkit.pyfunc
from envkit.deps.capture import CaptureWarning
from envkit.errors import CaptureError, UsageError

pytestmark = pytest.mark.capture  # these test the capture subprocess itself


@pytest.fixture
def model_only_this_process_can_load():
    """A model whose class lives in a module that exists only in this process's memory."""
    module = types.ModuleType("envkit_ephemeral_models")
    exec(
        "import envkit.pyfunc\n"
        "class Ephemeral(envkit.pyfunc.PythonModel):\n"
        "    def predict(self, context, model_input, params=None):\n"
        "        return model_input\n",
        module.__dict__,
    )
    sys.modules[module.__name__] = module
    yield module.Ephemeral()
    del sys.modules[module.__name__]


def test_a_model_that_does_not_load_in_a_fresh_process_warns_and_uses_defaults(
    tmp_path, model_only_this_process_can_load
):
    with pytest.warns(
        CaptureWarning, match=r"does not load in a fresh process: .*'envkit_ephemeral_models'"
    ):
        envkit.pyfunc.save_model(tmp_path / "m", python_model=model_only_this_process_can_load)
    lines = (tmp_path / "m" / "requirements.txt").read_text().splitlines()
    assert [line.split("==")[0] for line in lines] == ["envkit", "cloudpickle"]
    data = json.loads((tmp_path / "m" / "requirements.provenance.json").read_text())
    assert data["capture"]["status"] == "partial"
    assert "envkit_ephemeral_models" in data["capture"]["reason"]
    # the static pass read the pickle: the module it names is installed nowhere
    assert data["unresolved_modules"] == ["envkit_ephemeral_models"]


def test_strict_capture_makes_it_an_error_and_writes_nothing(
    tmp_path, model_only_this_process_can_load
):
    with pytest.raises(CaptureError, match="does not load in a fresh process.*strict mode"):
        envkit.pyfunc.save_model(
            tmp_path / "m", python_model=model_only_this_process_can_load, strict=True
        )
    assert list(tmp_path.iterdir()) == []


def test_strict_capture_from_the_environment(
    tmp_path, monkeypatch, model_only_this_process_can_load
):
    monkeypatch.setenv("ENVKIT_STRICT_CAPTURE", "1")
    with pytest.raises(CaptureError):
        envkit.pyfunc.save_model(tmp_path / "m", python_model=model_only_this_process_can_load)
    assert list(tmp_path.iterdir()) == []


def test_a_load_that_raises_names_the_error(tmp_path):
    model = model_importing("raise RuntimeError('weights are corrupt')")
    with pytest.raises(CaptureError, match="RuntimeError: weights are corrupt"):
        envkit.pyfunc.save_model(tmp_path / "m", python_model=model, strict=True)


def test_a_timeout_is_a_capture_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("ENVKIT_CAPTURE_TIMEOUT", "1")
    model = model_importing("import time", "time.sleep(30)")
    with pytest.warns(CaptureWarning, match=r"timed out after 1s \(set ENVKIT_CAPTURE_TIMEOUT"):
        envkit.pyfunc.save_model(tmp_path / "m", python_model=model)
    assert (tmp_path / "m" / "MLmodel").is_file()


def test_an_invalid_timeout_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ENVKIT_CAPTURE_TIMEOUT", "soon")
    with pytest.raises(UsageError, match="ENVKIT_CAPTURE_TIMEOUT must be a number of seconds"):
        envkit.pyfunc.save_model(tmp_path / "m", python_model=model_importing())
    assert list(tmp_path.iterdir()) == []


def test_the_capture_leaves_no_bytecode_in_the_model(tmp_path):
    helper = tmp_path / "src" / "helper_for_bytecode.py"
    helper.parent.mkdir()
    helper.write_text("VALUE = 1\n")
    envkit.pyfunc.save_model(
        tmp_path / "m",
        python_model=model_importing("import helper_for_bytecode"),
        code_paths=[str(helper)],
    )
    assert not list((tmp_path / "m").rglob("__pycache__"))
